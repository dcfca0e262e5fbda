"""When an idle VM is warned about and stopped: the auto-stop countdown, decided purely.

The monitor calls `idle_stop_plan` on every tick with the VM's `IdleStatus` (from
`domain/idle.py`), the operator's snooze and the warnings already given, and carries
out the action it returns. The rules:

- Nothing happens while a busy signal holds or the idle time is unknown (None): unknown
  never counts as idle. Both also forget the warnings, because idleness restarts after.
- Warnings come 5 minutes and 1 minute before the stop, each once per idle stretch. The
  stretch is remembered in `warned` (the actions already given); a warning is forgotten
  when the time left goes back above its lead (activity reset the idle time, or a snooze
  pushed the stop back), so the next approach warns again.
- When a tick arrives late and both leads have passed, only the 1-minute warning is
  given (it stands for both): one notice, the more urgent.
- A lead only applies when the VM's limit is longer than it: a 3-minute limit gets the
  1-minute warning only, a limit of a minute or less stops without warning, because a
  warning at the very start of every idle stretch would be noise, not notice.
- A snooze moves the stop to `snoozed_until` when that is later than the idle stop.
- At or past the stop time the action is STOP, warned or not: a console started long
  after the VM went idle stops it at once (the idle time is evidence, not a guess).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from aiconsole.domain.cost import require_aware
from aiconsole.domain.fleet import IdleStatus
from aiconsole.domain.format import format_duration

DEFAULT_SNOOZE_MINUTES = 30.0
_EPSILON_S = 1e-6  # idle seconds are epoch differences: exactly at the limit must count


class IdleAction(StrEnum):
    NONE = "none"
    WARN_5MIN = "warn_5min"
    WARN_1MIN = "warn_1min"
    STOP = "stop"


# Most urgent first: the first lead that has passed is the one to give.
_LEADS: tuple[tuple[IdleAction, float], ...] = ((IdleAction.WARN_1MIN, 60.0), (IdleAction.WARN_5MIN, 300.0))
_LEAD_OF = dict(_LEADS)


@dataclass(frozen=True, slots=True)
class IdleDecision:
    action: IdleAction
    warned: frozenset[str]
    """The warnings given in this idle stretch: pass it back in on the next tick."""
    text: str = ""
    """The warning to show, the stop's reason for the journal, or why nothing happens."""
    stop_at: datetime | None = None
    """When the VM will be stopped if it stays idle (UTC); None when no stop is due."""


def snooze(now: datetime, minutes: float = DEFAULT_SNOOZE_MINUTES) -> datetime:
    """The `snoozed_until` of a snooze pressed at `now`: `minutes` from now (not from the old stop)."""
    require_aware(now, "now")
    if minutes <= 0:
        raise ValueError(f"a snooze must be longer than 0 minutes, got {minutes}")
    return now + timedelta(minutes=minutes)


def format_limit(minutes: float) -> str:
    """An idle limit as configured: "30m", "1h 30m", "2h", "2m 30s", "45s"."""
    seconds = round(minutes * 60)
    if seconds % 60:
        return format_duration(seconds)
    hours, mins = divmod(seconds // 60, 60)
    if hours and mins:
        return f"{hours}h {mins:02d}m"
    return f"{hours}h" if hours else f"{mins}m"


def _remaining(limit_s: float, idle_s: float, snoozed_until: datetime | None, now: datetime) -> tuple[float, bool]:
    """Seconds until the stop, and whether a snooze set it."""
    remaining = limit_s - idle_s
    if snoozed_until is not None:
        require_aware(snoozed_until, "snoozed_until")
        snoozed = snoozed_until.timestamp() - now.timestamp()
        if snoozed > remaining:
            return snoozed, True
    return remaining, False


def _still_warned(warned: AbstractSet[str], remaining: float) -> frozenset[str]:
    """The warnings that still hold: the time left has not gone back above their lead."""
    return frozenset(key for key in warned if key in _LEAD_OF and remaining <= _LEAD_OF[key] + _EPSILON_S)


def idle_stop_plan(
    vm_name: str,
    idle: IdleStatus,
    idle_stop_minutes: float | None,
    snoozed_until: datetime | None,
    warned: AbstractSet[str],
    now: datetime,
) -> IdleDecision:
    """What to do about `vm_name` at `now`: nothing, warn at 5 or 1 minute, or stop.

    The time left is computed from `idle.idle_seconds` and `idle_stop_minutes` (fractions
    allowed; None or <= 0: no idle stop) so that the reason can name the limit.
    """
    require_aware(now, "now")
    if idle.busy_reasons:
        return IdleDecision(IdleAction.NONE, frozenset(), f"busy: {', '.join(idle.busy_reasons)}")
    if idle.idle_seconds is None:
        return IdleDecision(IdleAction.NONE, frozenset(), "idle time unknown")
    if idle_stop_minutes is None or idle_stop_minutes <= 0:
        return IdleDecision(IdleAction.NONE, frozenset(), "no idle stop")
    limit_s = idle_stop_minutes * 60.0
    remaining, snoozed = _remaining(limit_s, idle.idle_seconds, snoozed_until, now)
    kept = _still_warned(warned, remaining)
    stop_at = datetime.fromtimestamp(now.timestamp() + max(0.0, remaining), UTC)
    limit = format_limit(idle_stop_minutes) + (", snoozed" if snoozed else "")
    idle_for = format_duration(round(idle.idle_seconds))
    if remaining <= _EPSILON_S:
        return IdleDecision(IdleAction.STOP, kept, f"idle for {idle_for} (limit {limit}): stopping {vm_name}", stop_at)
    for action, lead in _LEADS:
        if remaining > lead + _EPSILON_S or limit_s <= lead:
            continue
        if action in kept:
            break
        # Giving a lead also gives every longer one: a late tick must not warn twice.
        given = kept | {str(key) for key, other in _LEADS if other >= lead and limit_s > other}
        text = f"{vm_name} stops in {format_duration(round(remaining))}: idle for {idle_for} (limit {limit})"
        return IdleDecision(action, given, text, stop_at)
    return IdleDecision(IdleAction.NONE, kept, "", stop_at)
