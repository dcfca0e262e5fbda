"""`MoneyGuard`: the money policy carried out, by the console or by `aiconsole watch`.

    guard = MoneyGuard(monitor, role=Role.WATCH, tz=tz, notify=print_notice)
    await guard.run()        # until cancelled: every `step_s`, one `step()`
    guard.snooze("gpu")      # +30 minutes on its idle stop, journaled (any process)

Each step:
1. takes the activity other processes wrote to the ledger (a console's chat streams reach
   `watch`, and the other way round);
2. claims the enforcement lock (domain/enforcement.py). Only its holder acts; the other
   process still warns its operator about idle stops coming (so the snooze key works
   wherever the operator sits) and shows who enforces (`holder_text`);
3. the idle stop (`IdleEnforcer`): warnings 5 and 1 minute before, then the stop;
4. the budgets (domain/budget_policy.py): the 50 %, 80 % and 100 % levels and each VM's
   own daily thresholds, notified and journaled once per period (the ledger remembers,
   across restarts and whichever process enforces); at 100 % every VM billed now is
   stopped, a VM with a RUNNING MLflow run (or one that cannot be asked) after a grace
   period with a loud alert. That last stop is forced: the budget's bound on the overshoot
   is the rule the operator chose, and the journal names the run it ended.

The lock is renewed by a task of its own, so a provider call that hangs in a step never
lets the lease lapse while this process still acts.

Nothing is stopped in the first `warmup_s` after the guard starts: the activity sources
(GPU feeds, the MLflow watch, the probe) need that long to report what they see, and a VM
that only looks idle because nobody has looked yet must not be stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from aiconsole.domain.budget_policy import (
    DEFAULT_GRACE,
    LevelMemory,
    LevelNotice,
    PeriodMemory,
    VmMoneyView,
    budget_breach,
    budget_stop_plan,
    day_key,
    month_key,
    step_levels,
)
from aiconsole.domain.enforcement import DEFAULT_LEASE_S, LockHolder, Role, holder_id
from aiconsole.domain.events import Actor, EventKind
from aiconsole.domain.fleet import BudgetLevel, FleetSnapshot, VmCostLevel
from aiconsole.domain.format import format_usd
from aiconsole.domain.idle_policy import DEFAULT_SNOOZE_MINUTES, IdleAction
from aiconsole.domain.power import PowerState
from aiconsole.services.idle_enforcer import IdleEnforcer, IdleNotice
from aiconsole.services.providers.base import ProviderError

log = logging.getLogger(__name__)

DEFAULT_STEP_S = 5.0
DEFAULT_WARMUP_S = 60.0


@dataclass(frozen=True, slots=True)
class MoneyNotice:
    """Something to tell the operator: a toast in the console, a log line in `watch`."""

    text: str
    severity: str = "information"
    """"information", "warning" or "error" (Textual's notification severities)."""
    vm: str = ""
    snoozable: bool = False
    """An idle stop coming: the console offers its snooze key."""


_LEVEL_SEVERITY = {BudgetLevel.WARNING: "warning", BudgetLevel.ALERT: "error", BudgetLevel.EXCEEDED: "error"}
_LEVEL_RANK = {"ok": 0, "warning": 1, "alert": 2, "exceeded": 3, "critical": 2}


class MoneyGuard:
    def __init__(
        self,
        monitor,
        *,
        role: str = Role.CONSOLE,
        tz: tzinfo,
        notify: Callable[[MoneyNotice], None] = lambda notice: None,
        grace: timedelta = DEFAULT_GRACE,
        snooze_minutes: float = DEFAULT_SNOOZE_MINUTES,
        lease_s: float = DEFAULT_LEASE_S,
        holder: str | None = None,
        warmup_s: float = 0.0,
    ) -> None:
        self.monitor = monitor
        self.role = Role(role)
        self.actor = Actor.WATCH if self.role is Role.WATCH else Actor.CONSOLE
        self.tz = tz
        self.notify = notify
        self.grace = grace
        self.lease_s = lease_s
        self.me = holder or holder_id(self.role, os.getpid(), socket.gethostname())
        self.idle = IdleEnforcer(monitor, actor=self.actor, notify=self._idle_notice, snooze_minutes=snooze_minutes)
        self.holding = False
        """Whether this process enforces (as of its last claim)."""
        self.holder: LockHolder | None = None
        """Who enforces, as last read (this process included)."""
        self._grace_started: dict[str, datetime] = {}
        self._grace_told: set[str] = set()
        self.warmup_s = warmup_s
        self._orphans_told: set[str] = set()
        self._first_step: datetime | None = None

    # -- running ---------------------------------------------------------------------------

    async def run(self, step_s: float = DEFAULT_STEP_S) -> None:
        """Claim the lock and step every `step_s` until cancelled; never raises for a step."""
        renewer = asyncio.create_task(self._renew_forever(), name="money-guard-lock")
        try:
            while True:
                try:
                    await self.step()
                except Exception:  # a bug in one step must not end the guard: logged, next step
                    log.exception("money guard step failed")
                await asyncio.sleep(step_s)
        finally:
            renewer.cancel()
            with suppress(asyncio.CancelledError):
                await renewer
            self.release()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 4)
            with suppress(Exception):
                self.claim()

    def claim(self) -> bool:
        """Claim the enforcement lock now; True while this process holds it."""
        ledger = self.monitor.ledger
        was_holding = self.holding
        result = ledger.claim_enforcer(self.me, self.role, self.monitor.now(), self.lease_s)
        self.holding = result.holding
        self.holder = result.row if result.row is not None else ledger.enforcer()
        if was_holding and not self.holding:
            self.notify(MoneyNotice("Another aiconsole takes over the money guard (idle and budget stops)."))
        return self.holding

    def release(self) -> None:
        """Give the lock up (a clean exit): the other process takes over at its next claim."""
        with suppress(Exception):
            self.monitor.ledger.release_enforcer(self.me)
        self.holding = False

    def holder_text(self, now: datetime) -> str:
        """Who enforces, for `watch`'s log: "money guard: this console", or the other one."""
        if self.holding:
            return f"money guard: this {self.role.value}"
        other = self._other_holder(now)
        return "money guard: " + (other.text(now, self.tz) if other else "nobody enforces yet")

    def short_text(self, now: datetime) -> str:
        """The same, short enough for the Fleet tab's outlook line at 80 columns."""
        if self.holding:
            return "enforced here"
        other = self._other_holder(now)
        return f"enforced by {other.holder}" if other else "nobody enforces yet"

    def _other_holder(self, now: datetime) -> LockHolder | None:
        """The other process that holds the lock, if it renewed it within its lease."""
        if self.holder is None or self.holder.lapsed(now, self.lease_s):
            return None
        return self.holder

    async def step(self) -> None:
        self.monitor.sync_activity()
        holding = self.claim()
        now = self.monitor.now()
        self._first_step = self._first_step or now
        acting = holding and now.timestamp() - self._first_step.timestamp() >= self.warmup_s
        snapshot = self.monitor.snapshot()  # one per step, shared by the idle and budget rules
        stopped = await self.idle.step(act=acting, snapshot=snapshot)
        if acting:
            # A VM the idle rule just stopped must not be stopped again from the older picture.
            await self._budget_step(self.monitor.snapshot() if stopped else snapshot)

    def snooze(self, name: str, minutes: float | None = None) -> datetime:
        """Put `name`'s idle stop off (default 30 minutes); works whoever enforces."""
        return self.idle.snooze(name, minutes)

    # -- orphans ---------------------------------------------------------------------------

    def orphans_found(self, report) -> None:
        """An orphan scan's report (services/orphans.py): each running instance the config does
        not know is told once per run of this process, and journaled once a day."""
        ledger, today = self.monitor.ledger, day_key(report.at, self.tz)
        for orphan in report.running:
            item = orphan.instance
            key = f"orphan {item.provider} {item.endpoint} {item.instance_id}"
            if key not in self._orphans_told:
                self._orphans_told.add(key)
                self.notify(MoneyNotice(orphan.text, "error"))
            if ledger.notified_level(f"{key} {today}") is None:
                ledger.set_notified_level(f"{key} {today}", "told")
                self.monitor.record_event("", EventKind.ORPHAN, orphan.text, self.actor)

    # -- idle ------------------------------------------------------------------------------

    def _idle_notice(self, notice: IdleNotice) -> None:
        coming = notice.action in (IdleAction.WARN_5MIN, IdleAction.WARN_1MIN)
        severity = "error" if notice.action is IdleAction.WARN_1MIN else "warning"
        self.notify(MoneyNotice(notice.text, severity if coming else "warning", notice.vm, snoozable=coming))

    # -- budgets ---------------------------------------------------------------------------

    async def _budget_step(self, snapshot: FleetSnapshot) -> None:
        self._levels(snapshot)
        self._vm_levels(snapshot)
        await self._budget_stops(snapshot)

    def _levels(self, snapshot: FleetSnapshot) -> None:
        """The fleet's 50/80/100 % levels, once per period (remembered in the ledger)."""
        ledger, budget, now = self.monitor.ledger, snapshot.budget, snapshot.at
        keys = (f"day {day_key(now, self.tz)}", f"month {month_key(now, self.tz)}")
        before = [BudgetLevel(ledger.notified_level(key) or BudgetLevel.OK) for key in keys]
        memory = LevelMemory(PeriodMemory(keys[0], before[0]), PeriodMemory(keys[1], before[1]))
        day_share = budget.spent_today_usd / budget.daily_usd if budget.daily_usd > 0 else 0.0
        month_share = budget.spent_month_usd / budget.monthly_usd if budget.monthly_usd > 0 else 0.0
        settings = self.monitor.settings.budget
        memory, notices = step_levels(
            memory, day_share, month_share, keys[0], keys[1], settings.warn_at, settings.alert_at
        )
        for key, period in zip(keys, (memory.day, memory.month), strict=True):
            if period.notified is not BudgetLevel.OK:
                ledger.set_notified_level(key, period.notified)
        for notice in notices:
            self._tell_level(notice, snapshot)

    def _tell_level(self, notice: LevelNotice, snapshot: FleetSnapshot) -> None:
        budget = snapshot.budget
        spent = budget.spent_today_usd if notice.budget.value == "day" else budget.spent_month_usd
        text = f"{notice.text}: {format_usd(spent)} spent"
        self.monitor.record_event("", EventKind.BUDGET, f"{notice.level.value}: {text}", self.actor)
        self.notify(MoneyNotice(text, _LEVEL_SEVERITY.get(notice.level, "warning")))

    def _vm_levels(self, snapshot: FleetSnapshot) -> None:
        """Each VM's own daily cost above its warning or critical threshold, once a day."""
        ledger, today = self.monitor.ledger, day_key(snapshot.at, self.tz)
        for vm in snapshot.vms:
            if vm.cost_level is VmCostLevel.OK:
                continue
            key = f"vm {vm.name} {today}"
            if _LEVEL_RANK[vm.cost_level.value] <= _LEVEL_RANK[ledger.notified_level(key) or "ok"]:
                continue
            ledger.set_notified_level(key, vm.cost_level.value)
            settings = self.monitor.settings.budget
            limit = (
                settings.vm_daily_critical_usd if vm.cost_level is VmCostLevel.CRITICAL else settings.vm_daily_warn_usd
            )
            text = f"{vm.name} has cost {format_usd(vm.cost_today_usd)} today (above {format_usd(limit)})"
            self.monitor.record_event(vm.name, EventKind.BUDGET, f"{vm.cost_level.value}: {text}", self.actor)
            severity = "error" if vm.cost_level is VmCostLevel.CRITICAL else "warning"
            self.notify(MoneyNotice(text, severity, vm.name))

    async def _budget_stops(self, snapshot: FleetSnapshot) -> None:
        breach = budget_breach(snapshot.budget)
        if breach is None:
            self._grace_started.clear()
            self._grace_told.clear()
            return
        billed = [
            vm for vm in snapshot.vms
            if vm.can_power and vm.hourly_usd > 0 and vm.power in (PowerState.RUNNING, PowerState.STARTING)
            and not vm.pending_action
        ]  # fmt: skip
        views = []
        for vm in billed:
            check = await self.monitor.stop_check(vm.name)  # fresh: a run that began since counts
            views.append(VmMoneyView(vm.name, True, vm.hourly_usd, not check.clear, check.run_names))
        plan = budget_stop_plan(breach, views, snapshot.at, self.grace, self._grace_started)
        self._grace_started = dict(plan.grace_started)
        for hold in plan.graces:
            if hold.vm not in self._grace_told:  # loud, once per grace: journaled and notified
                self._grace_told.add(hold.vm)
                text = hold.text(self.tz)
                self.monitor.record_event(hold.vm, EventKind.BUDGET, f"grace: {text}", self.actor)
                self.notify(MoneyNotice(f"⚠ {text}", "error", hold.vm))
        for stop in plan.stops:
            graced = stop.vm in self._grace_started
            try:
                await self.monitor.stop_vm(
                    stop.vm, force=graced, reason=stop.reason, actor=self.actor, kind=EventKind.AUTO_STOP
                )
            except ProviderError as error:  # journaled by the monitor; tried again next step
                self.notify(MoneyNotice(f"{stop.vm} was not stopped: {error.message}", "error", stop.vm))
                continue
            self.notify(MoneyNotice(stop.reason, "error", stop.vm))
            self._grace_started.pop(stop.vm, None)
            self._grace_told.discard(stop.vm)
