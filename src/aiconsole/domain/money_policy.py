"""The budget and idle-stop policies of issue 7, in one place to import from.

The rules live in two modules so each stays small: `budget_policy` (projection, level
notices once per period, the budget stop with a grace period for MLflow runs) and
`idle_policy` (the idle auto-stop countdown with its warnings and snooze).
"""

from __future__ import annotations

from aiconsole.domain.budget_policy import (
    DEFAULT_GRACE,
    Budget,
    BudgetBreach,
    BudgetStop,
    GraceHold,
    LevelMemory,
    LevelNotice,
    PeriodMemory,
    Projection,
    StopPlan,
    VmMoneyView,
    budget_breach,
    budget_stop_plan,
    burn_rate_usd_per_h,
    day_key,
    max_overshoot_usd,
    month_key,
    project_budget,
    project_crossing,
    step_levels,
)
from aiconsole.domain.fleet import BudgetLevel
from aiconsole.domain.idle_policy import (
    DEFAULT_SNOOZE_MINUTES,
    IdleAction,
    IdleDecision,
    format_limit,
    idle_stop_plan,
    snooze,
)

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_SNOOZE_MINUTES",
    "Budget",
    "BudgetBreach",
    "BudgetLevel",
    "BudgetStop",
    "GraceHold",
    "IdleAction",
    "IdleDecision",
    "LevelMemory",
    "LevelNotice",
    "PeriodMemory",
    "Projection",
    "StopPlan",
    "VmMoneyView",
    "budget_breach",
    "budget_stop_plan",
    "burn_rate_usd_per_h",
    "day_key",
    "format_limit",
    "idle_stop_plan",
    "max_overshoot_usd",
    "month_key",
    "project_budget",
    "project_crossing",
    "snooze",
    "step_levels",
]
