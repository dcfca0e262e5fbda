"""The Textual application: header, the tabs (Fleet, GPUs, Services, Models, Chat, Training,
Events), footer, help and the palette.

The first frame comes before anything slow: the app is built from what the command
line asked for, paints a "loading" body, and only then validates the settings and
builds the fleet monitor (`load_runtime`), then mounts the tabs (console_tabs.py,
which also owns the 1 s tick that draws them). The telemetry hub is built after that,
in a worker, and the model library and the chat after the hub, on its endpoints and SSH pool. A bad
config ends the app with exit status 2 and the same message the CLI prints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from aiconsole.keymap import KEYS_BY_ID
from aiconsole.ui.bindings import binding
from aiconsole.ui.themes import DEFAULT_THEME, bundled_theme_dirs, load_themes

if TYPE_CHECKING:
    from aiconsole.assembly import Runtime
    from aiconsole.domain.training import StopCheck
    from aiconsole.runtime import RuntimeRequest
    from aiconsole.services.chat_service import ChatService
    from aiconsole.services.model_library import ModelLibrary
    from aiconsole.services.money_guard import MoneyGuard, MoneyNotice
    from aiconsole.services.telemetry import TelemetryHub
    from aiconsole.services.training import TrainingWatch
    from aiconsole.ui.console_tabs import ConsoleTabs
    from aiconsole.ui.fleet_pane import FleetPane
    from aiconsole.ui.help import KeyRow

# The tabs, their panes and widgets and the dialogs are imported when first needed,
# after the first frame: the start-up budget has no room for them (docs/performance.md).

TAB_PALETTE = (
    ("fleet", "Show Fleet", "VMs: power, cost, idle time"),
    ("gpus", "Show GPUs", "Every GPU of the fleet"),
    ("services", "Show Services", "Each service's health"),
    ("models", "Show Models", "Each VM's Ollama models and pulls"),
    ("chat", "Show Chat", "Talk to a model on a VM"),
    ("training", "Show Training", "MLflow runs, live metrics, the GPU beside them"),
    ("events", "Show Events", "The event journal: every start and stop, and why"),
)

EXIT_BAD_CONFIG = 2


def _freeze_startup_heap() -> None:
    """Leave what start-up built (Textual, the widgets, asyncssh: ~200k objects) out of garbage
    collection from now on. Telemetry allocates thousands of short-lived objects a second,
    and each full collection walked them all again: ~0.1 s a time, 1-2 % of a core with 100
    VMs (docs/performance.md). Objects frozen are still freed when unreferenced; only
    reference cycles among them would stay, and start-up's objects live as long as the app."""
    import gc

    gc.freeze()  # no gc.collect() first: a full collection here would stall the UI for ~0.1 s


def make_app(request: RuntimeRequest, *, theme_name: str | None = None) -> AiConsoleApp:
    """The app for a request from the command line; `theme_name` (--theme) beats the config's."""
    return AiConsoleApp(
        request.load,
        source=request.source,
        read_only=request.read_only,
        theme_name=theme_name,
        theme_hint=request.theme_hint,
        theme_dirs=request.theme_dirs,
    )


class MainScreen(Screen[None]):
    """The console's screen. It holds the tab keys, so they work here and not behind a
    dialog or help, and so they stay together in the footer ("1 2 3 4 Tabs") even when
    the config rebinds one (Textual moves a rebound key to the end of its node's bindings)."""

    TAB_KEYS = Binding.Group("Tabs")
    BINDINGS = [
        binding("tab-fleet", "show_tab('fleet')", label="Fleet", group=TAB_KEYS),
        binding("tab-gpus", "show_tab('gpus')", label="GPUs", group=TAB_KEYS),
        binding("tab-services", "show_tab('services')", label="Services", group=TAB_KEYS),
        binding("tab-models", "show_tab('models')", label="Models", group=TAB_KEYS),
        binding("tab-chat", "show_tab('chat')", label="Chat", group=TAB_KEYS),
        binding("tab-training", "show_tab('training')", label="Training", group=TAB_KEYS),
        binding("tab-events", "show_tab('events')", label="Events", group=TAB_KEYS),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_tab":  # not before the tabs exist
            return self.app.console_tabs is not None  # type: ignore[attr-defined]
        return True

    def action_show_tab(self, name: str) -> None:
        self.app.action_show_tab(name)  # type: ignore[attr-defined]


class AiConsoleApp(App[None]):
    TITLE = "aiconsole"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        binding("help", "help", label="Help"),
        binding("quit", "quit", label="Quit"),
        binding("idle-snooze", "snooze", show=False),
        binding("command-palette", "command_palette", show=False),
        # Textual adds its own ctrl+p only when no binding opens the palette: ours does (colon).
        Binding("ctrl+p", "command_palette", "palette", show=False, priority=True, tooltip="Open the command palette"),
    ]

    def __init__(
        self,
        load_runtime: Callable[[], Runtime],
        *,
        source: str = "",
        read_only: bool = False,
        theme_name: str | None = None,
        theme_hint: str | None = None,
        theme_dirs: Sequence[Path] = (),
        telemetry: bool = True,
    ) -> None:
        """`telemetry=False` leaves the GPU feeds and service checks off (the Fleet tab's
        own tests and snapshots, whose pictures must not depend on live samples)."""
        super().__init__()
        self._telemetry_on = telemetry
        self._load_runtime = load_runtime
        self.runtime: Runtime | None = None
        self.hub: TelemetryHub | None = None
        """The telemetry hub, once built (after the tabs show)."""
        self.training: TrainingWatch | None = None
        """The MLflow watch, once built (after the hub)."""
        self.money_guard: MoneyGuard | None = None
        """The idle and budget stops, once the activity sources run (not in read-only mode)."""
        self._snooze_candidate: tuple[str, object] | None = None
        """The VM of the last idle warning and when it came: what the snooze key snoozes."""
        self._training_ready = asyncio.Event()
        """Set once the watch is built or cannot be (the stop guard waits for it)."""
        self.read_only = read_only
        self._forced_theme = theme_name
        self._set_subtitle(source)
        self._warnings: list[str] = []
        self._install_themes(theme_name or theme_hint or DEFAULT_THEME, [*bundled_theme_dirs(), *theme_dirs])

    def _set_subtitle(self, source: str) -> None:
        parts = (source, "read-only" if self.read_only else "")
        self.sub_title = " · ".join(part for part in parts if part)

    def _install_themes(self, wanted: str, dirs: list[Path]) -> None:
        themes, problems = load_themes(dirs)
        for theme in themes:
            self.register_theme(theme)
        self._warnings += [str(problem) for problem in problems]
        self._use_theme(wanted)

    def _use_theme(self, wanted: str) -> None:
        if wanted not in self.available_themes:
            self._warnings.append(f"theme {wanted!r} not found; using {DEFAULT_THEME}")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        if self.theme != wanted:
            self.theme = wanted

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Static("Loading the fleet…", id="loading")
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._start)

    def _start(self) -> None:
        """Right after the first frame: validate settings, build the monitor, show the fleet."""
        from aiconsole.config_file import ConfigError

        try:
            runtime = self._load_runtime()
        except ConfigError as error:
            self.exit(return_code=EXIT_BAD_CONFIG, message=Text(f"aiconsole: {error}"))
            return
        self.runtime = runtime
        self.read_only = runtime.monitor.read_only
        self._set_subtitle(runtime.source)
        self.set_keymap(dict(runtime.settings.keys))  # ids were checked with the config
        if self._forced_theme is None:
            self._use_theme(runtime.settings.ui.theme)
        from aiconsole.ui.chat_pane import ChatPaneOptions
        from aiconsole.ui.console_tabs import ConsoleTabs
        from aiconsole.ui.fleet_pane import fleet_pane
        from aiconsole.ui.model_source import ModelsOptions
        from aiconsole.ui.training_pane import TrainingPaneOptions

        self.query_one("#loading").remove()
        fleet = fleet_pane(runtime.monitor, read_only=self.read_only, id="fleet")
        console = ConsoleTabs(
            fleet,
            telemetry=self._telemetry_on,
            models=ModelsOptions.of(runtime.settings),
            chat=ChatPaneOptions.of(runtime.settings),
            training=TrainingPaneOptions.of(runtime.settings),
            read_only=self.read_only,
            id="console",
        )
        self.mount(console, before=self.query_one(Footer))
        runtime.monitor.set_stop_guard(self._stop_check)  # before any stop key can be pressed
        self.refresh_bindings()  # the tab keys (MainScreen) work from now on
        for warning in self._warnings:
            self.notify(warning, severity="warning", timeout=10, markup=False)
        if not self._telemetry_on:
            self._training_ready.set()
        if self._telemetry_on:
            # After the panes have painted: importing asyncssh in a thread still competes for the GIL.
            self.call_after_refresh(
                self.run_worker, self._run_telemetry(runtime), group="telemetry", exclusive=True, exit_on_error=False
            )

    async def _run_telemetry(self, runtime: Runtime) -> None:
        """GPU feeds and service checks for the running VMs, until the app ends.

        Built in a thread: importing asyncssh takes ~0.3 s, which must not freeze the UI.
        A failure here shows on screen and leaves the rest of the console working.
        """
        try:
            hub = await asyncio.to_thread(runtime.build_telemetry)
        except Exception as error:  # shown, never fatal
            self._telemetry_failed(error)
            return
        self.hub = hub
        if (console := self.console_tabs) is not None:
            console.use_telemetry(hub)
        self.set_timer(5.0, _freeze_startup_heap)
        from aiconsole.services.activity_reports import ActivityReports

        monitor = runtime.monitor
        reports = ActivityReports(monitor, runtime.settings)
        library = await self._start_models(runtime, hub, reports)
        chat = self._start_chat(runtime, hub)
        training = self._start_training(runtime, hub, reports)
        self._start_money_guard(runtime)
        probe = self._start_probes(runtime, hub, reports)
        try:
            await hub.run(monitor.powers, on_gpu=reports.gpu)
        except Exception as error:  # shown, never fatal: the Fleet tab goes on without gauges
            self.hub = None
            self._telemetry_failed(error)
        finally:
            if probe is not None:
                await probe.aclose()
            if training is not None:
                await training.aclose()
            if chat is not None:
                await chat.aclose()
            if library is not None:
                await library.aclose()  # its pulls are cancelled, its clients closed, before the pool goes
            await hub.aclose()

    async def _start_models(self, runtime: Runtime, hub: TelemetryHub, reports) -> ModelLibrary | None:
        """The model library on the hub's endpoints and SSH pool, built in a thread (importing
        the ollama client takes a while); a failure is shown on the Models tab, never fatal."""
        from aiconsole.assembly import build_model_library

        monitor = runtime.monitor
        try:
            library = await asyncio.to_thread(
                build_model_library,
                runtime.settings,
                hub.endpoints,
                hub.pool,
                on_activity=reports.pull,
            )
        except Exception as error:  # shown, never fatal
            if (console := self.console_tabs) is not None:
                console.models_failed(error)
            return None
        if (console := self.console_tabs) is not None:
            console.use_models(library)
        return library

    def _start_chat(self, runtime: Runtime, hub: TelemetryHub) -> ChatService | None:
        """The chat service on the hub's endpoints, starting VMs through the monitor, and the
        chat history; a failure is shown on the Chat tab, never fatal."""
        from aiconsole.assembly import build_chat_service, open_chat_history

        console = self.console_tabs
        try:
            service = build_chat_service(runtime.settings, hub.endpoints, fleet=runtime.monitor)
        except Exception as error:  # shown, never fatal
            if console is not None:
                console.chat.failed(error)
            return None
        history = None
        try:
            history = open_chat_history(runtime)
        except Exception as error:  # the chat works without it: said once
            self.notify(f"Chat history is off: {error}", severity="warning", markup=False, timeout=10)
        if history is not None:
            runtime.cleanup.append(history.close)
        if console is not None:
            console.use_chat(service, history)
        return service

    def _start_training(self, runtime: Runtime, hub: TelemetryHub, reports) -> TrainingWatch | None:
        """The MLflow watch on the hub's endpoints, reading in the background (a RUNNING run is
        activity for its VM's idle timer); it also answers the stop guard. Never fatal."""
        from aiconsole.assembly import build_training

        console, monitor = self.console_tabs, runtime.monitor
        try:
            watch = build_training(runtime.settings, hub.endpoints, on_activity=reports.mlflow)
        except Exception as error:  # shown, never fatal
            if console is not None:
                console.training.failed(error)
            return None
        self.training = watch
        self._training_ready.set()
        if watch.servers:
            self.run_worker(watch.run(monitor.powers), group="training-watch", exclusive=True, exit_on_error=False)
        if console is not None:
            console.use_training(watch, hub.timeline)
        return watch

    def _start_money_guard(self, runtime: Runtime) -> None:
        """The idle and budget stops (services/money_guard.py), once the activity sources run.
        Read-only mode runs none: it changes nothing. Never fatal."""
        if self.read_only:
            return
        from aiconsole.assembly import build_money_guard

        try:
            guard = build_money_guard(runtime, notify=self._money_notice)
        except Exception as error:  # shown, never fatal
            self.notify(f"The money guard is off: {error}", severity="error", markup=False, timeout=15)
            return
        self.money_guard = guard
        if (fleet := self.fleet) is not None:
            fleet.use_money_guard(guard)
        step_s = runtime.settings.budget.enforce_step_s
        self.run_worker(guard.run(step_s), group="money-guard", exclusive=True, exit_on_error=False)

    def _start_probes(self, runtime: Runtime, hub: TelemetryHub, reports):
        """SSH sessions and Ollama keep-alives as activity, the dead-man's switch heartbeats (the
        pane shows each guard's state) and the orphan scan, over the hub's SSH pool. Never fatal."""
        from aiconsole.services.activity_probe import ActivityProbe
        from aiconsole.services.guard_heartbeat import build_guard_heartbeat

        monitor = runtime.monitor
        try:
            probe = ActivityProbe(runtime.settings, hub.pool, hub.endpoints, reports.probe, tz=monitor.tz)
            heartbeat = build_guard_heartbeat(runtime.settings, hub.pool)
            orphans = runtime.build_orphan_scan()
        except Exception as error:  # shown, never fatal
            self.notify(f"Activity probes are off: {error}", severity="error", markup=False, timeout=15)
            return None
        self.run_worker(probe.run(monitor.powers), group="activity-probe", exclusive=True, exit_on_error=False)
        self.run_worker(heartbeat.run(monitor.powers), group="guard-heartbeat", exclusive=True, exit_on_error=False)
        if self.money_guard is not None:
            self.run_worker(orphans.run(self.money_guard.orphans_found), group="orphans", exit_on_error=False)
        if (fleet := self.fleet) is not None:
            fleet.use_heartbeat(heartbeat)
        return probe

    def _money_notice(self, notice: MoneyNotice) -> None:
        """An idle stop coming, a budget level, a stop: a toast; an idle warning names the snooze key."""
        text = notice.text
        if notice.snoozable:
            self._snooze_candidate = (notice.vm, self.money_guard.monitor.now() if self.money_guard else None)
            key = self.get_key_display(Binding(self._keys_for("idle-snooze"), ""))
            text += f" — {key} snoozes it {self._snooze_minutes():g} minutes"
        timeout = 30 if notice.severity == "error" else 12
        self.notify(text, severity=notice.severity, markup=False, timeout=timeout)  # type: ignore[arg-type]

    def _keys_for(self, binding_id: str) -> str:
        keymap = self.runtime.settings.keys if self.runtime is not None else {}
        return (keymap.get(binding_id) or KEYS_BY_ID[binding_id].keys).split(",")[0]

    def _snooze_minutes(self) -> float:
        return self.money_guard.idle.snooze_minutes if self.money_guard is not None else 30.0

    def action_snooze(self, name: str | None = None) -> None:
        """Put an idle stop off: `name`, else the VM last warned about (within 10 minutes),
        else the VM selected on the Fleet tab."""
        guard = self.money_guard
        if self.read_only or guard is None:
            self.notify("Nothing to snooze: the money guard is not running here.", severity="warning")
            return
        now = guard.monitor.now()
        if name is None and self._snooze_candidate is not None:
            vm, when = self._snooze_candidate
            if when is not None and (now - when).total_seconds() <= 600:
                name = vm
        if name is None and (fleet := self.fleet) is not None and fleet.selected is not None:
            name = fleet.selected.name
        if name is None:
            self.notify("Nothing to snooze: no idle stop was announced; select a VM first.", severity="warning")
            return
        until = guard.snooze(name)
        local = until.astimezone(guard.tz).strftime("%H:%M")
        self.notify(f"{name}: idle stop put off until {local}.", markup=False)
        self._snooze_candidate = None

    async def _stop_check(self, vm: str) -> StopCheck:
        """The stop guard: what the MLflow watch finds on `vm`. A VM without an mlflow service
        is clear at once; one with, while the watch is not up yet, waits for it (bounded)."""
        from aiconsole.assembly import tracks_runs
        from aiconsole.domain.training import StopCheck

        settings = self.runtime.settings if self.runtime is not None else None
        if settings is None or not tracks_runs(settings, vm):
            return StopCheck(vm)
        timeout = settings.training.stop_check_timeout_s
        try:
            await asyncio.wait_for(self._training_ready.wait(), timeout)
        except TimeoutError:
            return StopCheck(vm, failed=f"the MLflow watch did not start within {timeout:g} s")
        if self.training is None:
            return StopCheck(vm, failed="the MLflow watch is off")
        return await self.training.stop_check(vm)

    def _telemetry_failed(self, error: Exception) -> None:
        self._training_ready.set()  # no watch will come: the stop guard says so at once
        self.notify(f"GPU telemetry is off: {error}", severity="error", markup=False, timeout=15)
        if (console := self.console_tabs) is not None:
            console.telemetry_failed(error)

    async def on_unmount(self) -> None:
        if self.runtime is not None:
            await self.runtime.monitor.close()

    def finish(self) -> None:
        """After `run()` returns: remove what the runtime made (e.g. the demo's temporary ledger)."""
        if self.runtime is not None:
            self.runtime.finish()

    @property
    def fleet(self) -> FleetPane | None:
        panes = self.query("#fleet")
        return panes.first() if panes else None

    @property
    def console_tabs(self) -> ConsoleTabs | None:
        """The tabs, once the runtime is loaded."""
        found = self.query("#console")
        return found.first() if found else None

    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def action_show_tab(self, name: str) -> None:
        if (console := self.console_tabs) is not None:
            console.show_tab(name)

    def action_help(self) -> None:
        from aiconsole.ui.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        footnote = "Keys can be rebound in the [keys] section of the config (see docs/keybindings.md)."
        self.push_screen(HelpScreen(self._key_rows(), footnote))

    def _key_rows(self) -> list[KeyRow]:
        """Our bindings active on this screen, every key of each (after rebinding)."""
        keys_by_id: dict[str, list[str]] = {}
        for key, active in self.screen.active_bindings.items():
            binding_id = active.binding.id
            if binding_id in KEYS_BY_ID and KEYS_BY_ID[binding_id].changes and self.read_only:
                continue  # refused in read-only mode: not offered
            if binding_id in KEYS_BY_ID and active.enabled:
                display = self.get_key_display(active.binding.with_key(key))
                keys_by_id.setdefault(binding_id, []).append(display)
        rows = [(" ".join(keys), KEYS_BY_ID[key_id].description) for key_id, keys in keys_by_id.items()]
        # ctrl+p is named in the palette's own row ("also ctrl+p"): a row of its own listed it twice.
        return rows + [("tab", "Move between panes and buttons")]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "List every key", self.action_help)
        fleet = self.fleet
        if fleet is None:
            return
        for name, title, help_text in TAB_PALETTE:
            yield SystemCommand(title, help_text, partial(self.action_show_tab, name))
        yield SystemCommand("Refresh fleet", "Ask every provider for fresh state", fleet.action_refresh)
        if (console := self.console_tabs) is not None:
            for title, help_text, callback, discover in console.models.commands():
                yield SystemCommand(title, help_text, callback, discover)
            for title, help_text, callback in console.chat.commands():
                yield SystemCommand(title, help_text, callback)
            for title, help_text, callback in console.training.commands():
                yield SystemCommand(title, help_text, callback)
            for title, help_text, callback in console.events.commands():
                yield SystemCommand(title, help_text, callback)
        if self.read_only:
            return
        for vm in fleet.snapshot.vms:
            if vm.can_power and self.money_guard is not None:
                yield SystemCommand(
                    f"Snooze idle stop of {vm.name}", f"+{self._snooze_minutes():g} minutes", partial(self.action_snooze, vm.name)
                )
            if vm.can_power:
                yield SystemCommand(f"Start VM {vm.name}", vm.provider, partial(fleet.action_start, vm.name))
                yield SystemCommand(f"Stop VM {vm.name}", "asks first", partial(fleet.action_stop, vm.name))
