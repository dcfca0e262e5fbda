"""Who enforces the money policy: exactly one of the console and `aiconsole watch`.

Both can run at once against the same ledger (the console on a laptop, `watch` as a
systemd service on an always-on box). Both read the same signals and would take the
same decisions, but two enforcers would warn twice, stop twice and journal twice, and
one snoozing a VM would not hold the other back. So they share a lock, a row in the
ledger, and only its holder acts; the other shows who does.

The rules, decided here and applied in one ledger transaction (`Ledger.claim_enforcer`):

- Free, or its holder stopped renewing for longer than the lease (it crashed, or its
  machine went away): the claimant takes it.
- Held by the claimant: renewed, unless a higher-ranked claimant asked for it, in which
  case it is given up (the claimant stops enforcing at once, before acting again).
- Held by another: a claimant of a higher rank asks for it (`wanted_by`); others wait.

`watch` outranks the console: it is the one that survives a closed laptop, so when it
starts it takes over at the console's next renewal, and the console takes over again
only once `watch` is gone for a whole lease.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from enum import StrEnum

from aiconsole.domain.cost import require_aware
from aiconsole.domain.format import format_duration

DEFAULT_LEASE_S = 30.0
"""A holder silent this long is gone; it renews every quarter of it."""


class Role(StrEnum):
    CONSOLE = "console"
    WATCH = "watch"

    @property
    def rank(self) -> int:
        return 1 if self is Role.WATCH else 0


def holder_id(role: str, pid: int, host: str) -> str:
    """How a process names itself in the lock: "watch pid 4242 on jumphost"."""
    return f"{role} pid {pid} on {host}"


@dataclass(frozen=True, slots=True)
class LockHolder:
    holder: str
    role: str
    since: datetime
    renewed: datetime
    wanted_by: str = ""

    def lapsed(self, now: datetime, lease_s: float) -> bool:
        return now.timestamp() - self.renewed.timestamp() > lease_s

    def text(self, now: datetime, tz: tzinfo) -> str:
        """For the other process: "watch pid 4242 on jumphost enforces (since 09:12, seen 4s ago)"."""
        seen = format_duration(max(0.0, now.timestamp() - self.renewed.timestamp()))
        since = self.since.astimezone(tz).strftime("%H:%M")
        return f"{self.holder} enforces (since {since}, seen {seen} ago)"


class ClaimOutcome(StrEnum):
    TAKEN = "taken"
    KEPT = "kept"
    YIELDED = "yielded"
    ASKED = "asked"
    WAITING = "waiting"

    @property
    def holding(self) -> bool:
        return self in (ClaimOutcome.TAKEN, ClaimOutcome.KEPT)


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    row: LockHolder | None
    """What the lock's row must hold after this claim (None: deleted)."""

    @property
    def holding(self) -> bool:
        return self.outcome.holding


def _rank(role: str) -> int:
    return Role(role).rank if role in Role.__members__.values() else 0


def claim(current: LockHolder | None, me: str, role: str, now: datetime, lease_s: float = DEFAULT_LEASE_S) -> Claim:
    """The lock after `me` (of `role`) claims it at `now`, given the row `current`."""
    require_aware(now, "now")
    if current is None or current.lapsed(now, lease_s) and current.holder != me:
        return Claim(ClaimOutcome.TAKEN, LockHolder(me, str(role), now, now))
    if current.holder == me:
        if current.wanted_by:
            return Claim(ClaimOutcome.YIELDED, None)
        return Claim(ClaimOutcome.KEPT, replace(current, renewed=now))
    if _rank(role) > _rank(current.role):
        return Claim(ClaimOutcome.ASKED, replace(current, wanted_by=me))
    return Claim(ClaimOutcome.WAITING, current)
