"""`IdleEnforcer`: the idle auto-stop, carried out through the fleet monitor.

    enforcer = IdleEnforcer(monitor, actor=Actor.CONSOLE, notify=show)
    await enforcer.step()            # every few seconds: warn at 5 and 1 minute, then stop
    enforcer.snooze("inference")     # +30 minutes, journaled

The decisions are `domain/idle_policy.idle_stop_plan`'s; this module keeps what they need
between steps (the warnings given, the snoozes) and acts on them. A stop goes through
`FleetMonitor.stop_vm` without `force`: it is journaled (kind `auto-stop`, the reason
naming the idle time and the limit) before the provider is asked, and the stop guard
still refuses it if an MLflow run is RUNNING there. Just before stopping, the VM's state
is read again: activity that came in since the step began (a chat, a pull) wins.

Snoozes live in the ledger, so one given at a console holds the `watch` that enforces.
`services/money_guard.py` runs it: with `act=False` in the process that does not hold the
enforcement lock, which still warns its operator (who can snooze) but never stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiconsole.domain.events import Actor, EventKind
from aiconsole.domain.fleet import FleetSnapshot, VmSnapshot
from aiconsole.domain.idle_policy import DEFAULT_SNOOZE_MINUTES, IdleAction, IdleDecision, idle_stop_plan, snooze
from aiconsole.domain.power import PowerState
from aiconsole.services.providers.base import ProviderError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IdleNotice:
    """A warning or a stop to tell the operator about (the console shows it with a snooze key)."""

    vm: str
    action: IdleAction
    text: str


class IdleEnforcer:
    def __init__(
        self,
        monitor,
        *,
        actor: str = Actor.CONSOLE,
        notify: Callable[[IdleNotice], None] = lambda notice: None,
        snooze_minutes: float = DEFAULT_SNOOZE_MINUTES,
    ) -> None:
        self.monitor = monitor
        self.actor = actor
        self.notify = notify
        self.snooze_minutes = snooze_minutes
        self._warned: dict[str, frozenset[str]] = {}
        self._snoozed: dict[str, datetime] = {}
        """The ledger's snoozes, read at each step."""
        self._stop_at: dict[str, datetime] = {}

    def decide(self, vm: VmSnapshot, now: datetime) -> IdleDecision:
        """The decision for one VM now, remembering the warnings it gives."""
        if not vm.can_power or vm.power is not PowerState.RUNNING or vm.pending_action:
            self._warned.pop(vm.name, None)
            self._stop_at.pop(vm.name, None)
            return IdleDecision(IdleAction.NONE, frozenset(), "not running")
        decision = idle_stop_plan(
            vm.name,
            vm.idle,
            vm.idle_stop_minutes,
            self._snoozed.get(vm.name),
            self._warned.get(vm.name, frozenset()),
            now,
        )
        self._warned[vm.name] = decision.warned
        if decision.stop_at is None:
            self._stop_at.pop(vm.name, None)
        else:
            self._stop_at[vm.name] = decision.stop_at
        return decision

    async def step(self, *, act: bool = True, snapshot: FleetSnapshot | None = None) -> list[str]:
        """One look at every VM: warn, or stop those idle past their limit; the names stopped.
        With `act=False` (another process enforces) it only warns. `snapshot`: the fleet as
        the caller just took it (the money guard shares one per step: each sums every VM's costs)."""
        self._snoozed = self.monitor.ledger.snoozes()
        snapshot = snapshot or self.monitor.snapshot()
        stopped = []
        for vm in snapshot.vms:
            decision = self.decide(vm, snapshot.at)
            if decision.action in (IdleAction.WARN_5MIN, IdleAction.WARN_1MIN):
                self.notify(IdleNotice(vm.name, decision.action, decision.text))
            elif decision.action is IdleAction.STOP and act and await self._stop(vm.name):
                stopped.append(vm.name)
        return stopped

    def stop_at(self, name: str) -> datetime | None:
        """When `name` is due to stop if it stays idle (snooze included), as last decided."""
        return self._stop_at.get(name)

    async def _stop(self, name: str) -> bool:
        snapshot = self.monitor.snapshot()  # activity may have come meanwhile: decide again
        decision = self.decide(next(vm for vm in snapshot.vms if vm.name == name), snapshot.at)
        if decision.action is not IdleAction.STOP:
            return False
        self.notify(IdleNotice(name, IdleAction.STOP, decision.text))
        try:
            await self.monitor.stop_vm(name, reason=decision.text, actor=self.actor, kind=EventKind.AUTO_STOP)
        except ProviderError as error:  # journaled by the monitor (refused or failed); tried again next step
            log.warning("idle stop of %s did not happen: %s", name, error.message)
            self.notify(IdleNotice(name, IdleAction.NONE, f"{name} was not stopped: {error.message}"))
            return False
        self._warned.pop(name, None)
        return True

    def snooze(self, name: str, minutes: float | None = None) -> datetime:
        """Put `name`'s idle stop off for `minutes` (default `snooze_minutes`) from now; journaled."""
        minutes = self.snooze_minutes if minutes is None else minutes
        until = snooze(self.monitor.now(), minutes)
        self.monitor.ledger.set_snooze(name, until)
        self.monitor.sync_activity()  # the pane's countdown shows it at once
        self._snoozed[name] = until
        self.monitor.record_event(
            name, EventKind.SNOOZE, f"idle stop put off by {minutes:g} minutes", actor=Actor.OPERATOR
        )
        return until
