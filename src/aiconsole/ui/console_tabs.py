"""The console's tabs (Fleet, GPUs, Services, Models, Chat, Training, Events) and the one 1 s
tick that feeds them.

Each tick takes ONE telemetry snapshot (`TelemetryHub.snapshot()`), notifies the
threshold crossings since the last tick (each once, whichever tab shows), and draws
only the visible tab: the GPU table of 800 GPUs costs nothing while it is hidden. A
tab that becomes visible is drawn at once from a fresh tick (before it shows, when the
switch comes from a key or the palette), so what it drew long ago is never shown as
current; a hidden tab is also made invisible, so a click on the strip, which shows the
tab before the tick can draw it, shows it blank for that frame, not out of date. The
Fleet tab, when it shows, is drawn on every tick even without telemetry: costs and
idle timers move with the clock.

Until the hub exists (it is built in a thread after the first frame: asyncssh is slow
to import) the GPUs and Services tabs say "starting telemetry…"; if it failed, they say
why. The Models tab waits for the model library, built after the hub (`use_models`); it
is told when it hides, so that it stops refreshing and drawing pulls. The Chat tab
waits for the chat service (built after the model library) and paints its own replies;
the tick only redraws its bar (the VM's power). The Training tab waits for the MLflow watch
(built with the chat); the tick redraws its runs list, and it tails the shown run itself
while it shows (`shown`/`hidden`). The Events tab reads the ledger's event journal on the
tick while it shows, and only when the journal changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import TabbedContent, TabPane, Tabs

from aiconsole.assembly import local_timezone
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.ui.chat_pane import ChatPane
from aiconsole.ui.chat_state import ChatPaneOptions
from aiconsole.ui.events_pane import EventsPane
from aiconsole.ui.fleet_pane import FleetChanged, FleetPane
from aiconsole.ui.gpu_pane import GpuPane
from aiconsole.ui.model_source import ModelsOptions, ModelSource
from aiconsole.ui.models_pane import OFF as MODELS_OFF
from aiconsole.ui.models_pane import STARTING as MODELS_STARTING
from aiconsole.ui.models_pane import models_pane
from aiconsole.ui.services_pane import ServicesPane
from aiconsole.ui.telemetry_pane import OFF, STARTING, TelemetryPane, failed
from aiconsole.ui.training_pane import TrainingPane, TrainingPaneOptions

if TYPE_CHECKING:
    from textual.timer import Timer

    from aiconsole.domain.gpu_levels import LevelCrossing
    from aiconsole.domain.telemetry import TelemetrySnapshot

TABS: dict[str, str] = {
    "fleet": "Fleet", "gpus": "GPUs", "services": "Services", "models": "Models", "chat": "Chat", "training": "Training",
    "events": "Events",
}  # fmt: skip
"""Tab name (as the `show_tab` action and the palette name it) -> its title."""
_PANE_SUFFIX = "-tab"


class TelemetrySource(Protocol):
    """What the tick reads: the `TelemetryHub`, or a fixed stand-in (tests)."""

    def snapshot(self) -> TelemetrySnapshot: ...

    def take_crossings(self) -> list[tuple[str, LevelCrossing]]: ...


def crossing_message(host: str, crossing: LevelCrossing) -> tuple[str, str]:
    """(text, severity) of the notification for one threshold crossed."""
    what = "temperature" if crossing.metric == "temp" else "VRAM"
    value = f"{crossing.value:.0f} °C" if crossing.metric == "temp" else f"{crossing.value:.0f} %"
    severity = {"critical": "error", "warning": "warning"}.get(crossing.to_level.value, "information")
    name = sanitize_line(host, 200)
    text = f"{name} GPU{crossing.gpu_index} {what} {crossing.from_level.value} → {crossing.to_level.value} ({value})"
    return text, severity


MAX_CROSSING_NOTICES = 3
"""More crossings than this in one tick become one notice: a fleet of 100 VMs starting
with warm GPUs would otherwise stack hundreds of toasts (each one mounted, laid out and
timed out) that nobody can read."""
_SEVERITY_RANK = {"information": 0, "warning": 1, "error": 2}


def crossing_notices(crossings: list[tuple[str, LevelCrossing]]) -> list[tuple[str, str]]:
    """(text, severity) per crossing, or one summary when there are too many to read."""
    messages = [crossing_message(host, crossing) for host, crossing in crossings]
    if len(messages) <= MAX_CROSSING_NOTICES:
        return messages
    worst = max((severity for _, severity in messages), key=_SEVERITY_RANK.__getitem__)
    shown = [text for text, severity in messages if severity == worst][:2]
    more = len(messages) - len(shown)
    text = f"{len(messages)} GPU thresholds crossed: " + "; ".join(shown) + f"; and {more} more (GPUs tab)"
    return [(text, worst)]


class ConsoleTabs(Vertical):
    """Fleet, GPUs, Services and Models; `show_tab(name)` switches, `use_telemetry(hub)` and
    `use_models(library)` feed them."""

    DEFAULT_CSS = """
    ConsoleTabs { height: 1fr; }
    ConsoleTabs > TabbedContent { height: 1fr; }
    ConsoleTabs > TabbedContent > ContentSwitcher { height: 1fr; }
    ConsoleTabs > TabbedContent > ContentSwitcher > TabPane { height: 1fr; padding: 0; }
    /* One line for the strip, not two: at 80x24 every line counts. The active tab is
       told by its colour and weight instead of an underline bar. */
    ConsoleTabs ContentTabs { height: 1; background: $panel; }
    ConsoleTabs ContentTabs Underline { display: none; }
    ConsoleTabs ContentTabs Tab.-active { color: $text-accent; text-style: bold underline; }
    ConsoleTabs ContentTabs:focus Tab.-active { color: $block-cursor-foreground; background: $block-cursor-background; }
    """

    def __init__(
        self,
        fleet: FleetPane,
        *,
        telemetry: bool = True,
        models: ModelsOptions | None = None,
        chat: ChatPaneOptions | None = None,
        training: TrainingPaneOptions | None = None,
        read_only: bool = False,
        id: str | None = None,
    ) -> None:
        """`telemetry=False`: no hub will come (the GPUs and Services tabs say it is off, and
        so does the Models tab: its library is built on the hub's endpoints)."""
        super().__init__(id=id)
        self.fleet = fleet
        self.gpus = GpuPane(STARTING if telemetry else OFF, id="gpus")
        self.services = ServicesPane(STARTING if telemetry else OFF, id="services")
        models_status = MODELS_STARTING if telemetry else MODELS_OFF
        self.models = models_pane(models or ModelsOptions(), read_only=read_only, status=models_status, id="models")
        self.chat = ChatPane(chat, read_only=read_only, id="chat")
        self.training = TrainingPane(training, id="training")
        monitor = fleet.monitor
        self.events = EventsPane(monitor, local_timezone(monitor.settings.budget.timezone), id="events")
        if not telemetry:
            self.chat.failed("it starts with telemetry, which is off")
            self.training.failed("it starts with telemetry, which is off")
        self.source: TelemetrySource | None = None
        self.latest: TelemetrySnapshot | None = None
        """The snapshot of the last tick (None before the hub exists)."""
        self.ticks = 0
        self._drawn = ""  # the tab the last tick drew
        self._focused: dict[str, Widget] = {}  # per tab, the widget last focused in it
        self._clock: Timer | None = None

    def compose(self) -> ComposeResult:
        panes = self._panes()
        with TabbedContent(initial="fleet" + _PANE_SUFFIX):
            for name, title in TABS.items():
                with TabPane(Content(title), id=name + _PANE_SUFFIX):
                    yield panes[name]

    def on_mount(self) -> None:
        self._start_clock()

    def _start_clock(self) -> None:
        # A new timer, not Timer.reset(): a reset only takes effect when the pending sleep
        # ends, which would put up to 2 s between a tick out of turn and the next one.
        if self._clock is not None:
            self._clock.stop()
        self._clock = self.set_interval(1.0, self.tick, name="console-tick")

    # -- which tab ------------------------------------------------------------------------

    @property
    def active(self) -> str:
        """The visible tab's name ("fleet", "gpus", "services", "models")."""
        return self.query_one(TabbedContent).active.removesuffix(_PANE_SUFFIX)

    def _panes(self) -> dict[str, Widget]:
        return {
            "fleet": self.fleet, "gpus": self.gpus, "services": self.services, "models": self.models, "chat": self.chat,
            "training": self.training, "events": self.events,
        }  # fmt: skip

    def pane(self, name: str) -> Widget:
        return self._panes()[name]

    def _tab_pane(self, name: str) -> TabPane:
        return self.query_one(f"#{name}{_PANE_SUFFIX}", TabPane)

    def show_tab(self, name: str) -> None:
        """Draw `name` from a fresh tick, then show it, focused where the operator left it."""
        if name == self.active:
            self._focus(name)
            return
        self._tick_now(name)
        # Textual hands the focus of a widget that hides to a sibling, hidden too: that
        # sibling's tab would come back. So nothing is focused while the tabs switch.
        self.screen.set_focus(None)
        self.query_one(TabbedContent).active = name + _PANE_SUFFIX

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        name = self.active
        for other in TABS:
            if other != name:
                self._tab_pane(other).visible = False  # what it drew goes out of date from now on
        if name != "models":
            self.models.hide()
        if name == "training":
            self.training.shown()
        else:
            self.training.hidden()
        if self._drawn != name:  # shown by a click or the tab strip's own keys: draw now
            self._tick_now()
        if not isinstance(self.screen.focused, Tabs):  # not while the operator moves along the strip
            self._focus(name)

    def _focus(self, name: str) -> None:
        remembered = self._focused.get(name)
        target: Widget | None
        if remembered is not None and remembered.is_attached and remembered.display:
            target = remembered
        elif name == "fleet":
            target = self.fleet.default_focus
        elif name == "chat":
            target = self.chat.focus_target
        elif name == "training":
            target = self.training.focus_target
        elif name == "events":
            target = self.events.focus_target
        else:
            pane = self.pane(name)
            assert isinstance(pane, TelemetryPane)
            target = pane.focus_target
        if target is not None:
            target.focus(scroll_visible=False)
        else:
            self.screen.set_focus(None)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        for name in TABS:
            if self.pane(name) in event.widget.ancestors_with_self:
                self._focused[name] = event.widget
                return

    # -- the tick ---------------------------------------------------------------------------

    def use_telemetry(self, source: TelemetrySource) -> None:
        """The hub is running: tick now, so the GPUs and Services tabs stop saying "starting"."""
        self.source = source
        self._tick_now()

    def telemetry_failed(self, error: object) -> None:
        """The hub could not start (or stopped): the telemetry tabs say so; the Fleet tab goes on."""
        self.source = self.latest = None
        for pane in (self.gpus, self.services):
            pane.say(failed(error))
        self.models_failed(error)
        self.chat.failed(error)
        self.training.failed(error)
        self.fleet.draw(None)

    def use_models(self, library: ModelSource) -> None:
        """The model library is built: the Models tab reads it (at once, if it shows)."""
        self.models.use_library(library)
        if self.active == "models":
            self._tick_now()

    def use_chat(self, service, history=None) -> None:
        """The chat service is built: the Chat tab can send (model names come from the library)."""

        def models_for(target) -> list[str]:
            library = self.models.library
            servers = library.snapshot().servers if library is not None else ()
            for server in servers:
                if (server.vm, server.server.service) == (target.vm, target.service):
                    return [m.name for m in server.installed] + list(server.listed)
            return []

        self.chat.use_service(service, history, models_for)
        if self.active == "chat" and self.screen.focused is None:  # the prompt came: it takes the keys
            self.call_after_refresh(self._focus, "chat")

    def use_training(self, watch, timeline=None) -> None:
        """The MLflow watch runs: the Training tab reads it (at once, if it shows)."""
        self.training.use_watch(watch, timeline)

    def models_failed(self, error: object) -> None:
        """No model library (it could not be built, or telemetry stopped): the Models tab says why."""
        self.models.library = None
        self.models.hide()
        self.models.say(failed(error, "the model library"))

    def tick(self, visible: str | None = None) -> None:
        """One snapshot, its crossings notified, and the `visible` tab (default: the active one) drawn."""
        self.ticks += 1
        source = self.source
        self.latest = source.snapshot() if source is not None else None
        if source is not None:
            for text, severity in crossing_notices(source.take_crossings()):
                self.notify(text, severity=severity, markup=False)  # type: ignore[arg-type]
        self._drawn = visible or self.active
        self._draw(self._drawn)

    def _tick_now(self, visible: str | None = None) -> None:
        """A tick out of turn; the next one comes a second after it, not sooner."""
        self.tick(visible)
        if self._clock is not None:
            self._start_clock()

    def _draw(self, name: str) -> None:
        if not name:  # TabbedContent has not chosen its first tab yet (the hub can come first): the next tick draws
            return
        tab_pane = self._tab_pane(name)
        if not tab_pane.visible:
            tab_pane.visible = True
        if name == "fleet":
            self.fleet.draw(self.latest)
            return
        if name == "chat":  # the transcript paints itself; the bar shows the VM's power
            self.chat.draw_bar()
            return
        if name == "training":  # the runs list and the shown run's header; its chart polls itself
            self.training.draw()
            return
        if name == "events":  # the journal, read again only when it changed
            self.events.draw()
            return
        pane = self.pane(name)
        assert isinstance(pane, TelemetryPane)
        waiting = not pane.live
        pane.draw(self.latest)
        if waiting and pane.live and self.screen.focused is None and name == self.active:
            self._focus(name)  # the status line gave way to the view: it takes the keys now

    def on_fleet_changed(self, event: FleetChanged) -> None:
        """The monitor saw something new: repaint the Fleet tab now, if it shows."""
        event.stop()
        if self.active == "fleet":
            self.fleet.redraw()
