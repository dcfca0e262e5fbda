"""One VM's snapshot, assembled from its config, ledger and latest provider answer.

The fleet monitor calls `build_vm_snapshot` every tick for every VM, so it stays a
few linear passes over the VM's intervals (which arrive in start order) and never
sorts or copies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from aiconsole.domain.budget import DEFAULT_VM_CRITICAL_USD, DEFAULT_VM_WARNING_USD, vm_daily_level
from aiconsole.domain.cost import PowerInterval, cost_month, cost_this_run, cost_today, require_aware
from aiconsole.domain.fleet import VmSnapshot
from aiconsole.domain.idle import ActivitySignal, idle_status
from aiconsole.domain.power import PowerState


@dataclass(frozen=True, slots=True)
class PowerObservation:
    """What the provider last said about a VM. Text fields must already be sanitised.

    When a poll fails, the monitor keeps the last answered `power` and `checked_at`
    and sets `error`: the pane then shows the last known state, marked stale once
    `checked_at` is older than the freshness window, with the error beside it.
    """

    power: PowerState
    checked_at: datetime | None
    raw_state: str = ""
    label: str = ""
    error: str = ""


def running_since(intervals: Sequence[PowerInterval]) -> datetime | None:
    """Start of the open RUNNING interval, if the ledger says the VM is running now."""
    if intervals and intervals[-1].end is None and intervals[-1].state is PowerState.RUNNING:
        return intervals[-1].start
    return None


def is_stale(checked_at: datetime | None, freshness_seconds: float, now: datetime) -> bool:
    """True when there is no answer yet, or the last one is older than its freshness window."""
    if checked_at is None:
        return True
    return now.timestamp() - checked_at.timestamp() > freshness_seconds


def build_vm_snapshot(
    *,
    name: str,
    provider: str,
    can_power: bool,
    hourly_usd: float,
    idle_stop_minutes: float | None,
    intervals: Sequence[PowerInterval],
    signals: Iterable[ActivitySignal],
    observation: PowerObservation | None,
    freshness_seconds: float,
    now: datetime,
    tz: tzinfo,
    pending_action: str = "",
    cost_warning_usd: float = DEFAULT_VM_WARNING_USD,
    cost_critical_usd: float = DEFAULT_VM_CRITICAL_USD,
    snoozed_until: datetime | None = None,
) -> VmSnapshot:
    """Assemble one VM's snapshot at `now`.

    `intervals` are this VM's, in start order, reaching back at least to the first of
    the month in `tz`. Power shown is the provider's last observation (UNKNOWN before
    the first); cost comes from the ledger's intervals, which keep accruing at the last
    known state while the provider is failing (see `aiconsole.domain.cost`).
    """
    require_aware(now, "now")
    power = observation.power if observation is not None else PowerState.UNKNOWN
    checked_at = observation.checked_at if observation is not None else None
    today = cost_today(intervals, hourly_usd, now, tz)
    return VmSnapshot(
        name=name,
        provider=provider,
        power=power,
        hourly_usd=hourly_usd,
        cost_today_usd=today,
        cost_month_usd=cost_month(intervals, hourly_usd, now, tz),
        cost_run_usd=cost_this_run(intervals, hourly_usd, now, tz),
        idle=idle_status(signals, power, idle_stop_minutes, now, running_since(intervals), snoozed_until),
        idle_stop_minutes=idle_stop_minutes,
        can_power=can_power,
        label=observation.label if observation is not None else "",
        raw_state=observation.raw_state if observation is not None else "",
        error=observation.error if observation is not None else "",
        checked_at=checked_at,
        stale=is_stale(checked_at, freshness_seconds, now),
        pending_action=pending_action,
        cost_level=vm_daily_level(today, cost_warning_usd, cost_critical_usd),
    )
