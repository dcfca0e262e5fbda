"""Immutable snapshots of the fleet: what the UI and the CLI render, one per tick."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from aiconsole.domain.power import PowerState


class BudgetLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"  # >= warn share (50 %)
    ALERT = "alert"  # >= alert share (80 %)
    EXCEEDED = "exceeded"  # >= 100 %


class VmCostLevel(StrEnum):
    """One VM's spending today against the per-VM thresholds ($5 warning, $10 critical)."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class IdleStatus:
    """How long a VM has been idle and why it is not, computed from activity signals."""

    idle_seconds: float | None
    """Seconds since the last activity; None when idleness does not apply (not running)."""
    remaining_seconds: float | None
    """Seconds left before the idle stop; None when the VM has no idle stop or is busy."""
    busy_reasons: tuple[str, ...] = ()
    """Why the VM counts as busy right now ("chat stream", "2 SSH sessions"), the unknown last."""
    last_activity: str = ""
    """What the last activity was, for the pane ("started by operator")."""
    unknown_reasons: tuple[str, ...] = ()
    """Those of `busy_reasons` that are sources that could not be read ("SSH down"): shown
    as such, since they hold the stop for lack of evidence, not because of use."""
    snoozed: bool = False
    """`remaining_seconds` runs to the end of a snooze, not to the idle limit."""


@dataclass(frozen=True, slots=True)
class VmSnapshot:
    name: str
    provider: str
    power: PowerState
    hourly_usd: float
    cost_today_usd: float
    cost_month_usd: float
    cost_run_usd: float
    """Cost since the last start (0 when stopped and no run today)."""
    idle: IdleStatus
    idle_stop_minutes: float | None
    can_power: bool
    label: str = ""
    raw_state: str = ""
    error: str = ""
    """Last error from the provider, sanitised; empty when the last call succeeded."""
    checked_at: datetime | None = None
    """When the provider last answered; None before the first answer."""
    stale: bool = False
    """True when the last answer is older than its freshness window."""
    pending_action: str = ""
    """"start" or "stop" while the console is carrying one out."""
    cost_level: VmCostLevel = VmCostLevel.OK
    """How `cost_today_usd` compares with the per-VM daily thresholds."""


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    daily_usd: float
    monthly_usd: float
    spent_today_usd: float
    spent_month_usd: float
    day_level: BudgetLevel = BudgetLevel.OK
    month_level: BudgetLevel = BudgetLevel.OK


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    at: datetime
    vms: tuple[VmSnapshot, ...]
    budget: BudgetSnapshot
    read_only: bool = False
    notes: tuple[str, ...] = field(default=())

    def powers(self) -> dict[str, PowerState]:
        """Each VM's power state by name."""
        return {vm.name: vm.power for vm in self.vms}
