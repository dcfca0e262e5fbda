"""One VM's snapshot from its ledger intervals, signals and latest provider observation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aiconsole.domain.cost import PowerInterval
from aiconsole.domain.fleet import VmCostLevel, VmSnapshot
from aiconsole.domain.idle import UNKNOWN_ACTIVITY_REASON, ActivitySignal
from aiconsole.domain.power import PowerState
from aiconsole.domain.vm_view import PowerObservation, build_vm_snapshot, running_since

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=PARIS)
S = PowerState


def at(hour: int, minute: int = 0, day: int = 4) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=PARIS)


# Yesterday 20:00-22:00, then started today at 10:00 and running since 10:02.
INTERVALS = (
    PowerInterval("inference", S.RUNNING, at(20, day=3), at(22, day=3)),
    PowerInterval("inference", S.STOPPED, at(22, day=3), at(10)),
    PowerInterval("inference", S.STARTING, at(10), at(10, 2)),
    PowerInterval("inference", S.RUNNING, at(10, 2)),
)


def snapshot(
    intervals: Sequence[PowerInterval] = INTERVALS,
    signals: Sequence[ActivitySignal] = (),
    observation: PowerObservation | None = PowerObservation(S.RUNNING, NOW - timedelta(seconds=5)),
    **overrides: object,
) -> VmSnapshot:
    arguments: dict[str, object] = dict(
        name="inference",
        provider="tensordock",
        can_power=True,
        hourly_usd=0.35,
        idle_stop_minutes=30,
        intervals=intervals,
        signals=signals,
        observation=observation,
        freshness_seconds=30,
        now=NOW,
        tz=PARIS,
    )
    arguments.update(overrides)
    return build_vm_snapshot(**arguments)  # type: ignore[arg-type]


def test_running_vm() -> None:
    signals = [ActivitySignal("inference", "operator", at(11, 50), "start")]
    observation = PowerObservation(S.RUNNING, NOW - timedelta(seconds=5), "Running", "inference-4090")
    vm = snapshot(signals=signals, observation=observation, pending_action="stop")
    assert (vm.name, vm.provider, vm.power, vm.can_power) == ("inference", "tensordock", S.RUNNING, True)
    assert (vm.raw_state, vm.label, vm.error) == ("Running", "inference-4090", "")
    assert vm.cost_today_usd == pytest.approx(0.35 * 2)
    assert vm.cost_month_usd == pytest.approx(0.35 * 4)
    assert vm.cost_run_usd == pytest.approx(0.35 * 2)
    assert vm.idle.idle_seconds == 600 and vm.idle.remaining_seconds == 20 * 60
    assert vm.idle.last_activity == "operator: start"
    assert vm.idle_stop_minutes == 30 and vm.hourly_usd == 0.35
    assert vm.checked_at == NOW - timedelta(seconds=5) and not vm.stale
    assert vm.pending_action == "stop"
    assert vm.cost_level is VmCostLevel.OK


def test_without_signals_idle_counts_from_the_running_interval() -> None:
    assert running_since(INTERVALS) == at(10, 2)
    vm = snapshot()
    assert vm.idle.idle_seconds == 118 * 60
    assert vm.idle.remaining_seconds == 0


def test_before_the_first_answer_power_is_unknown_and_stale_but_cost_still_accrues() -> None:
    vm = snapshot(observation=None)
    assert vm.power is S.UNKNOWN and vm.stale and vm.checked_at is None
    assert vm.idle.idle_seconds is None  # unknown never counts as idle
    assert vm.cost_today_usd == pytest.approx(0.35 * 2)


def test_failing_provider_shows_last_state_with_error_and_age() -> None:
    observation = PowerObservation(S.RUNNING, NOW - timedelta(seconds=31), error="timeout after 10 s")
    vm = snapshot(observation=observation)
    assert vm.power is S.RUNNING and vm.stale and vm.error == "timeout after 10 s"


def test_stale_only_past_the_freshness_window() -> None:
    assert not snapshot(observation=PowerObservation(S.RUNNING, NOW - timedelta(seconds=30))).stale
    assert snapshot(observation=PowerObservation(S.RUNNING, NOW - timedelta(seconds=30.5))).stale


def test_stopped_vm_shows_last_run_and_no_idle() -> None:
    intervals = (
        *INTERVALS[:3],
        PowerInterval("inference", S.RUNNING, at(10, 2), at(11)),
        PowerInterval("inference", S.STOPPED, at(11)),
    )
    vm = snapshot(intervals=intervals, observation=PowerObservation(S.STOPPED, NOW))
    assert vm.power is S.STOPPED and vm.idle.idle_seconds is None
    assert vm.cost_run_usd == pytest.approx(0.35)
    assert running_since(intervals) is None


def test_running_per_provider_but_not_per_ledger_has_unknown_idle() -> None:
    ledger_says_stopped = (INTERVALS[0], PowerInterval("inference", S.STOPPED, at(22, day=3)))
    vm = snapshot(intervals=ledger_says_stopped)
    assert vm.idle.busy_reasons == (UNKNOWN_ACTIVITY_REASON,)


def test_cost_level_uses_the_given_thresholds() -> None:
    vm = snapshot(cost_warning_usd=0.5, cost_critical_usd=1.0)
    assert vm.cost_level is VmCostLevel.WARNING
    always_on = snapshot(hourly_usd=0.0, can_power=False, idle_stop_minutes=None)
    assert always_on.cost_today_usd == 0 and always_on.idle.remaining_seconds is None
    assert always_on.cost_level is VmCostLevel.OK
