"""What the console does about the fleet's budgets: projection, notices, and the stop.

Three pure pieces, each fed the current figures and `now` by the fleet monitor:

- Projection: at the current burn (the hourly rates of the VMs billed now), when is a
  budget reached? Answered in UTC and told in the operator's zone.
- Notices: crossing the warn share (50 %), the alert share (80 %) and 100 % is notified
  once per period. `LevelMemory` remembers, per budget, which period it is and the highest
  level already notified; only a rise above that level is news. A jump over several
  levels at once gives one notice, the highest: the operator wants to hear "exceeded",
  not three messages in the same second.
- The stop: at 100 % every VM billed now is stopped, except that a VM with a RUNNING
  MLflow run first gets a grace period with a loud alert. The grace starts the first time
  the VM is seen over budget with a run and never restarts while the budget stays
  exceeded, so the overshoot is bounded (`max_overshoot_usd`).

Amounts here are the fleet's: the per-VM daily thresholds live in `domain/budget.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

from aiconsole.domain.budget import DEFAULT_ALERT_SHARE, DEFAULT_WARN_SHARE, budget_level
from aiconsole.domain.cost import SECONDS_PER_HOUR, require_aware
from aiconsole.domain.fleet import BudgetLevel, BudgetSnapshot
from aiconsole.domain.format import format_usd
from aiconsole.domain.sanitize import sanitize_line

DEFAULT_GRACE = timedelta(minutes=10)
_LEVEL_RANK = {BudgetLevel.OK: 0, BudgetLevel.WARNING: 1, BudgetLevel.ALERT: 2, BudgetLevel.EXCEEDED: 3}
# Month names by hand: strftime's %b follows the process locale, the text must not.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TOLERANCE = 1e-9  # as in domain/budget.py: float sums at exactly the limit reach it


class Budget(StrEnum):
    DAY = "day"
    MONTH = "month"

    @property
    def adjective(self) -> str:
        return "daily" if self is Budget.DAY else "monthly"


# ---------------------------------------------------------------- projection


def _reached(spent_usd: float, limit_usd: float) -> bool:
    return limit_usd > 0 and spent_usd / limit_usd + _TOLERANCE >= 1


@dataclass(frozen=True, slots=True)
class VmMoneyView:
    """What the budget policy needs to know about one VM. Names must already be sanitised."""

    name: str
    running: bool
    """Billed now and not already being stopped (running or starting)."""
    hourly_usd: float
    has_running_run: bool = False
    """A RUNNING MLflow run is on this VM."""
    run_names: tuple[str, ...] = ()


def burn_rate_usd_per_h(vms: Iterable[VmMoneyView]) -> float:
    """Dollars per hour the fleet costs right now: the rates of the VMs billed now."""
    return sum(vm.hourly_usd for vm in vms if vm.running and vm.hourly_usd > 0)


def project_crossing(
    spent_usd: float, limit_usd: float, burn_usd_per_h: float, now: datetime, period_end: datetime
) -> datetime | None:
    """When spending at the current burn reaches `limit_usd`, as a UTC datetime.

    `now` when already reached; None when it will not be before `period_end` (the budget
    starts again then), when nothing burns, or when there is no budget (limit <= 0).
    Epoch arithmetic, so a 23- or 25-hour DST day has its true length.
    """
    require_aware(now, "now")
    require_aware(period_end, "period_end")
    if limit_usd <= 0:
        return None
    if _reached(spent_usd, limit_usd):
        return now
    if burn_usd_per_h <= 0:
        return None
    at = now.timestamp() + (limit_usd - spent_usd) / burn_usd_per_h * SECONDS_PER_HOUR
    if at >= period_end.timestamp():
        return None
    return datetime.fromtimestamp(at, UTC)


@dataclass(frozen=True, slots=True)
class Projection:
    """When a budget is reached at the current burn; `at` is None when not in this period."""

    budget: Budget
    at: datetime | None
    already: bool = False

    def text(self, tz: tzinfo) -> str:
        """ "at the current burn the daily budget is reached at 17:40", told in `tz`."""
        name = f"the {self.budget.adjective} budget"
        if self.already:
            return f"{name} is reached already"
        if self.at is None:
            period = "today" if self.budget is Budget.DAY else "this month"
            return f"at the current burn {name} is not reached {period}"
        local = self.at.astimezone(tz)
        day = f"on {local.day:02d} {_MONTHS[local.month - 1]} " if self.budget is Budget.MONTH else ""
        when = f"{day}at {local:%H:%M}"
        return f"at the current burn {name} is reached {when}"


def project_budget(
    budget: Budget,
    spent_usd: float,
    limit_usd: float,
    burn_usd_per_h: float,
    now: datetime,
    period_end: datetime,
) -> Projection:
    """The `Projection` of one budget (`period_end` from `day_window`/`month_window`)."""
    at = project_crossing(spent_usd, limit_usd, burn_usd_per_h, now, period_end)
    return Projection(budget, at, already=_reached(spent_usd, limit_usd))


# ---------------------------------------------------------------- notices once per period


def day_key(now: datetime, tz: tzinfo) -> str:
    """The period key of the operator's day: its local date, "2024-03-31"."""
    require_aware(now, "now")
    return now.astimezone(tz).date().isoformat()


def month_key(now: datetime, tz: tzinfo) -> str:
    """The period key of the operator's month, "2024-03"."""
    require_aware(now, "now")
    return f"{now.astimezone(tz):%Y-%m}"


@dataclass(frozen=True, slots=True)
class PeriodMemory:
    """The highest level already notified in the period `key` ("" before the first step)."""

    key: str = ""
    notified: BudgetLevel = BudgetLevel.OK


@dataclass(frozen=True, slots=True)
class LevelMemory:
    day: PeriodMemory = PeriodMemory()
    month: PeriodMemory = PeriodMemory()


@dataclass(frozen=True, slots=True)
class LevelNotice:
    """A budget crossed `level` for the first time in its period."""

    budget: Budget
    level: BudgetLevel
    share: float

    @property
    def text(self) -> str:
        """Reads "80 % of the daily budget used" or "monthly budget reached (104 %)"."""
        percent = f"{100 * self.share:.0f} %"
        if self.level is BudgetLevel.EXCEEDED:
            return f"{self.budget.adjective} budget reached ({percent})"
        return f"{percent} of the {self.budget.adjective} budget used"


def _step_one(
    memory: PeriodMemory, budget: Budget, share: float, key: str, warn: float, alert: float
) -> tuple[PeriodMemory, LevelNotice | None]:
    if memory.key != key:
        memory = PeriodMemory(key)
    level = budget_level(share, 1.0, warn, alert)
    if _LEVEL_RANK[level] <= _LEVEL_RANK[memory.notified]:
        return memory, None
    return PeriodMemory(key, level), LevelNotice(budget, level, share)


def step_levels(
    memory: LevelMemory,
    day_share: float,
    month_share: float,
    day_key: str,
    month_key: str,
    warn: float = DEFAULT_WARN_SHARE,
    alert: float = DEFAULT_ALERT_SHARE,
) -> tuple[LevelMemory, tuple[LevelNotice, ...]]:
    """The new memory and the notices to give now (day first, then month).

    A level is notified at most once per period; falling back and rising again in the
    same period is not news; a new period key starts again from OK.
    """
    day, day_notice = _step_one(memory.day, Budget.DAY, day_share, day_key, warn, alert)
    month, month_notice = _step_one(memory.month, Budget.MONTH, month_share, month_key, warn, alert)
    notices = tuple(notice for notice in (day_notice, month_notice) if notice is not None)
    return LevelMemory(day, month), notices


# ---------------------------------------------------------------- the stop, with grace


@dataclass(frozen=True, slots=True)
class BudgetBreach:
    """The budget that is exceeded, with its figures, for the reasons written to the journal."""

    budget: Budget
    limit_usd: float
    spent_usd: float

    @property
    def text(self) -> str:
        """Reads "daily budget $5.00 reached ($5.03 spent)"."""
        return (
            f"{self.budget.adjective} budget {format_usd(self.limit_usd)} reached ({format_usd(self.spent_usd)} spent)"
        )


def budget_breach(snapshot: BudgetSnapshot) -> BudgetBreach | None:
    """The exceeded budget, or None. The month wins when both are: it lasts longer, so it
    is the one that explains why the VMs will be stopped again if restarted tomorrow."""
    if snapshot.month_level is BudgetLevel.EXCEEDED:
        return BudgetBreach(Budget.MONTH, snapshot.monthly_usd, snapshot.spent_month_usd)
    if snapshot.day_level is BudgetLevel.EXCEEDED:
        return BudgetBreach(Budget.DAY, snapshot.daily_usd, snapshot.spent_today_usd)
    return None


@dataclass(frozen=True, slots=True)
class BudgetStop:
    """Stop `vm` now; `reason` goes to the journal and the notification."""

    vm: str
    reason: str


@dataclass(frozen=True, slots=True)
class GraceHold:
    """`vm` keeps running for its MLflow run until `until`, then is stopped."""

    vm: str
    until: datetime
    run_names: tuple[str, ...]
    breach: BudgetBreach

    def text(self, tz: tzinfo) -> str:
        """Told in `tz`: "training keeps running for its MLflow run lora-r16 until 14:10, then stops: …"."""
        names = ", ".join(sanitize_line(name, 80) for name in self.run_names) or "(unnamed)"
        runs = "run" if len(self.run_names) <= 1 else "runs"
        until = f"{self.until.astimezone(tz):%H:%M}"
        return f"{self.vm} keeps running for its MLflow {runs} {names} until {until}, then stops: {self.breach.text}"


@dataclass(frozen=True, slots=True)
class StopPlan:
    stops: tuple[BudgetStop, ...] = ()
    graces: tuple[GraceHold, ...] = ()
    grace_started: Mapping[str, datetime] = field(default_factory=dict)
    """When each VM's grace began; pass it back in on the next step."""


def _stop_reason(breach: BudgetBreach, vm: VmMoneyView, why: str = "") -> str:
    because = f"{why}, " if why else ""
    return f"{breach.text}: {because}stopping {vm.name} ({format_usd(vm.hourly_usd)}/h)"


def budget_stop_plan(
    breach: BudgetBreach | None,
    vms: Sequence[VmMoneyView],
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
    grace_started: Mapping[str, datetime] | None = None,
) -> StopPlan:
    """Which VMs to stop now and which are in their grace period, and the new grace map.

    Only VMs billed now with a rate above 0 are stopped: stopping a free box does not
    help the budget. A VM keeps its grace start while it runs and the budget stays
    exceeded — also after its grace is over, so that a stop that failed is retried at
    once instead of opening a new grace. A VM whose run ended is stopped at once.
    """
    require_aware(now, "now")
    if breach is None:
        return StopPlan()
    started_before = grace_started or {}
    stops: list[BudgetStop] = []
    graces: list[GraceHold] = []
    started: dict[str, datetime] = {}
    for vm in vms:
        if not vm.running or vm.hourly_usd <= 0:
            continue
        if not vm.has_running_run:
            why = "its MLflow run ended" if vm.name in started_before else ""
            stops.append(BudgetStop(vm.name, _stop_reason(breach, vm, why)))
            continue
        began = started[vm.name] = started_before.get(vm.name, now)
        until = began + grace
        if now.timestamp() >= until.timestamp():
            why = f"grace of {_minutes(grace)} for its MLflow run over"
            stops.append(BudgetStop(vm.name, _stop_reason(breach, vm, why)))
        else:
            graces.append(GraceHold(vm.name, until, vm.run_names, breach))
    return StopPlan(tuple(stops), tuple(graces), started)


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:g} min"


def max_overshoot_usd(
    vms: Iterable[VmMoneyView], grace: timedelta = DEFAULT_GRACE, stop_latency: timedelta = timedelta(0)
) -> float:
    """The most the fleet can spend past the budget once it is exceeded.

    Every VM billed now is billed for at most `stop_latency` more (one tick plus the time
    the provider takes to stop it); a VM with a running MLflow run, for its grace on top.
    VMs that are not running add nothing: one started afterwards is stopped at once, or
    gets a grace of its own, and is then counted by the caller on the next step.
    """
    total = 0.0
    for vm in vms:
        if not vm.running or vm.hourly_usd <= 0:
            continue
        span = stop_latency + (grace if vm.has_running_run else timedelta(0))
        total += vm.hourly_usd * span.total_seconds() / SECONDS_PER_HOUR
    return total


# ---------------------------------------------------------------- the outlook line


def budget_outlook(snapshot, tz: tzinfo) -> str:
    """The Fleet tab's line under the budget bars: the burn now and when a budget is reached.

    "$0.70/h now: daily budget is reached at 17:40". The month is named instead
    when it comes first (a daily budget larger than what is left of the month)."""
    from aiconsole.domain.cost import day_window, month_window

    views = [VmMoneyView(vm.name, vm.power.is_billed, vm.hourly_usd) for vm in snapshot.vms]
    burn = burn_rate_usd_per_h(views)
    budget, now = snapshot.budget, snapshot.at
    day = project_budget(Budget.DAY, budget.spent_today_usd, budget.daily_usd, burn, now, day_window(now, tz)[1])
    month = project_budget(
        Budget.MONTH, budget.spent_month_usd, budget.monthly_usd, burn, now, month_window(now, tz)[1]
    )
    first = month if month.already or (month.at is not None and (day.at is None or month.at < day.at)) else day
    if day.already and not month.already:
        first = day
    if burn <= 0 and not first.already:
        return "nothing billed now"
    return f"{format_usd(burn)}/h now: " + first.text(tz).removeprefix("at the current burn ").removeprefix("the ")
