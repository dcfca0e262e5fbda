"""The fleet monitor: polls each VM's provider, keeps the ledger, builds snapshots.

One polling loop per VM, so a slow or failing provider never delays the others.
Each loop polls every `poll_seconds`, faster while a VM is changing state, and
backs off (with jitter) while its provider fails. Nothing raised by a provider
leaves a loop: it becomes the VM's error, shown on its pane beside the last known
state, which turns stale once older than its freshness window.

The monitor is built before the first frame (cheap: config and the ledger) and
opened after it: `open()` builds the providers, which imports the HTTP clients.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo

from aiconsole.domain.budget import build_budget_snapshot
from aiconsole.domain.cost import PowerInterval, month_window
from aiconsole.domain.events import Actor, Event, EventKind
from aiconsole.domain.fleet import FleetSnapshot
from aiconsole.domain.idle import ActivityKind, ActivitySignal
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.training import StopCheck
from aiconsole.domain.vm_view import PowerObservation, build_vm_snapshot
from aiconsole.services.clock import utc_now
from aiconsole.services.ledger import Ledger
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, VmProvider

log = logging.getLogger(__name__)

ProviderFactory = Callable[[object], VmProvider]
"""Builds the provider for one VM config; may raise ProviderError (e.g. a missing key)."""
StopGuard = Callable[[str], Awaitable["StopCheck"]]
"""Asked before a VM is stopped: what still runs on it (the MLflow watch's `stop_check`)."""

MAX_BACKOFF_SECONDS = 300.0
PERSIST_ACTIVITY_EVERY_S = 60.0
STALE_AFTER_POLLS = 3




@dataclass(eq=False)
class _VmState:
    """Mutable, private to the monitor; the outside world only sees snapshots."""

    config: object  # a config.VmConfig
    provider: VmProvider | None = None
    observation: PowerObservation | None = None
    intervals: list[PowerInterval] = field(default_factory=list)
    signals: dict[str, ActivitySignal] = field(default_factory=dict)
    pending: str = ""
    failures: int = 0
    saved: dict[str, ActivitySignal] = field(default_factory=dict)
    """Each kind's outside activity as last written to the ledger."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.config.name


def _shown(state: _VmState) -> tuple:
    """What a poll can change on the VM's pane, but for its age (the pane's clock moves that)."""
    seen = state.observation
    if seen is None:
        return (None, state.pending)
    return (seen.power, seen.raw_state, seen.label, seen.error, seen.checked_at is None, state.pending)


def _worth_saving(saved: ActivitySignal | None, new: ActivitySignal) -> bool:
    """Whether `new` must reach the ledger now (see `FleetMonitor.note_activity`)."""
    if saved is None or (saved.detail, saved.unknown, saved.until is None) != (new.detail, new.unknown, new.until is None):
        return True
    if new.at.timestamp() - saved.at.timestamp() >= PERSIST_ACTIVITY_EVERY_S:
        return True
    # The saved lease has less than half its length left: renewed on disk now, so another
    # process reading the ledger never sees it lapse while its source still renews it.
    if saved.until is None or new.until is None:
        return False
    return saved.until.timestamp() - new.at.timestamp() < (new.until.timestamp() - new.at.timestamp()) / 2


class UnknownVmError(KeyError):
    def __str__(self) -> str:
        return f"no VM named {self.args[0]!r} in the config"


class StopGuarded(ProviderError):
    """A stop refused because work still runs on the VM; `stop_vm(..., force=True)` overrides."""

    def __init__(self, check: StopCheck, now: datetime) -> None:
        self.check = check
        super().__init__(ProviderErrorKind.FAILED, f"not stopping {check.vm}: " + "; ".join(check.warnings(now)))


class FleetMonitor:
    def __init__(
        self,
        settings,
        ledger: Ledger,
        provider_factory: ProviderFactory,
        *,
        tz: tzinfo,
        clock: Callable[[], datetime] = utc_now,
        read_only: bool = False,
        transition_poll_seconds: float = 3.0,
        resources: Sequence[AbstractAsyncContextManager] = (),
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.read_only = read_only
        self._factory = provider_factory
        self._tz = tz
        self._clock = clock
        self._transition_poll = transition_poll_seconds
        self._resources = resources
        self._stack = AsyncExitStack()
        self._opened = False
        self._stop_guard: StopGuard | None = None
        self._snoozes: dict[str, datetime] = {}
        """The idle stops put off (the ledger's, as of the last `sync_activity`)."""
        self._states: dict[str, _VmState] = {vm.name: _VmState(vm) for vm in settings.vm}
        for state in self._states.values():
            self._load_history(state)
        self._snoozes = ledger.snoozes()

    # -- life cycle ---------------------------------------------------------------

    async def open(self) -> None:
        """Start resources (e.g. the demo's servers) and build every VM's provider."""
        if self._opened:
            return
        self._opened = True
        for resource in self._resources:
            await self._stack.enter_async_context(resource)
        for state in self._states.values():
            try:
                state.provider = await asyncio.to_thread(self._factory, state.config)
            except ProviderError as error:
                self._fail(state, error.message)

    async def close(self) -> None:
        for state in self._states.values():
            if state.provider is not None:
                with suppress(Exception):
                    await state.provider.aclose()
                state.provider = None
        await self._stack.aclose()
        self.ledger.close()

    async def run(self, on_change: Callable[[], None] = lambda: None) -> None:
        """Poll every VM until cancelled. Never raises because of a provider."""
        await self.open()
        async with asyncio.TaskGroup() as group:
            for state in self._states.values():
                group.create_task(self._poll_loop(state, on_change), name=f"poll-{state.name}")

    # -- reading ------------------------------------------------------------------

    def snapshot(self) -> FleetSnapshot:
        now = self._clock()
        budget_cfg = self.settings.budget
        vms = tuple(self._vm_snapshot(state, now) for state in self._states.values())
        budget = build_budget_snapshot(
            budget_cfg.daily_usd,
            budget_cfg.monthly_usd,
            sum(vm.cost_today_usd for vm in vms),
            sum(vm.cost_month_usd for vm in vms),
            budget_cfg.warn_at,
            budget_cfg.alert_at,
        )
        return FleetSnapshot(at=now, vms=vms, budget=budget, read_only=self.read_only)

    def powers(self) -> dict[str, PowerState]:
        """Each VM's power as its last poll saw it: what `snapshot()` shows, without its cost
        arithmetic (the telemetry hub asks every second which VMs run)."""
        return {
            name: state.observation.power if state.observation is not None else PowerState.UNKNOWN
            for name, state in self._states.items()
        }

    def _vm_snapshot(self, state: _VmState, now: datetime):
        vm = state.config
        return build_vm_snapshot(
            name=vm.name,
            provider=vm.provider,
            can_power=vm.provider != "static",
            hourly_usd=vm.hourly_usd,
            idle_stop_minutes=vm.idle_stop_minutes,
            intervals=state.intervals,
            signals=state.signals.values(),
            observation=state.observation,
            freshness_seconds=STALE_AFTER_POLLS * vm.poll_seconds,
            now=now,
            tz=self._tz,
            pending_action=state.pending,
            cost_warning_usd=self.settings.budget.vm_daily_warn_usd,
            cost_critical_usd=self.settings.budget.vm_daily_critical_usd,
            snoozed_until=self._snoozes.get(vm.name),
        )

    # -- acting -------------------------------------------------------------------

    async def refresh(self, name: str | None = None) -> None:
        """Poll now: one VM, or all of them at once."""
        states = [self._state(name)] if name else list(self._states.values())
        await asyncio.gather(*(self._poll(state) for state in states))

    async def start_vm(self, name: str, *, reason: str = "start asked", actor: str = Actor.OPERATOR) -> None:
        """Start `name` through its provider; journaled (`reason`, `actor`) before it is asked."""
        await self._power(self._state(name), "start", EventKind.START, reason, actor)

    async def stop_vm(
        self, name: str, *, force: bool = False, reason: str = "stop asked", actor: str = Actor.OPERATOR,
        kind: str = EventKind.STOP,
    ) -> None:  # fmt: skip
        """Stop `name`; unless `force`, refused (StopGuarded, journaled) while the stop guard finds
        work on it. The stop is journaled with `kind`, `reason` and `actor` before it is asked."""
        state = self._state(name)
        if not force:
            check = await self.stop_check(name)
            if not check.clear:
                refused = StopGuarded(check, self._clock())
                self.record_event(name, EventKind.STOP_REFUSED, refused.message, actor)
                raise refused
        await self._power(state, "stop", kind, reason, actor)

    def record_event(self, vm: str, kind: str, reason: str, actor: str = Actor.OPERATOR) -> Event:
        """Journal `kind` on `vm` ("" for the fleet) now, with its price and cost today."""
        now = self._clock()
        state = self._states.get(vm)
        if state is not None:
            view = self._vm_snapshot(state, now)
            hourly, cost = view.hourly_usd, view.cost_today_usd
        else:
            hourly, cost = 0.0, None
        event = Event(now, str(kind), vm, reason, str(actor), hourly, cost)
        self.ledger.record_event(event)
        return event

    def set_stop_guard(self, guard: StopGuard | None) -> None:
        """What `stop_check` asks (the MLflow watch); None: nothing is checked."""
        self._stop_guard = guard

    async def stop_check(self, name: str) -> StopCheck:
        """What still runs on `name` and would be lost by stopping it (clear without a guard)."""
        self._state(name)
        if self._stop_guard is None:
            return StopCheck(name)
        try:
            return await self._stop_guard(name)
        except Exception as error:  # a guard that fails has not shown the VM idle: ask again
            log.exception("stop guard for %s failed", name)
            return StopCheck(name, failed=sanitize_line(f"{type(error).__name__}: {error}"))

    def note_activity(
        self, name: str, kind: str, detail: str, at: datetime | None = None, *, lease_s: float | None = None,
        until: datetime | None = None, unknown: bool = False,
    ) -> None:  # fmt: skip
        """An activity signal from outside (GPU use, a chat stream, a RUNNING run...).

        `lease_s` (or `until`) keeps the VM busy that long unless renewed; `unknown`: the
        source could not read its data (busy too). Kept in memory at once; written to the
        ledger, where another process (a console and `watch`) reads it, when it changes
        what it says, when its saved lease would lapse before the next write, and at least
        once a minute: a busy GPU reports itself every second.
        """
        state = self._states.get(name)
        if state is None:
            return
        at = at or self._clock()
        if lease_s is not None:
            until = at + timedelta(seconds=lease_s)
        signal = ActivitySignal(name, kind, at, detail, until, unknown)
        state.signals[kind] = signal
        if _worth_saving(state.saved.get(kind), signal):
            self.ledger.record_activity(name, kind, at, detail, until=until, unknown=unknown)
            state.saved[kind] = signal

    def sync_activity(self) -> None:
        """Take the newer signals another process wrote to the ledger (one query for the fleet):
        the console's chat streams reach `watch`, and `watch`'s readings reach the console;
        and the snoozes, whoever gave them."""
        self._snoozes = self.ledger.snoozes()
        for signal in self.ledger.latest_activities():
            state = self._states.get(signal.vm)
            if state is None:
                continue
            mine = state.signals.get(signal.kind)
            if mine is None or signal.at > mine.at:
                state.signals[signal.kind] = signal
                state.saved[signal.kind] = signal

    async def _power(self, state: _VmState, action: str, kind: str, reason: str, actor: str) -> None:
        """Carry out start/stop through the provider, journaled first, recorded as activity."""
        if self.read_only:
            raise ProviderError(ProviderErrorKind.UNSUPPORTED, f"read-only: {action} is disabled")
        provider = self._provider(state)
        if not provider.can_power:
            raise ProviderError(ProviderErrorKind.UNSUPPORTED, f"{state.name} is always on")
        if state.pending:
            raise ProviderError(ProviderErrorKind.FAILED, f"{state.name}: {state.pending} already under way")
        self.record_event(state.name, kind, reason, actor)
        self._record_signal(state, ActivityKind.OPERATOR, action)
        state.pending = action
        state.wake.set()  # the poll loop switches to its fast pace and shows the transition
        try:
            await (provider.start() if action == "start" else provider.stop())
        except ProviderError as error:
            self.record_event(state.name, f"{action}-failed", error.message, actor)
            raise
        finally:
            state.pending = ""
            await self._poll(state)
            state.wake.set()

    # -- polling ------------------------------------------------------------------

    async def _poll_loop(self, state: _VmState, on_change: Callable[[], None]) -> None:
        while True:
            before = _shown(state)
            await self._poll(state)
            if _shown(state) != before:  # a poll that only confirms what is shown is no news:
                on_change()  # with 100 VMs, reporting every poll repainted the fleet 3 times a second
            state.wake.clear()
            with suppress(TimeoutError):
                async with asyncio.timeout(self._next_delay(state)):
                    await state.wake.wait()

    def _next_delay(self, state: _VmState) -> float:
        power = state.observation.power if state.observation else PowerState.UNKNOWN
        if state.pending or power.is_transition:
            return self._transition_poll
        base = state.config.poll_seconds
        if state.failures:
            backoff = min(MAX_BACKOFF_SECONDS, base * 2 ** min(state.failures - 1, 8))
            return backoff * random.uniform(0.8, 1.2)  # jitter: providers are not hit in lockstep
        return base

    async def _poll(self, state: _VmState) -> None:
        if state.provider is None:
            return
        try:
            status = await state.provider.status()
        except ProviderError as error:
            self._fail(state, error.message)
            return
        except Exception as error:  # a bug or a library surprise: shown, never fatal
            log.exception("polling %s failed", state.name)
            self._fail(state, sanitize_line(f"{type(error).__name__}: {error}"))
            return
        # Dated when the provider was asked: a state read from a listing shared with the
        # account's other VMs is that listing's age old, never shown (or billed) as newer.
        observed = self._clock() - timedelta(seconds=status.age_s)
        state.failures = 0
        state.observation = PowerObservation(status.power, observed, status.raw_state, status.label)
        if self.ledger.record_power(state.name, status.power, observed):  # ignores unknown/error
            self._load_history(state)
            self._record_signal(state, ActivityKind.POWER, status.power.value, at=observed)

    def _fail(self, state: _VmState, message: str) -> None:
        state.failures += 1
        previous = state.observation or PowerObservation(PowerState.UNKNOWN, None)
        state.observation = replace(previous, error=message)

    # -- helpers ------------------------------------------------------------------

    def _state(self, name: str) -> _VmState:
        try:
            return self._states[name]
        except KeyError:
            raise UnknownVmError(name) from None

    def _provider(self, state: _VmState) -> VmProvider:
        if state.provider is None:
            error = state.observation.error if state.observation else "not connected yet"
            raise ProviderError(ProviderErrorKind.FAILED, f"{state.name}: {error}")
        return state.provider

    def _load_history(self, state: _VmState) -> None:
        month_start, _ = month_window(self._clock(), self._tz)
        state.intervals = self.ledger.intervals(state.name, since=month_start)
        for signal in self.ledger.latest_activities(state.name):
            state.signals[signal.kind] = signal

    def _record_signal(self, state: _VmState, kind: str, detail: str, at: datetime | None = None) -> None:
        at = at or self._clock()
        self.ledger.record_activity(state.name, kind, at, detail)
        state.signals[kind] = state.saved[kind] = ActivitySignal(state.name, kind, at, detail)

    def now(self) -> datetime:
        """The monitor's clock: what `snapshot().at` would be, without building the snapshot."""
        return self._clock()

    @property
    def tz(self) -> tzinfo:
        """The operator's zone: days and months of the budgets are counted in it."""
        return self._tz

    @property
    def names(self) -> Mapping[str, object]:
        return {name: state.config for name, state in self._states.items()}
