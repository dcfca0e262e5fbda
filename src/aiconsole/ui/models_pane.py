"""The Models tab: every VM's Ollama models (and OpenAI-compatible servers' ids), and pulls.

The model library (`services/model_library.py`) is built after the telemetry hub, from
its endpoints and SSH pool; until then the tab says it is starting. The console's 1 s
tick draws the tab while it shows (keep-alive countdowns move with the clock) and, every
`refresh_s`, asks the servers again; a hidden tab asks nothing. While a pull runs and
the tab shows, the board is redrawn ten times a second; only the lines that changed
are repainted (`SelectableLines`).

Keys act on the selected row: `p` pull onto its VM (or retry a failed pull), `c` (or
esc on a pull's row) cancel a pull or dismiss a finished one, `d` delete (asks first),
`u` unload, `enter` details, `r` refresh. Those that change something are hidden and
refused in read-only mode, in the palette too. Workers run every server call, and no
failure ends the app: it is shown.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from textual.content import Content
from textual.timer import Timer
from textual.worker import Worker

from aiconsole.domain.models import PullState, PullStatus, model_name_problem, vram_needed
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import TelemetrySnapshot
from aiconsole.ui.bindings import binding
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.model_actions import Command, delete_question, details_estimate, palette_commands, pull_offer
from aiconsole.ui.model_source import ModelsOptions, ModelSource
from aiconsole.ui.telemetry_pane import TelemetryPane
from aiconsole.ui.widgets.bars import bar_track
from aiconsole.ui.widgets.model_lines import MUTED, Group, Layout, RowKey, fit_for, gpu_memory, server_groups
from aiconsole.ui.widgets.pull_lines import pull_lines
from aiconsole.ui.widgets.selectable_lines import Item, SelectableLines

if TYPE_CHECKING:
    from aiconsole.services.model_library import ModelsSnapshot, PullJob, ServerModels

STARTING = Content.styled("◐ starting the model library…", MUTED)
OFF = Content.styled("The model library is off (it starts with telemetry).", MUTED)
NO_SERVERS = Content.styled("No ollama or openai services in the config: add one under [[vm.service]].", MUTED)
PULL_FRAME_S = 0.1
"""How often a running pull is redrawn: ten frames a second, so even a pull that ends within
a second shows its progress move at least four times (only the changed lines repaint)."""
CHANGE_ACTIONS = ("pull", "cancel", "cancel_here", "delete", "unload")


def _change_bindings(*, show: bool) -> list:
    return [
        binding("model-pull", "pull", label="Pull", show=show),
        binding("model-cancel", "cancel", label="Cancel pull", show=False),
        binding("pull-escape", "cancel_here", show=False),
        binding("model-delete", "delete", label="Delete", show=show),
        binding("model-unload", "unload", label="Unload", show=show),
    ]


class ModelsPane(TelemetryPane):
    BINDINGS = [
        *_change_bindings(show=True),
        binding("model-details", "details", label="Details", show=False),
        binding("models-refresh", "refresh", label="Refresh"),
    ]

    def __init__(
        self,
        options: ModelsOptions | None = None,
        *,
        read_only: bool = False,
        status: Content = STARTING,
        clock: Callable[[], float] = time.monotonic,
        id: str | None = None,
    ) -> None:
        super().__init__(status, id=id)
        self.options = options or ModelsOptions()
        self.read_only = read_only
        self.library: ModelSource | None = None
        self.telemetry: TelemetrySnapshot | None = None
        self.snapshot: ModelsSnapshot | None = None
        """What the board last drew."""
        self.showing = False
        """True from a tick's draw until the console hides the tab."""
        self._clock = clock
        self._last_refresh: float | None = None
        self._refreshing: Worker | None = None
        self._pull_timer: Timer | None = None
        self._jobs: dict[tuple[str, str], PullJob] = {}
        self._blocks: dict[tuple[str, str], tuple[ServerModels, tuple, list[Group]]] = {}

    def make_body(self) -> SelectableLines:
        return SelectableLines(NO_SERVERS, id="model-board")

    @property
    def board(self) -> SelectableLines:
        return self.body  # type: ignore[return-value]

    # -- fed by the console ----------------------------------------------------------------

    def use_library(self, library: ModelSource) -> None:
        """The library is built: the next draw reads every server."""
        self.library = library
        self._last_refresh = None

    def draw(self, telemetry: TelemetrySnapshot | None) -> None:
        """The console's tick, while the tab shows: refresh when due, and repaint."""
        self.telemetry = telemetry
        self.showing = True
        if self.library is None:
            return
        self.go_live()
        due = self._last_refresh is None or self._clock() - self._last_refresh >= self.options.refresh_s
        if due:
            self.refresh_models()
        self.paint()

    def hide(self) -> None:
        """Another tab shows: no refreshes, no pull frames, until the next draw."""
        self.showing = False
        self._pull_frames(False)

    def refresh_models(self, vm: str | None = None) -> None:
        """Ask the servers again (not while a refresh of everything is still under way)."""
        if self.library is None or (self._refreshing is not None and self._refreshing.is_running):
            return
        self._last_refresh = self._clock()
        self._refreshing = self.run_worker(self._refresh(vm), group="models-refresh", exit_on_error=False)

    async def _refresh(self, vm: str | None) -> None:
        assert self.library is not None
        await self.library.refresh(vm)  # never raises: a failing server keeps its error
        self.repaint()

    def repaint(self) -> None:
        """After an answer: paint now if the tab shows (a hidden one waits for its next draw)."""
        if self.showing and self.library is not None and self.live:
            self.paint()

    def paint(self) -> None:
        assert self.library is not None
        snapshot = self.snapshot = self.library.snapshot()
        lines: list[Content] = []
        items: list[Item] = []
        for key, group in self._groups(snapshot):
            if key is not None:
                items.append(Item(key, len(lines), len(lines) + len(group)))
            lines += group
        self.board.show(lines, items)
        self._pull_frames(any(status.state is PullState.RUNNING for status in snapshot.pulls))

    def _groups(self, snapshot: ModelsSnapshot) -> list[Group]:
        layout = Layout.of(self.board.line_width or 79)
        track = bar_track(self.app.current_theme.dark)
        groups: list[Group] = []
        if snapshot.pulls:
            groups.append((None, [Content.styled("Pulls", f"bold {MUTED}")]))
        for vm, status in zip(snapshot.pull_vms, snapshot.pulls):
            groups.append(self._pull_group(snapshot, vm, status, layout.width, track))
        for server in snapshot.servers:
            groups += self._server_groups(server, snapshot.at, layout, track)
        return groups

    def _server_groups(self, server: ServerModels, now: datetime, layout: Layout, track: str) -> list[Group]:
        """A server's lines, built again only when what they show changed: its answer (a new
        object), the second (countdowns, ages), the GPU's memory, the width or the theme. Pull
        frames come ten times a second; a fleet's library need not be laid out each time."""
        memory = gpu_memory(self.telemetry, server.vm)
        key = (int(now.timestamp()), memory, layout, track)
        cached = self._blocks.get((server.vm, server.server.service))
        if cached is not None and cached[0] is server and cached[1] == key:
            return cached[2]
        groups = server_groups(server, now, memory, layout, track)
        self._blocks[(server.vm, server.server.service)] = (server, key, groups)
        return groups

    def _pull_group(self, snapshot: ModelsSnapshot, vm: str, status: PullStatus, width: int, track: str) -> Group:
        fit = None
        if status.state is PullState.RUNNING and status.total_bytes:
            server = snapshot.server(vm)
            need = vram_needed(status.total_bytes, self.options.context_length)
            fit = fit_for(need, gpu_memory(self.telemetry, vm), server.loaded if server else (), status.model)
        job = self._jobs.get((vm, status.model))
        lines = pull_lines(vm, status, width, track, fit=fit, retryable=job is not None and job.retryable)
        return RowKey("pull", vm, status.model), lines

    def _pull_frames(self, running: bool) -> None:
        if running and self.showing:
            if self._pull_timer is None:
                self._pull_timer = self.set_interval(PULL_FRAME_S, self.repaint, name="pull-frames")
        elif self._pull_timer is not None:
            self._pull_timer.stop()
            self._pull_timer = None

    # -- what is selected --------------------------------------------------------------------

    @property
    def selected(self) -> RowKey | None:
        key = self.board.selected
        return key if isinstance(key, RowKey) else None

    def _server(self, vm: str) -> ServerModels | None:
        return self.snapshot.server(vm) if self.snapshot is not None else None

    def _pull_status(self, vm: str, model: str) -> PullStatus | None:
        snapshot = self.library.snapshot() if self.library is not None else None
        if snapshot is None:
            return None
        found = (s for v, s in zip(snapshot.pull_vms, snapshot.pulls) if v == vm and s.model == model)
        return next(found, None)

    def _ready(self, action: str) -> bool:
        """May `action` run now? If not, say why."""
        if self.read_only and action in CHANGE_ACTIONS:
            self.notify(f"Read-only mode: {action.replace('_here', '')} is disabled.", severity="warning")
            return False
        if self.library is None or self.snapshot is None:
            self.notify("The model library is not running yet.", severity="warning")
            return False
        return True

    def _model_target(self, vm: str | None, model: str | None) -> tuple[str, str] | None:
        """The named model, else the selected one; None (said why) when no Ollama model is selected."""
        if vm is not None and model is not None:
            return vm, model
        key = self.selected
        if key is not None and key.kind == "model":
            return key.vm, key.name
        if key is not None and key.kind == "listed":
            name = sanitize_line(key.service, 60)
            self.notify(f"{name} on {key.vm} is OpenAI-compatible: its models are read-only here.", markup=False)
        else:
            self.notify("Select a model first (up/down).", severity="warning")
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_here":  # esc means "cancel" only on a pull's row
            key = self.selected
            return key is not None and key.kind == "pull"
        return True

    def on_selectable_lines_selected(self, event: SelectableLines.Selected) -> None:
        event.stop()
        self.refresh_bindings()

    def on_selectable_lines_resized(self, event: SelectableLines.Resized) -> None:
        event.stop()
        self.repaint()

    # -- actions ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        if self._ready("refresh"):
            self.notify("Reading every model server again…", timeout=2)
            self.refresh_models()

    def action_pull(self, vm: str | None = None) -> None:
        if not self._ready("pull"):
            return
        key = self.selected
        if vm is None and key is not None and key.kind == "pull":
            status = self._pull_status(key.vm, key.name)
            if status is not None and status.state in (PullState.FAILED, PullState.CANCELLED):
                self.start_pull(key.vm, key.name)  # p on a failed pull: pull it again (it resumes)
                return
        target = vm or self._pull_vm(key)
        if target is None:
            return
        from aiconsole.ui.pull_dialog import PullDialog

        offer = pull_offer(self.snapshot, target, self.telemetry, self.options)  # type: ignore[arg-type]
        self.app.push_screen(PullDialog(offer), lambda name: self.start_pull(target, name) if name else None)

    def _pull_vm(self, key: RowKey | None) -> str | None:
        """The selected row's VM if it has an Ollama server; the only one if there is one."""
        assert self.snapshot is not None
        if key is not None and self._server(key.vm) is not None:
            return key.vm
        ollama = [server.vm for server in self.snapshot.servers if server.server.kind == "ollama"]
        if key is None and len(ollama) == 1:
            return ollama[0]
        if key is not None:
            self.notify(f"{key.vm} has no Ollama server: only Ollama pulls models.", severity="warning", markup=False)
        else:
            self.notify("Select a VM's row first.", severity="warning")
        return None

    def start_pull(self, vm: str, name: str) -> None:
        """Start pulling `name` onto `vm`; a name Ollama would refuse is refused here, unsent."""
        from aiconsole.services.ollama_models import ModelError

        assert self.library is not None
        problem = model_name_problem(name)
        if problem:
            self.notify(f"Not pulled: {problem}", severity="error", markup=False)
            return
        try:
            job = self.library.pull(vm, name)
        except ModelError as error:
            self.notify(str(error), severity="error", markup=False)
            return
        self._jobs[(vm, job.model)] = job
        self.notify(f"Pulling {job.model} onto {vm}…", markup=False)
        self.repaint()

    def action_cancel(self, vm: str | None = None, model: str | None = None) -> None:
        if not self._ready("cancel"):
            return
        assert self.library is not None
        if vm is None or model is None:
            key = self.selected
            if key is None or key.kind != "pull":
                self.notify("Select a pull first (under Pulls, at the top).", severity="warning")
                return
            vm, model = key.vm, key.name
        if self.library.cancel_pull(vm, model):
            self.notify(f"Cancelled pulling {model} onto {vm}.", markup=False)
        else:  # finished: off the list
            self.library.forget_pull(vm, model)
            self._jobs.pop((vm, model), None)
        self.repaint()

    def action_cancel_here(self) -> None:
        self.action_cancel()

    def action_delete(self, vm: str | None = None, model: str | None = None) -> None:
        if not self._ready("delete") or (target := self._model_target(vm, model)) is None:
            return
        vm, model = target
        question = delete_question(self._server(vm), model)

        def delete_if_confirmed(yes: bool | None) -> None:
            if yes:
                self._run(self._delete(vm, model), f"delete-{vm}-{model}")

        self.app.push_screen(ConfirmScreen(*question, yes_label="Delete"), delete_if_confirmed)

    async def _delete(self, vm: str, model: str) -> None:
        from aiconsole.services.ollama_models import ModelNotFound

        assert self.library is not None
        try:
            await self.library.delete(vm, model)
        except ModelNotFound as error:
            self.notify(f"{vm} has no model {model} to delete (404): {error}", severity="warning", markup=False)
            await self.library.refresh(vm)
        else:
            self.notify(f"Deleted {model} from {vm}.", markup=False)

    def action_unload(self, vm: str | None = None, model: str | None = None) -> None:
        if not self._ready("unload") or (target := self._model_target(vm, model)) is None:
            return
        vm, model = target
        server = self._server(vm)
        if server is None or server.is_loaded(model) is None:
            self.notify(f"{model} is not loaded on {vm}.", markup=False)
            return
        self._run(self._unload(vm, model), f"unload-{vm}-{model}")

    async def _unload(self, vm: str, model: str) -> None:
        assert self.library is not None
        await self.library.unload(vm, model)
        self.notify(f"Unloaded {model} on {vm}: its memory is free, its files stay.", markup=False)

    def _run(self, work: Awaitable[None], name: str) -> None:
        self.run_worker(self._reported(work, name), group=name, exit_on_error=False)

    async def _reported(self, work: Awaitable[None], name: str) -> None:
        """Run an action's call; a failure is shown (the server's own words), never fatal."""
        try:
            await work
        except Exception as error:
            what = name.split("-", 1)[0]
            self.notify(f"{what} failed: {sanitize_line(str(error), 500)}", severity="error", markup=False, timeout=10)
        self.repaint()

    def action_details(self, vm: str | None = None, model: str | None = None) -> None:
        if not self._ready("details") or (target := self._model_target(vm, model)) is None:
            return
        vm, model = target
        from aiconsole.ui.model_details import ModelDetailsScreen

        library, context = self.library, self.options.context_length
        assert library is not None
        estimate = details_estimate(self._server(vm), model, gpu_memory(self.telemetry, vm), context)
        self.app.push_screen(ModelDetailsScreen(vm, model, lambda: library.details(vm, model), estimate, context))

    # -- the palette -------------------------------------------------------------------------

    def commands(self) -> Iterator[Command]:
        """(title, help, callback, discover) for the palette."""
        yield "Refresh models", "Read every model server again", self.action_refresh, True
        if self.snapshot is not None and self.library is not None:
            yield from palette_commands(self.snapshot, self, read_only=self.read_only)


class ReadOnlyModelsPane(ModelsPane):
    """--read-only: the keys that change something leave the footer, but still answer, saying why."""

    BINDINGS = _change_bindings(show=False)


def models_pane(
    options: ModelsOptions, *, read_only: bool, status: Content = STARTING, id: str | None = None
) -> ModelsPane:
    pane_class = ReadOnlyModelsPane if read_only else ModelsPane
    return pane_class(options, read_only=read_only, status=status, id=id)
