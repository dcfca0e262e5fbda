"""How long a running VM has been idle, from the activity signals seen on it.

A signal says "something used this VM at `at`". Most are instants (a power change,
an operator action, a GPU sample above its busy level). Some hold the VM busy for a
while: they carry a lease, `until`, that their source renews while the activity lasts
(a chat stream in flight, a pull, a RUNNING MLflow run, open SSH sessions) or that is
the activity's own end (a model's keep-alive). A source that stops renewing lets the
lease lapse, and idleness then counts from `until`: a console that crashed mid-chat
leaves the VM busy for one lease, never for ever.

A source that cannot read its data says so with an `unknown` signal, which holds the
VM busy like any other while its lease holds: unknown never counts as idle, so an idle
stop can only follow from evidence of idleness, never from missing evidence.

Callers pass the current signals, the latest per (vm, source), and this module decides;
adding a new kind of signal needs no change here or in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiconsole.domain.cost import require_aware
from aiconsole.domain.fleet import IdleStatus
from aiconsole.domain.power import PowerState

UNKNOWN_ACTIVITY_REASON = "no activity known"


class ActivityKind(StrEnum):
    """Kinds of signal known today; `ActivitySignal.kind` is a plain str so more can come."""

    POWER = "power"
    OPERATOR = "operator"
    GPU = "gpu"
    CHAT = "chat"
    PULL = "pull"
    MLFLOW = "mlflow"
    SSH = "ssh"
    OLLAMA = "ollama"


@dataclass(frozen=True, slots=True)
class ActivitySignal:
    """Evidence that `vm` was in use at `at`. `detail` must already be sanitised and say what
    the activity is on its own ("chat stream", "2 SSH sessions"): it is the pane's reason."""

    vm: str
    kind: str
    at: datetime
    detail: str = ""
    until: datetime | None = None
    """Busy until then (a lease its source renews while the activity lasts); None: an instant."""
    unknown: bool = False
    """The source could not read its data: busy while the lease holds (without one, until the
    source reports again), because unknown never counts as idle."""

    def __post_init__(self) -> None:
        require_aware(self.at, "at")
        if self.until is not None:
            require_aware(self.until, "until")

    def holds_busy(self, now: datetime) -> bool:
        if self.until is not None:
            return now.timestamp() < self.until.timestamp()
        return self.unknown

    @property
    def ended_at(self) -> datetime:
        """When the activity was last known to go on: its lease's end, or its instant."""
        return self.until if self.until is not None and self.until > self.at else self.at

    @property
    def reason(self) -> str:
        """Why it holds the VM busy, for the pane: the detail, or the kind without one."""
        return self.detail or str(self.kind)

    @property
    def summary(self) -> str:
        """Short text for the pane: "operator: start", "power: started", "chat"."""
        return f"{self.kind}: {self.detail}" if self.detail else str(self.kind)


def idle_status(
    signals: Iterable[ActivitySignal],
    power: PowerState,
    idle_stop_minutes: float | None,
    now: datetime,
    running_since: datetime | None = None,
    snoozed_until: datetime | None = None,
) -> IdleStatus:
    """Idle time and time left before the idle stop of one VM at `now`.

    Idleness applies only while `power` is RUNNING. It is counted from the later of
    the latest signal and `running_since` (the start of the current running interval):
    a VM that has been running for 3 minutes has not been idle for an hour, whatever
    the last signal says — it may have been started outside the console. With neither,
    nothing is known, and the VM counts as busy rather than idle. A snooze later than the
    idle stop moves the time left to its end.
    """
    require_aware(now, "now")
    latest: ActivitySignal | None = None
    busy: list[str] = []
    unknown: list[str] = []
    for signal in signals:
        if latest is None or signal.ended_at >= latest.ended_at:
            latest = signal
        if signal.holds_busy(now):
            (unknown if signal.unknown else busy).append(signal.reason)
    last_activity = latest.summary if latest is not None else ""
    if power is not PowerState.RUNNING:
        return IdleStatus(None, None, (), last_activity)
    if busy or unknown:
        return IdleStatus(0.0, None, (*busy, *unknown), last_activity, tuple(unknown))
    since = latest.ended_at if latest is not None else None
    if running_since is not None and (since is None or running_since > since):
        since = running_since
    if since is None:
        return IdleStatus(None, None, (UNKNOWN_ACTIVITY_REASON,), last_activity, (UNKNOWN_ACTIVITY_REASON,))
    # Epoch seconds: subtracting aware datetimes sharing a tzinfo ignores DST offsets.
    idle_seconds = max(0.0, now.timestamp() - since.timestamp())
    if idle_stop_minutes is None:
        return IdleStatus(idle_seconds, None, (), last_activity)
    remaining = max(0.0, idle_stop_minutes * 60.0 - idle_seconds)
    snoozed = snoozed_until is not None and snoozed_until.timestamp() - now.timestamp() > remaining
    if snoozed:  # the operator put the stop off: it comes at the snooze's end (domain/idle_policy.py)
        remaining = snoozed_until.timestamp() - now.timestamp()
    return IdleStatus(idle_seconds, remaining, (), last_activity, snoozed=snoozed)
