"""Budget and idle-stop policy (issue 7), driven by a fake clock: every `now` is explicit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aiconsole.domain.cost import day_window, month_window
from aiconsole.domain.fleet import BudgetLevel, BudgetSnapshot, IdleStatus
from aiconsole.domain.idle import ActivityKind, ActivitySignal, idle_status
from aiconsole.domain.money_policy import (
    Budget,
    BudgetBreach,
    IdleAction,
    LevelMemory,
    Projection,
    StopPlan,
    VmMoneyView,
    budget_breach,
    budget_stop_plan,
    burn_rate_usd_per_h,
    day_key,
    format_limit,
    idle_stop_plan,
    max_overshoot_usd,
    month_key,
    project_budget,
    project_crossing,
    snooze,
    step_levels,
)
from aiconsole.domain.power import PowerState

PARIS = ZoneInfo("Europe/Paris")

# ---------------------------------------------------------------- projection


def test_burn_rate_counts_only_vms_billed_now() -> None:
    vms = [
        VmMoneyView("inference", True, 0.35),
        VmMoneyView("training", True, 0.5, has_running_run=True),
        VmMoneyView("spare", False, 1.2),
        VmMoneyView("homelab", True, 0.0),
    ]
    assert burn_rate_usd_per_h(vms) == pytest.approx(0.85)
    assert burn_rate_usd_per_h([]) == 0


def test_projection_at_the_current_burn() -> None:
    now = datetime(2024, 6, 12, 12, 0, tzinfo=PARIS)
    _, end = day_window(now, PARIS)
    at = project_crossing(1.6, 5.0, 0.6, now, end)  # $3.40 left at $0.60/h: 5 h 40 min
    assert at == datetime(2024, 6, 12, 17, 40, tzinfo=PARIS)
    assert at is not None and at.tzinfo is UTC
    projection = project_budget(Budget.DAY, 1.6, 5.0, 0.6, now, end)
    assert projection.text(PARIS) == "at the current burn the daily budget is reached at 17:40"
    assert projection.text(UTC) == "at the current burn the daily budget is reached at 15:40"


def test_zero_burn_never_reaches_the_budget() -> None:
    now = datetime(2024, 6, 12, 12, 0, tzinfo=PARIS)
    _, end = day_window(now, PARIS)
    assert project_crossing(4.9, 5.0, 0.0, now, end) is None
    text = project_budget(Budget.DAY, 4.9, 5.0, 0.0, now, end).text(PARIS)
    assert text == "at the current burn the daily budget is not reached today"


def test_a_crossing_after_the_period_end_is_not_reached() -> None:
    now = datetime(2024, 6, 12, 12, 0, tzinfo=PARIS)
    _, end = day_window(now, PARIS)
    assert project_crossing(1.0, 5.0, 0.1, now, end) is None  # 40 h away, the day ends in 12
    assert project_crossing(2.0, 5.0, 0.25, now, end) is None  # exactly at midnight: a new day
    _, month_end = month_window(now, PARIS)
    projection = project_budget(Budget.MONTH, 10.0, 50.0, 0.01, now, month_end)
    assert projection.text(PARIS) == "at the current burn the monthly budget is not reached this month"


def test_a_monthly_projection_names_the_day() -> None:
    now = datetime(2024, 6, 12, 12, 0, tzinfo=PARIS)
    _, month_end = month_window(now, PARIS)
    projection = project_budget(Budget.MONTH, 26.0, 50.0, 1.0, now, month_end)  # 24 h
    assert projection.text(PARIS) == "at the current burn the monthly budget is reached on 13 Jun at 12:00"


@pytest.mark.parametrize("spent", [5.0, 5.03, sum([0.5 / 3600] * 36_000)])  # the last: 10 h of $0.50/h
def test_already_over_is_now(spent: float) -> None:
    now = datetime(2024, 6, 12, 12, 0, tzinfo=PARIS)
    _, end = day_window(now, PARIS)
    assert project_crossing(spent, 5.0, 0.35, now, end) == now
    assert project_crossing(spent, 5.0, 0.0, now, end) == now
    projection = project_budget(Budget.DAY, spent, 5.0, 0.35, now, end)
    assert projection.already and projection.text(PARIS) == "the daily budget is reached already"


def test_no_budget_is_never_reached() -> None:
    now = datetime(2024, 6, 12, 12, 0, tzinfo=PARIS)
    _, end = day_window(now, PARIS)
    assert project_crossing(100.0, 0.0, 3.0, now, end) is None


def test_projection_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        project_crossing(1.0, 5.0, 1.0, datetime(2024, 6, 12, 12), datetime(2024, 6, 13, tzinfo=UTC))


def test_projection_on_the_spring_dst_day_in_paris() -> None:
    now = datetime(2024, 3, 31, 0, 30, tzinfo=PARIS)  # the night 02:00 becomes 03:00
    _, end = day_window(now, PARIS)
    assert (end - now.astimezone(UTC)) == timedelta(hours=22, minutes=30)  # a 23-hour day
    at = project_crossing(0.0, 5.0, 2.0, now, end)  # 2 h 30 min of real time
    assert at == datetime(2024, 3, 31, 2, 0, tzinfo=UTC)
    assert Projection(Budget.DAY, at).text(PARIS) == "at the current burn the daily budget is reached at 04:00"
    assert project_crossing(0.0, 5.0, 0.22, now, end) is None  # 22.7 h: past the short day's end


def test_projection_on_the_autumn_dst_day_in_paris() -> None:
    now = datetime(2024, 10, 27, 0, 0, tzinfo=PARIS)  # the night 03:00 becomes 02:00: 25 hours
    _, end = day_window(now, PARIS)
    at = project_crossing(0.0, 4.9, 0.2, now, end)  # 24.5 h: a 24-hour day would say "not today"
    assert at is not None
    assert Projection(Budget.DAY, at).text(PARIS) == "at the current burn the daily budget is reached at 23:30"
    assert project_crossing(0.0, 4.9, 0.19, now, end) is None  # 25.8 h


# ---------------------------------------------------------------- notices once per period


def _run_levels(memory: LevelMemory, steps: list[tuple[float, float, str, str]]) -> tuple[LevelMemory, list[str]]:
    texts: list[str] = []
    for day_share, month_share, dkey, mkey in steps:
        memory, notices = step_levels(memory, day_share, month_share, dkey, mkey)
        texts += [notice.text for notice in notices]
    return memory, texts


def test_each_level_is_notified_once_per_period() -> None:
    steps = [(share, 0.1, "2024-06-12", "2024-06") for share in (0.2, 0.5, 0.8, 0.6, 0.85)]
    memory, texts = _run_levels(LevelMemory(), steps)
    assert texts == ["50 % of the daily budget used", "80 % of the daily budget used"]
    assert memory.day.notified is BudgetLevel.ALERT and memory.day.key == "2024-06-12"
    memory, texts = _run_levels(memory, [(1.01, 0.1, "2024-06-12", "2024-06"), (1.2, 0.1, "2024-06-12", "2024-06")])
    assert texts == ["daily budget reached (101 %)"]


def test_a_new_day_starts_again() -> None:
    memory, _ = _run_levels(LevelMemory(), [(0.9, 0.1, "2024-06-12", "2024-06")])
    memory, texts = _run_levels(memory, [(0.9, 0.1, "2024-06-12", "2024-06"), (0.0, 0.1, "2024-06-13", "2024-06")])
    assert texts == []
    memory, texts = _run_levels(memory, [(0.55, 0.1, "2024-06-13", "2024-06"), (0.55, 0.1, "2024-06-13", "2024-06")])
    assert texts == ["55 % of the daily budget used"]


def test_a_new_period_already_over_a_level_notifies_it() -> None:
    memory, _ = _run_levels(LevelMemory(), [(0.9, 0.1, "2024-06-12", "2024-06")])
    _, notices = step_levels(memory, 0.6, 0.1, "2024-06-13", "2024-06")
    assert [(n.budget, n.level) for n in notices] == [(Budget.DAY, BudgetLevel.WARNING)]


def test_day_and_month_are_independent() -> None:
    memory, notices = step_levels(LevelMemory(), 0.6, 0.3, "2024-06-12", "2024-06")
    assert [(n.budget, n.level) for n in notices] == [(Budget.DAY, BudgetLevel.WARNING)]
    memory, notices = step_levels(memory, 0.1, 0.55, "2024-06-13", "2024-06")
    assert [(n.budget, n.level) for n in notices] == [(Budget.MONTH, BudgetLevel.WARNING)]
    memory, notices = step_levels(memory, 0.95, 0.82, "2024-06-13", "2024-06")
    assert [n.text for n in notices] == ["95 % of the daily budget used", "82 % of the monthly budget used"]
    memory, notices = step_levels(memory, 0.0, 0.82, "2024-06-14", "2024-06")
    assert notices == ()
    _, notices = step_levels(memory, 0.0, 0.82, "2024-06-14", "2024-07")
    assert [(n.budget, n.level) for n in notices] == [(Budget.MONTH, BudgetLevel.ALERT)]


def test_a_jump_from_ok_to_exceeded_is_one_notice() -> None:
    memory, notices = step_levels(LevelMemory(), 1.04, 0.2, "2024-06-12", "2024-06")
    assert [(n.budget, n.level, n.text) for n in notices] == [
        (Budget.DAY, BudgetLevel.EXCEEDED, "daily budget reached (104 %)")
    ]
    _, notices = step_levels(memory, 0.85, 0.2, "2024-06-12", "2024-06")
    assert notices == ()


def test_levels_follow_the_configured_shares() -> None:
    _, notices = step_levels(LevelMemory(), 0.6, 0.0, "d", "m", warn=0.7, alert=0.9)
    assert notices == ()
    _, notices = step_levels(LevelMemory(), 0.1 + 0.7, 0.0, "d", "m", warn=0.5, alert=0.8)  # 0.7999999…
    assert [n.level for n in notices] == [BudgetLevel.ALERT]


def test_period_keys_are_the_operators_date_and_month() -> None:
    now = datetime(2024, 3, 31, 22, 30, tzinfo=UTC)  # already 1 April in Paris
    assert (day_key(now, PARIS), month_key(now, PARIS)) == ("2024-04-01", "2024-04")
    assert (day_key(now, UTC), month_key(now, UTC)) == ("2024-03-31", "2024-03")


# ---------------------------------------------------------------- the stop, with grace

DAY_BREACH = BudgetBreach(Budget.DAY, 5.0, 5.03)
T0 = datetime(2024, 6, 12, 14, 0, tzinfo=PARIS)
INFERENCE = VmMoneyView("inference", True, 0.35)
TRAINING = VmMoneyView("training", True, 0.5, has_running_run=True, run_names=("lora-r16",))
SPARE = VmMoneyView("spare", False, 1.2)
HOMELAB = VmMoneyView("homelab", True, 0.0)


def test_exceeded_stops_at_once_and_gives_a_run_its_grace() -> None:
    plan = budget_stop_plan(DAY_BREACH, [INFERENCE, TRAINING, SPARE, HOMELAB], T0, timedelta(minutes=10), {})
    assert [(s.vm, s.reason) for s in plan.stops] == [
        ("inference", "daily budget $5.00 reached ($5.03 spent): stopping inference ($0.35/h)")
    ]
    [hold] = plan.graces
    assert hold.vm == "training" and hold.until == T0 + timedelta(minutes=10)
    assert hold.text(PARIS) == (
        "training keeps running for its MLflow run lora-r16 until 14:10, then stops:"
        " daily budget $5.00 reached ($5.03 spent)"
    )
    assert plan.grace_started == {"training": T0}


def test_the_grace_does_not_restart_and_then_the_vm_stops() -> None:
    started = {"training": T0}
    plan = budget_stop_plan(
        DAY_BREACH, [TRAINING], T0 + timedelta(minutes=9, seconds=59), timedelta(minutes=10), started
    )
    assert plan.stops == () and plan.graces[0].until == T0 + timedelta(minutes=10)
    plan = budget_stop_plan(DAY_BREACH, [TRAINING], T0 + timedelta(minutes=10), timedelta(minutes=10), started)
    reason = (
        "daily budget $5.00 reached ($5.03 spent): grace of 10 min for its MLflow run over, stopping training ($0.50/h)"
    )
    assert [(s.vm, s.reason) for s in plan.stops] == [("training", reason)]
    assert plan.graces == ()
    # The stop failed, the VM still runs: it is stopped again, not given a new grace.
    assert plan.grace_started == {"training": T0}
    again = budget_stop_plan(
        DAY_BREACH, [TRAINING], T0 + timedelta(minutes=11), timedelta(minutes=10), plan.grace_started
    )
    assert [s.vm for s in again.stops] == ["training"]


def test_a_run_that_ends_during_its_grace_stops_the_vm_at_once() -> None:
    started = {"training": T0}
    finished = VmMoneyView("training", True, 0.5)
    plan = budget_stop_plan(DAY_BREACH, [finished], T0 + timedelta(minutes=3), timedelta(minutes=10), started)
    assert [(s.vm, s.reason) for s in plan.stops] == [
        (
            "training",
            "daily budget $5.00 reached ($5.03 spent): its MLflow run ended, stopping training ($0.50/h)",
        )
    ]
    assert plan.grace_started == {}


def test_the_grace_is_configurable() -> None:
    plan = budget_stop_plan(DAY_BREACH, [TRAINING], T0, timedelta(minutes=2.5), {})
    assert plan.graces[0].until == T0 + timedelta(minutes=2, seconds=30)
    plan = budget_stop_plan(DAY_BREACH, [TRAINING], T0 + timedelta(minutes=3), timedelta(minutes=2.5), {"training": T0})
    assert "grace of 2.5 min" in plan.stops[0].reason


def test_not_exceeded_does_nothing_and_forgets_the_graces() -> None:
    plan = budget_stop_plan(None, [INFERENCE, TRAINING], T0, timedelta(minutes=10), {"training": T0})
    assert plan == StopPlan() and plan.grace_started == {}


def test_a_stopped_vm_leaves_the_grace_map() -> None:
    stopped = VmMoneyView("training", False, 0.5, has_running_run=True, run_names=("lora-r16",))
    plan = budget_stop_plan(DAY_BREACH, [stopped], T0, timedelta(minutes=10), {"training": T0 - timedelta(hours=1)})
    assert plan == StopPlan()


def test_run_names_in_the_alert_are_sanitised() -> None:
    vm = VmMoneyView("training", True, 0.5, has_running_run=True, run_names=("a\x1b[2Jb", "c\nd"))
    [hold] = budget_stop_plan(DAY_BREACH, [vm], T0, timedelta(minutes=10), {}).graces
    assert "MLflow runs ab, c d until 14:10" in hold.text(PARIS)


def test_the_breach_names_the_month_first() -> None:
    both = BudgetSnapshot(5.0, 50.0, 5.03, 50.2, BudgetLevel.EXCEEDED, BudgetLevel.EXCEEDED)
    assert budget_breach(both) == BudgetBreach(Budget.MONTH, 50.0, 50.2)
    assert budget_breach(both).text == "monthly budget $50.00 reached ($50.20 spent)"  # type: ignore[union-attr]
    day = BudgetSnapshot(5.0, 50.0, 5.03, 20.0, BudgetLevel.EXCEEDED, BudgetLevel.WARNING)
    assert budget_breach(day) == DAY_BREACH
    assert budget_breach(BudgetSnapshot(5.0, 50.0, 4.0, 20.0, BudgetLevel.ALERT)) is None


def test_the_overshoot_bound() -> None:
    vms = [INFERENCE, TRAINING, SPARE, HOMELAB]
    assert max_overshoot_usd(vms, timedelta(minutes=10)) == pytest.approx(0.5 / 6)
    with_latency = max_overshoot_usd(vms, timedelta(minutes=10), stop_latency=timedelta(minutes=1))
    assert with_latency == pytest.approx(0.5 / 6 + 0.85 / 60)
    assert max_overshoot_usd([INFERENCE], timedelta(minutes=10)) == 0


def test_a_simulated_day_stays_within_the_overshoot_bound() -> None:
    """Tick every 30 s: accrue, check the budget, stop what the plan says. The run never ends."""
    tick, grace, limit = timedelta(seconds=30), timedelta(minutes=10), 5.0
    running = {"inference": INFERENCE, "training": TRAINING}
    spent, now, started = 4.9, T0, {}
    bound: float | None = None
    for _ in range(200):
        now += tick
        spent += burn_rate_usd_per_h(running.values()) * tick.total_seconds() / 3600
        breach = BudgetBreach(Budget.DAY, limit, spent) if spent >= limit else None
        if breach is not None and bound is None:
            bound = max_overshoot_usd(running.values(), grace, stop_latency=tick)
        plan = budget_stop_plan(breach, list(running.values()), now, grace, started)
        started = plan.grace_started
        for stop in plan.stops:
            del running[stop.vm]
    assert not running and bound is not None
    assert 0 < spent - limit <= bound + 1e-12


# ---------------------------------------------------------------- idle auto-stop

IDLE_T0 = datetime(2024, 6, 12, 9, 0, tzinfo=PARIS)


def _idle(seconds: float | None, *busy: str) -> IdleStatus:
    return IdleStatus(seconds, None, tuple(busy))


def _countdown(limit_minutes: float, until_s: float, step_s: float = 10.0) -> list[tuple[float, IdleAction, str]]:
    """Idle from 0 s on, one tick every `step_s`; the ticks that did something."""
    warned: frozenset[str] = frozenset()
    seen: list[tuple[float, IdleAction, str]] = []
    idle_s = 0.0
    while idle_s <= until_s:
        now = IDLE_T0 + timedelta(seconds=idle_s)
        decision = idle_stop_plan("inference", _idle(idle_s), limit_minutes, None, warned, now)
        warned = decision.warned
        if decision.action is not IdleAction.NONE:
            seen.append((idle_s, decision.action, decision.text))
        if decision.action is IdleAction.STOP:
            break
        idle_s += step_s
    return seen


def test_the_countdown_warns_at_5_and_1_minute_once_then_stops() -> None:
    assert _countdown(30, 3600) == [
        (1500, IdleAction.WARN_5MIN, "inference stops in 5m 00s: idle for 25m 00s (limit 30m)"),
        (1740, IdleAction.WARN_1MIN, "inference stops in 1m 00s: idle for 29m 00s (limit 30m)"),
        (1800, IdleAction.STOP, "idle for 30m 00s (limit 30m): stopping inference"),
    ]


def test_fractional_limits() -> None:
    assert [(t, a) for t, a, _ in _countdown(2.5, 600)] == [(90, IdleAction.WARN_1MIN), (150, IdleAction.STOP)]
    assert _countdown(2.5, 600)[-1][2] == "idle for 2m 30s (limit 2m 30s): stopping inference"
    assert [(t, a) for t, a, _ in _countdown(0.5, 600)] == [(30, IdleAction.STOP)]  # too short to warn ahead
    assert [(t, a) for t, a, _ in _countdown(5.5, 600)][:1] == [(30, IdleAction.WARN_5MIN)]


def test_a_late_tick_gives_one_warning_the_most_urgent() -> None:
    now = IDLE_T0 + timedelta(minutes=29, seconds=30)
    decision = idle_stop_plan("inference", _idle(1770), 30, None, frozenset(), now)
    assert decision.action is IdleAction.WARN_1MIN
    assert decision.warned == {"warn_5min", "warn_1min"}
    assert decision.stop_at == IDLE_T0 + timedelta(minutes=30)
    later = idle_stop_plan("inference", _idle(1780), 30, None, decision.warned, now + timedelta(seconds=10))
    assert later.action is IdleAction.NONE and later.warned == decision.warned


def test_activity_starts_a_new_stretch_that_warns_again() -> None:
    first = idle_stop_plan("inference", _idle(1500), 30, None, frozenset(), IDLE_T0)
    assert first.action is IdleAction.WARN_5MIN
    reset = idle_stop_plan("inference", _idle(20), 30, None, first.warned, IDLE_T0 + timedelta(minutes=1))
    assert reset.action is IdleAction.NONE and reset.warned == frozenset()
    again = idle_stop_plan("inference", _idle(1500), 30, None, reset.warned, IDLE_T0 + timedelta(minutes=25))
    assert again.action is IdleAction.WARN_5MIN


def test_a_stop_long_overdue_happens_at_once() -> None:
    decision = idle_stop_plan("inference", _idle(7200), 30, None, frozenset(), IDLE_T0)
    assert decision.action is IdleAction.STOP
    assert decision.text == "idle for 2h 00m (limit 30m): stopping inference"


def test_snooze_pushes_the_stop_back_and_warns_again_before_it() -> None:
    now = IDLE_T0 + timedelta(minutes=29)
    warned = idle_stop_plan("inference", _idle(1740), 30, None, frozenset(), now).warned
    until = snooze(now)
    assert until == now + timedelta(minutes=30)
    seen: list[tuple[float, IdleAction]] = []
    for idle_s in range(1740, 3600, 10):
        moment = IDLE_T0 + timedelta(seconds=idle_s)
        decision = idle_stop_plan("inference", _idle(idle_s), 30, until, warned, moment)
        warned = decision.warned
        if decision.action is not IdleAction.NONE:
            seen.append((idle_s, decision.action))
            last = decision
        if decision.action is IdleAction.STOP:
            break
    assert seen == [(3240, IdleAction.WARN_5MIN), (3480, IdleAction.WARN_1MIN), (3540, IdleAction.STOP)]
    assert last.text == "idle for 59m 00s (limit 30m, snoozed): stopping inference"


def test_a_snooze_earlier_than_the_idle_stop_changes_nothing() -> None:
    decision = idle_stop_plan("inference", _idle(60), 30, IDLE_T0 + timedelta(minutes=5), frozenset(), IDLE_T0)
    assert decision.stop_at == IDLE_T0 + timedelta(minutes=29) and decision.action is IdleAction.NONE


def test_snooze_length() -> None:
    assert snooze(IDLE_T0, minutes=15) == IDLE_T0 + timedelta(minutes=15)
    with pytest.raises(ValueError, match="longer than 0"):
        snooze(IDLE_T0, minutes=0)


def test_busy_holds_the_stop_and_forgets_the_warnings() -> None:
    decision = idle_stop_plan("inference", _idle(7200, "chat", "pull: llama3"), 30, None, {"warn_5min"}, IDLE_T0)
    assert decision.action is IdleAction.NONE and decision.warned == frozenset()
    assert decision.text == "busy: chat, pull: llama3"
    assert decision.stop_at is None


def test_unknown_idle_time_holds_the_stop() -> None:
    decision = idle_stop_plan("inference", _idle(None), 30, None, {"warn_1min"}, IDLE_T0)
    assert decision.action is IdleAction.NONE and decision.warned == frozenset()
    assert decision.text == "idle time unknown"


def test_no_idle_stop_configured() -> None:
    assert idle_stop_plan("inference", _idle(9999), None, None, frozenset(), IDLE_T0).action is IdleAction.NONE


def test_with_idle_status_from_real_signals() -> None:
    """idle_status (domain/idle.py) feeds the plan: an unreadable source holds the stop."""
    started = IDLE_T0
    now = started + timedelta(minutes=31)
    quiet = idle_status([], PowerState.RUNNING, 30, now, running_since=started)
    assert idle_stop_plan("inference", quiet, 30, None, frozenset(), now).action is IdleAction.STOP
    unreadable = ActivitySignal("inference", ActivityKind.GPU, started, "nvidia-smi failed", unknown=True)
    held = idle_status([unreadable], PowerState.RUNNING, 30, now, running_since=started)
    decision = idle_stop_plan("inference", held, 30, None, frozenset(), now)
    assert decision.action is IdleAction.NONE and decision.text == "busy: nvidia-smi failed"
    nothing_known = idle_status([], PowerState.RUNNING, 30, now)
    assert idle_stop_plan("inference", nothing_known, 30, None, frozenset(), now).action is IdleAction.NONE
    stopped = idle_status([], PowerState.STOPPED, 30, now, running_since=started)
    assert idle_stop_plan("inference", stopped, 30, None, frozenset(), now).action is IdleAction.NONE


@pytest.mark.parametrize(
    ("minutes", "text"),
    [(30, "30m"), (90, "1h 30m"), (120, "2h"), (2.5, "2m 30s"), (0.75, "45s"), (5, "5m")],
)
def test_limits_read_as_configured(minutes: float, text: str) -> None:
    assert format_limit(minutes) == text
