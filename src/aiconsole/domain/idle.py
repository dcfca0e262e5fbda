"""How long a running VM has been idle, from the activity signals seen on it.

A signal says "something used this VM at `at`". Most are instants (a power change,
an operator action, a GPU sample above threshold); some are `ongoing` and hold the
VM busy until their source replaces them (a chat stream in flight, a model pull).
A source that cannot read its data says so with an "unreadable" signal, which also
holds the VM busy: unknown never counts as idle, so an idle stop can only follow
from evidence of idleness, never from missing evidence.

Callers pass the current signals — typically the latest per (vm, source) — and
this module decides; adding a new kind of signal needs no change here or in them.
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
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class ActivitySignal:
    """Evidence that `vm` was in use at `at`. `detail` must already be sanitised."""

    vm: str
    kind: str
    at: datetime
    detail: str = ""
    ongoing: bool = False
    """True while the activity lasts (a stream in flight): the VM is busy until it ends."""

    def __post_init__(self) -> None:
        require_aware(self.at, "at")

    @property
    def holds_busy(self) -> bool:
        return self.ongoing or self.kind == ActivityKind.UNREADABLE

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
) -> IdleStatus:
    """Idle time and time left before the idle stop of one VM at `now`.

    Idleness applies only while `power` is RUNNING. It is counted from the later of
    the latest signal and `running_since` (the start of the current running interval):
    a VM that has been running for 3 minutes has not been idle for an hour, whatever
    the last signal says — it may have been started outside the console. With neither,
    nothing is known, and the VM counts as busy rather than idle.
    """
    require_aware(now, "now")
    latest: ActivitySignal | None = None
    busy_reasons: list[str] = []
    for signal in signals:
        if latest is None or signal.at >= latest.at:
            latest = signal
        if signal.holds_busy:
            busy_reasons.append(signal.summary)
    last_activity = latest.summary if latest is not None else ""
    if power is not PowerState.RUNNING:
        return IdleStatus(None, None, (), last_activity)
    if busy_reasons:
        return IdleStatus(0.0, None, tuple(busy_reasons), last_activity)
    since = latest.at if latest is not None else None
    if running_since is not None and (since is None or running_since > since):
        since = running_since
    if since is None:
        return IdleStatus(None, None, (UNKNOWN_ACTIVITY_REASON,), last_activity)
    # Epoch seconds: subtracting aware datetimes sharing a tzinfo ignores DST offsets.
    idle_seconds = max(0.0, now.timestamp() - since.timestamp())
    remaining = None if idle_stop_minutes is None else max(0.0, idle_stop_minutes * 60.0 - idle_seconds)
    return IdleStatus(idle_seconds, remaining, (), last_activity)
