"""Budget levels at their edges: 50 % warns, 80 % alerts, 100 % is exceeded."""

from __future__ import annotations

import pytest

from aiconsole.domain.budget import budget_level, build_budget_snapshot, vm_daily_level
from aiconsole.domain.fleet import BudgetLevel, VmCostLevel


@pytest.mark.parametrize("limit", [5.0, 50.0])
@pytest.mark.parametrize(
    ("share", "level"),
    [
        (0.0, BudgetLevel.OK),
        (0.4999, BudgetLevel.OK),
        (0.5, BudgetLevel.WARNING),
        (0.7999, BudgetLevel.WARNING),
        (0.8, BudgetLevel.ALERT),
        (0.9999, BudgetLevel.ALERT),
        (1.0, BudgetLevel.EXCEEDED),
        (1.7, BudgetLevel.EXCEEDED),
    ],
)
def test_levels_at_the_edges(limit: float, share: float, level: BudgetLevel) -> None:
    assert budget_level(limit * share, limit) is level


def test_float_sums_at_exactly_a_threshold_reach_it() -> None:
    spent = 0.1 + 0.7  # 0.7999999999999999
    assert budget_level(spent, 1.0) is BudgetLevel.ALERT
    spent_by_the_second = sum([0.35 / 3600] * 3600 * 10)  # ten hours at $0.35/h, second by second
    assert budget_level(spent_by_the_second, 3.5) is BudgetLevel.EXCEEDED


@pytest.mark.parametrize("limit", [0.0, -5.0])
def test_no_budget_is_always_ok(limit: float) -> None:
    assert budget_level(1000.0, limit) is BudgetLevel.OK


def test_custom_shares() -> None:
    assert budget_level(3.0, 10.0, warn=0.25, alert=0.3) is BudgetLevel.ALERT
    assert budget_level(2.5, 10.0, warn=0.25, alert=0.3) is BudgetLevel.WARNING


@pytest.mark.parametrize(("warn", "alert"), [(0.0, 0.8), (0.9, 0.8), (-0.1, 0.5)])
def test_inconsistent_shares_are_refused(warn: float, alert: float) -> None:
    with pytest.raises(ValueError, match="warn"):
        budget_level(1.0, 5.0, warn=warn, alert=alert)


def test_budget_snapshot_carries_both_levels() -> None:
    snapshot = build_budget_snapshot(5.0, 50.0, spent_today=4.0, spent_month=24.0)
    assert snapshot.daily_usd == 5.0 and snapshot.monthly_usd == 50.0
    assert snapshot.spent_today_usd == 4.0 and snapshot.spent_month_usd == 24.0
    assert snapshot.day_level is BudgetLevel.ALERT
    assert snapshot.month_level is BudgetLevel.OK
    tight = build_budget_snapshot(5.0, 50.0, 1.0, 24.0, warn=0.1, alert=0.4)
    assert (tight.day_level, tight.month_level) == (BudgetLevel.WARNING, BudgetLevel.ALERT)


@pytest.mark.parametrize(
    ("cost", "level"),
    [
        (0.0, VmCostLevel.OK),
        (5.0, VmCostLevel.OK),  # "more than $5" is a warning: exactly $5 is not
        (5.01, VmCostLevel.WARNING),
        (10.0, VmCostLevel.WARNING),
        (10.01, VmCostLevel.CRITICAL),
    ],
)
def test_vm_daily_level(cost: float, level: VmCostLevel) -> None:
    assert vm_daily_level(cost) is level


def test_vm_daily_level_custom_thresholds_and_values() -> None:
    assert vm_daily_level(2.5, warn_usd=2, critical_usd=3) is VmCostLevel.WARNING
    assert vm_daily_level(3.5, warn_usd=2, critical_usd=3) is VmCostLevel.CRITICAL
    assert [level.value for level in VmCostLevel] == ["ok", "warning", "critical"]
