"""The Events tab on its own: `EventsApp` hosts an `EventsPane` (and a footer) over a real
ledger in the test's folder, ticked by the test (`tick()`) as the console's 1 s tick would.
Times are fixed and the zone is UTC, so what it shows is the same on every run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from textual.app import App, ComposeResult
from textual.widgets import Footer

from aiconsole.domain.events import Actor, Event, EventKind
from aiconsole.services.ledger import Ledger
from aiconsole.ui.events_pane import EventsPane
from aiconsole.ui.themes import DEFAULT_THEME, bundled_theme_dirs, load_themes

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
VMS = ("inference", "training", "desk")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def realistic_events() -> list[Event]:
    """A day of the fleet, oldest first (the ledger hands them back newest first)."""
    return [
        Event(at(-15 * 60), EventKind.STOP, "desk", "stopped from the console", Actor.CONSOLE, 0.0, 0.0),
        Event(at(0), EventKind.START, "training", "started from the console", Actor.CONSOLE, 0.35, 0.0),
        Event(at(5), EventKind.START, "inference", "start asked", Actor.OPERATOR, 0.42, 0.0),
        Event(at(190), EventKind.STOP_REFUSED, "training",
              "MLflow run lora-r16 is RUNNING on training (step 1840, last metric 12s ago)",
              Actor.CONSOLE, 0.35, 1.11),
        Event(at(191), EventKind.FORCED_STOP, "training",
              "stopped anyway from the console; ended MLflow run lora-r16 (RUNNING, step 1843)",
              Actor.CONSOLE, 0.35, 1.12),
        Event(at(260), EventKind.AUTO_STOP, "inference", "idle for 30m 00s (limit 30m): stopping inference",
              Actor.WATCH, 0.42, 1.82),
        Event(at(300), EventKind.BUDGET, "", "daily budget 80 % reached ($4.02 of $5.00)", Actor.WATCH, 0.0, 4.02),
        Event(at(301), EventKind.STOP, "inference", "stopped from the console", Actor.CONSOLE, 0.42, 1.82),
    ]  # fmt: skip


class EventsApp(App[None]):
    """The Events pane over `ledger`, in our default theme, with the footer of its keys."""

    def __init__(self, ledger: Ledger, vms: tuple[str, ...] = VMS) -> None:
        super().__init__()
        themes, problems = load_themes(bundled_theme_dirs())
        assert not problems
        for theme in themes:
            self.register_theme(theme)
        self.theme = DEFAULT_THEME
        self.ledger = ledger
        self.monitor = SimpleNamespace(ledger=ledger, names={name: None for name in vms})
        self.pane = EventsPane(self.monitor, UTC, id="events")

    def compose(self) -> ComposeResult:
        yield self.pane
        yield Footer()

    def on_mount(self) -> None:
        self.pane.draw()
        self.pane.focus_target.focus()

    def tick(self) -> None:
        self.pane.draw()


def filled_ledger(path: Path, events: list[Event] | None = None) -> Ledger:
    ledger = Ledger.open(path / "ledger.sqlite3")
    for event in realistic_events() if events is None else events:
        ledger.record_event(event)
    return ledger
