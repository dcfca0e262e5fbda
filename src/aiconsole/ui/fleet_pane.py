"""The Fleet tab: budget bars and one pane per VM, with start/stop/refresh keys.

The pane owns the fleet monitor's worker. It repaints from an immutable
`FleetSnapshot` on the console's 1 s tick (`draw`: costs and idle timers move with
the clock, and the tick brings the latest telemetry for the GPU gauges) and when the
monitor reports a change (`FleetChanged`, which the console turns into a `redraw`
while this tab shows; see console_tabs.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message

from aiconsole.domain.fleet import FleetSnapshot, VmSnapshot
from aiconsole.domain.budget_policy import budget_outlook
from aiconsole.domain.events import EventKind
from aiconsole.domain.format import format_usd
from aiconsole.domain.power import PowerState
from aiconsole.domain.training import StopCheck
from aiconsole.services.fleet import StopGuarded
from aiconsole.ui.bindings import binding
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.widgets.budget_bar import BudgetBars
from aiconsole.ui.widgets.vm_card import VmCard

if TYPE_CHECKING:
    from textual.widget import Widget

    from aiconsole.domain.telemetry import TelemetrySnapshot
    from aiconsole.services.fleet import FleetMonitor
    from aiconsole.services.guard_heartbeat import GuardHeartbeat
    from aiconsole.services.money_guard import MoneyGuard


def _power_bindings(*, show: bool) -> list:
    return [binding("vm-start", "start", label="Start", show=show), binding("vm-stop", "stop", label="Stop", show=show)]


class FleetChanged(Message):
    """The monitor saw something new (a power state, an error), or an action ended: repaint now."""


class FleetPane(VerticalScroll):
    DEFAULT_CSS = """
    FleetPane { padding: 0 0; }
    FleetPane > BudgetBars { margin: 0 0 0 0; }
    """

    BINDINGS = [
        *_power_bindings(show=True),
        binding("fleet-refresh", "refresh", label="Refresh"),
        binding("vm-next", "select(1)", show=False),
        binding("vm-previous", "select(-1)", show=False),
    ]

    def __init__(self, monitor: FleetMonitor, *, read_only: bool, id: str | None = None) -> None:
        super().__init__(id=id, can_focus=False)
        self.monitor = monitor
        self.read_only = read_only
        self._telemetry: TelemetrySnapshot | None = None
        """The latest telemetry the console's tick gave (None before the hub runs)."""
        self._snapshot: FleetSnapshot = monitor.snapshot()
        self._card_map: dict[str, VmCard] | None = None
        self.money_guard: MoneyGuard | None = None
        """Who enforces the idle and budget stops, once the app runs the guard."""
        self.heartbeat: GuardHeartbeat | None = None

    def use_heartbeat(self, heartbeat: GuardHeartbeat) -> None:
        """The dead-man's switch heartbeats: each card shows its VM's guard state."""
        self.heartbeat = heartbeat
        self.redraw()

    def use_money_guard(self, guard: MoneyGuard) -> None:
        self.money_guard = guard
        self.redraw()

    def budget_note(self, snap: FleetSnapshot) -> str:
        """The line under the budget bars: the burn and its outlook, and who enforces."""
        note = budget_outlook(snap, self.monitor.tz)
        if self.read_only:
            return note + " · read-only"
        if self.money_guard is not None:
            note += " · " + self.money_guard.short_text(snap.at)
        return note

    def compose(self) -> ComposeResult:
        snap = self._snapshot
        yield BudgetBars(snap.budget, self.budget_note(snap), id="budget")
        for vm in snap.vms:
            yield VmCard(vm, snap.at, id=f"vm-{vm.name}")

    def on_mount(self) -> None:
        target = self.default_focus
        if target is not None:
            target.focus()
        # After the first frame: opening the monitor imports the HTTP clients.
        self.call_after_refresh(self.watch_fleet)

    @property
    def default_focus(self) -> Widget | None:
        """The first VM's card (None in a fleet without VMs)."""
        cards = self.query(VmCard)
        return cards.first() if cards else None

    @work(exclusive=True, group="fleet-monitor")
    async def watch_fleet(self) -> None:
        """Open the monitor and poll providers until the pane goes away."""
        await self.monitor.open()
        self.post_message(FleetChanged())
        await self.monitor.run(on_change=lambda: self.post_message(FleetChanged()))

    def draw(self, telemetry: TelemetrySnapshot | None) -> None:
        """The console's tick: the clock moved, and `telemetry` is the latest (None: none yet)."""
        self._telemetry = telemetry
        self.redraw()

    def redraw(self) -> None:
        """Repaint from the monitor now, with the telemetry of the last tick.

        Only the cards in view are repainted: at 80x24 that is two or three of a hundred,
        and repainting all of them every second cost a quarter of a core. The others keep
        what they were given and repaint when they scroll into view (`watch_scroll_y`).
        """
        self._snapshot = snap = self.monitor.snapshot()
        telemetry = self._telemetry
        self.query_one(BudgetBars).show(snap.budget, self.budget_note(snap))
        cards = self._cards()
        for vm in snap.vms:
            card = cards.get(vm.name)
            if card is not None:  # a card reads its host's GPU views only when it paints
                guard = self.heartbeat.state(vm.name) if self.heartbeat is not None else None
                card.show(vm, snap.at, telemetry, in_view=self._in_view(card), guard=guard)

    def _cards(self) -> dict[str, VmCard]:
        if self._card_map is None or len(self._card_map) != len(self._snapshot.vms):
            self._card_map = {card.vm_name: card for card in self.query(VmCard)}
        return self._card_map

    def _in_view(self, card: VmCard) -> bool:
        height = self.scrollable_content_region.height
        if not height:  # not laid out yet: everything counts as in view
            return True
        region = card.virtual_region_with_margin
        top = round(self.scroll_y)
        return region.y < top + height and region.bottom > top

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._paint_cards_come_into_view()

    def on_resize(self) -> None:
        self._paint_cards_come_into_view()

    def _paint_cards_come_into_view(self) -> None:
        for card in self._cards().values():
            if card.behind and self._in_view(card):
                card.paint()

    @property
    def snapshot(self) -> FleetSnapshot:
        """What the pane last drew (the palette lists its VMs)."""
        return self._snapshot

    def vm_named(self, name: str) -> VmSnapshot | None:
        """What the monitor knows now: the pane may be hidden, its last drawing old."""
        return next((vm for vm in self.monitor.snapshot().vms if vm.name == name), None)

    @property
    def selected(self) -> VmSnapshot | None:
        focused = self.screen.focused
        return self.vm_named(focused.vm_name) if isinstance(focused, VmCard) else None

    def action_select(self, step: int) -> None:
        if step > 0:
            self.screen.focus_next(VmCard)
        else:
            self.screen.focus_previous(VmCard)

    def action_refresh(self) -> None:
        self.notify("Asking every provider for fresh state…", timeout=2)
        self.run_worker(self.monitor.refresh(), group="fleet-refresh", exclusive=True)

    def action_start(self, name: str | None = None) -> None:
        vm = self._power_target("start", name)
        if vm is None:
            return
        if vm.power in (PowerState.RUNNING, PowerState.STARTING):
            self.notify(f"{vm.name} is already {vm.power.value}.", markup=False)
            return
        self.notify(f"Starting {vm.name}: {format_usd(vm.hourly_usd)}/h from now on.", markup=False)
        self._power(vm.name, "start")

    def action_stop(self, name: str | None = None) -> None:
        vm = self._power_target("stop", name)
        if vm is None:
            return
        if vm.power in (PowerState.STOPPED, PowerState.STOPPING):
            self.notify(f"{vm.name} is already {vm.power.value}.", markup=False)
            return

        self.run_worker(self._stop_asking(vm), group=f"power-{vm.name}", exclusive=True, exit_on_error=False)

    async def _stop_asking(self, vm: VmSnapshot) -> None:
        """Ask first; with work still on the VM (a RUNNING MLflow run), ask twice, naming it."""
        check = await self.monitor.stop_check(vm.name)
        if check.clear:
            if await self.app.push_screen_wait(_stop_question(vm)):
                await self._run_power(vm.name, "stop")
            return
        await self._stop_guarded(vm, check)

    async def _stop_guarded(self, vm: VmSnapshot, check: StopCheck) -> None:
        warnings = check.warnings(self.monitor.snapshot().at)
        if not await self.app.push_screen_wait(guarded_stop_question(vm, warnings)):
            return
        if await self.app.push_screen_wait(guarded_stop_second_question(vm, check)):
            reason = "stopped from the console, confirmed twice over: " + "; ".join(warnings)
            await self._run_power(vm.name, "stop", force=True, reason=reason)

    def _power_target(self, action: str, name: str | None) -> VmSnapshot | None:
        """The named (else selected) VM if `action` may be done to it; else None, saying why."""
        if self.read_only:
            self.notify(f"Read-only mode: {action} is disabled.", severity="warning")
            return None
        vm = self.selected if name is None else self.vm_named(name)
        if vm is None:
            self.notify("Select a VM first (up/down).", severity="warning")
            return None
        if not vm.can_power:
            self.notify(f"{vm.name} is always on: its provider has no {action}.", markup=False)
            return None
        return vm

    def _power(self, name: str, action: str) -> None:
        self.run_worker(
            self._run_power(name, action), group=f"power-{name}", exclusive=True, exit_on_error=False
        )

    async def _run_power(self, name: str, action: str, *, force: bool = False, reason: str = "") -> None:
        try:
            if action == "start":
                await self.monitor.start_vm(name, reason="started from the console")
            elif force:
                await self.monitor.stop_vm(name, force=True, reason=reason, kind=EventKind.FORCED_STOP)
            else:
                await self.monitor.stop_vm(name, reason="stopped from the console")
        except StopGuarded as guarded:  # a run began while the question was open: ask about it
            vm = self.vm_named(name)
            if vm is not None:
                await self._stop_guarded(vm, guarded.check)
            return
        except Exception as error:  # shown, never fatal: the monitor also keeps it on the pane
            self.notify(f"{action} {name} failed: {error}", severity="error", markup=False, timeout=8)
        else:
            done = "running" if action == "start" else "stopped"
            self.notify(f"{name} is {done}.", markup=False)
        self.post_message(FleetChanged())


def _stop_question(vm: VmSnapshot) -> ConfirmScreen:
    question = Content.assemble("Stop ", (vm.name, "bold"), "?")
    details = Content(
        f"It costs {format_usd(vm.hourly_usd)}/h while running "
        f"({format_usd(vm.cost_run_usd)} this run, {format_usd(vm.cost_today_usd)} today). "
        "Stopping ends whatever runs on it; disks are kept."
    )
    return ConfirmScreen(question, details, yes_label="Stop")


def guarded_stop_question(vm: VmSnapshot, warnings: list[str]) -> ConfirmScreen:
    """The first of the two questions before stopping a VM with work still going on it."""
    question = Content.assemble("Stop ", (vm.name, "bold"), "? Training is still going on it")
    details = Content(
        "\n".join(f"• {line}" for line in warnings)
        + "\n\nStopping ends the run: what it has not saved is lost, and MLflow will show it RUNNING"
        " until someone ends it."
    )
    return ConfirmScreen(question, details, yes_label="Stop anyway")


def guarded_stop_second_question(vm: VmSnapshot, check: StopCheck) -> ConfirmScreen:
    """The second, explicit confirmation: it names what will be lost."""
    names = check.run_names
    what = f"the run {', '.join(names)}" if names else "whatever runs there"
    question = Content.assemble("Really stop ", (vm.name, "bold"), f" and end {what}?")
    details = Content(f"This is the second confirmation. {format_usd(vm.hourly_usd)}/h stops with it.")
    return ConfirmScreen(question, details, yes_label="Stop and end it")


class ReadOnlyFleetPane(FleetPane):
    """--read-only: s and x leave the footer, but still answer, saying why nothing happens.

    (A `check_action` returning False would hide them too, but then the key is swallowed
    without a word and the operator cannot tell read-only from a dead key.) Bindings of
    a subclass replace its base's for the same keys.
    """

    BINDINGS = _power_bindings(show=False)


def fleet_pane(monitor: FleetMonitor, *, read_only: bool, id: str | None = None) -> FleetPane:
    pane_class = ReadOnlyFleetPane if read_only else FleetPane
    return pane_class(monitor, read_only=read_only, id=id)
