"""Spending against budgets: the fleet's daily/monthly levels and one VM's daily level.

Shares are compared with a tolerance of one part in a billion, because spending is
a sum of float products (0.35 $/h x seconds / 3600) and exactly 80 % of a budget
must read as the alert, not as 79.99999999 % and OK.
"""

from __future__ import annotations

from aiconsole.domain.fleet import BudgetLevel, BudgetSnapshot, VmCostLevel

DEFAULT_WARN_SHARE = 0.5
DEFAULT_ALERT_SHARE = 0.8
DEFAULT_VM_WARNING_USD = 5.0
DEFAULT_VM_CRITICAL_USD = 10.0
_TOLERANCE = 1e-9


def budget_level(
    spent: float,
    limit: float,
    warn: float = DEFAULT_WARN_SHARE,
    alert: float = DEFAULT_ALERT_SHARE,
) -> BudgetLevel:
    """Level of `spent` against `limit`: warning from `warn`, alert from `alert`, exceeded from 1.

    A limit of 0 or less means "no budget" and is always OK.
    """
    if not 0 < warn <= alert:
        raise ValueError(f"budget shares must satisfy 0 < warn <= alert, got warn={warn}, alert={alert}")
    if limit <= 0:
        return BudgetLevel.OK
    share = spent / limit + _TOLERANCE
    if share >= 1:
        return BudgetLevel.EXCEEDED
    if share >= alert:
        return BudgetLevel.ALERT
    if share >= warn:
        return BudgetLevel.WARNING
    return BudgetLevel.OK


def build_budget_snapshot(
    daily_usd: float,
    monthly_usd: float,
    spent_today: float,
    spent_month: float,
    warn: float = DEFAULT_WARN_SHARE,
    alert: float = DEFAULT_ALERT_SHARE,
) -> BudgetSnapshot:
    """The fleet's spending against its daily and monthly budgets, with both levels."""
    return BudgetSnapshot(
        daily_usd=daily_usd,
        monthly_usd=monthly_usd,
        spent_today_usd=spent_today,
        spent_month_usd=spent_month,
        day_level=budget_level(spent_today, daily_usd, warn, alert),
        month_level=budget_level(spent_month, monthly_usd, warn, alert),
    )


def vm_daily_level(
    cost_today: float,
    warn_usd: float = DEFAULT_VM_WARNING_USD,
    critical_usd: float = DEFAULT_VM_CRITICAL_USD,
) -> VmCostLevel:
    """One VM's level for today. Strictly more than the threshold, as the runbook says
    ("more than $5 in a day is a warning, more than $10 critical"): exactly $5 is OK.
    """
    if cost_today > critical_usd + _TOLERANCE:
        return VmCostLevel.CRITICAL
    if cost_today > warn_usd + _TOLERANCE:
        return VmCostLevel.WARNING
    return VmCostLevel.OK
