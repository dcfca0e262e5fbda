"""The event journal's entries: every start and stop (by hand or automatic), budget level,
snooze and guard action, with its time, VM, reason and the money at that moment.

Pure. `services/ledger.py` stores them in the ledger's database; the CLI (`aiconsole
events`) and the console read them back. The rule they serve: an automatic stop never
happens without its event, and a person reading the journal later can tell who did what
and why, and what it cost at the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiconsole.domain.cost import require_aware
from aiconsole.domain.sanitize import sanitize_line

REASON_MAX_CHARS = 500


class EventKind(StrEnum):
    """What happened; `Event.kind` is a plain str so later kinds need no migration."""

    START = "start"
    STOP = "stop"
    AUTO_STOP = "auto-stop"
    STOP_REFUSED = "stop-refused"
    FORCED_STOP = "forced-stop"
    BUDGET = "budget"
    SNOOZE = "snooze"
    GUARD = "guard"
    ORPHAN = "orphan"


class Actor(StrEnum):
    """Who did it: the operator (a key, the palette, a CLI command) or a policy."""

    OPERATOR = "operator"
    CONSOLE = "console"
    WATCH = "watch"


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    kind: str
    vm: str
    """The VM it concerns; "" for the fleet (a budget level)."""
    reason: str
    """Why, in words, sanitised ("stop asked from the Fleet tab", "idle for 30m 00s")."""
    actor: str = Actor.OPERATOR
    hourly_usd: float = 0.0
    """The VM's price at that moment (0 for fleet-wide events)."""
    cost_today_usd: float | None = None
    """What the VM (or, for a fleet-wide event, the fleet) had cost today at that moment."""

    def __post_init__(self) -> None:
        require_aware(self.at, "at")
        object.__setattr__(self, "reason", sanitize_line(self.reason, REASON_MAX_CHARS))

    def line(self, tz) -> str:
        """One line for a terminal: "2026-11-23 14:05 stop training (operator): reason · $1.23 today"."""
        when = self.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
        who = f"{self.kind} {sanitize_line(self.vm, 60)}" if self.vm else self.kind
        cost = "" if self.cost_today_usd is None else f" · ${self.cost_today_usd:.2f} today"
        return f"{when} {who} ({self.actor}): {self.reason}{cost}"
