"""Helpers shared by the UI tests (imported by name; tests/conftest.py is the lead's).

Every app here runs on the real runtime: the demo fleet's loopback fakes of the
provider APIs (or a config of our own pointing at such fakes), the real providers,
the real fleet monitor and a real SQLite ledger in the test's own folder. Only time
is pinned: the monitor reads a clock that stands still unless a test moves it.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console
from textual.app import App
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets._footer import FooterKey

from aiconsole.assembly import Runtime, build_monitor
from aiconsole.config import settings_from_toml_text
from aiconsole.demo.fleet import DemoFleet
from aiconsole.domain.fleet import FleetSnapshot, VmSnapshot
from aiconsole.domain.telemetry import FeedState
from aiconsole.runtime import DEMO_SOURCE, demo_runtime
from aiconsole.services.ledger import Ledger
from aiconsole.ui.app import AiConsoleApp
from aiconsole.ui.fleet_pane import FleetPane

FIXED_NOW = datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)
"""A Sunday afternoon: the demo ledger's history is seeded relative to it."""

# Hostile text as an API could send it: an OSC that retitles the terminal (BEL-ended),
# a CSI colour, and Rich/Textual markup that must stay literal text on screen.
HOSTILE_NAME = "\x1b]0;pwned\x07\x1b[31m[bold red]evil[/]"
HOSTILE_NAME_SHOWN = "[bold red]evil[/]"


class StoppedClock:
    """The monitor's clock: it stands still, so snapshots are the same on every run."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The process environment with the data folder moved into the test's own folder."""
    return {**os.environ, "AICONSOLE_DATA_DIR": str(tmp_path / "data")}


def fast_fleet(start_seconds: float = 0.3, stop_seconds: float = 0.3) -> DemoFleet:
    return DemoFleet(start_seconds=start_seconds, stop_seconds=stop_seconds)


def demo_app(
    tmp_path: Path,
    *,
    fleet: DemoFleet | None = None,
    clock: Callable[[], datetime] | None = None,
    read_only: bool = False,
    theme_name: str | None = None,
    theme_dirs: Sequence[Path] = (),
    on_load: Callable[[AiConsoleApp], None] | None = None,
) -> AiConsoleApp:
    """The console on the demo fleet, with fast VMs, fast transition polls and a stopped clock.

    `on_load(app)` runs inside `load_runtime`, i.e. while the first frame is on screen.
    """
    fleet = fleet or fast_fleet()
    environ = demo_env(tmp_path)
    app: AiConsoleApp

    def load() -> Runtime:
        if on_load is not None:
            on_load(app)
        return demo_runtime(
            environ,
            read_only=read_only,
            clock=clock or StoppedClock(),
            fleet=fleet,
            transition_poll_seconds=0.1,
        )

    app = AiConsoleApp(
        load,
        source=DEMO_SOURCE,
        read_only=read_only,
        theme_name=theme_name,
        theme_dirs=theme_dirs,
        telemetry=False,  # these tests are about the Fleet tab; telemetry has its own tests
    )
    return app


def telemetry_app(
    tmp_path: Path,
    *,
    fleet: DemoFleet | None = None,
    build: Callable[[Callable[[], object]], object] | None = None,
) -> AiConsoleApp:
    """The console on the demo fleet WITH telemetry; `build(original_builder)` builds the hub instead."""
    fleet = fleet or fast_fleet()

    def load() -> Runtime:
        runtime = demo_runtime(demo_env(tmp_path), clock=StoppedClock(), fleet=fleet, transition_poll_seconds=0.1)
        if build is not None:
            original = runtime.build_telemetry
            runtime.build_telemetry = lambda: build(original)  # type: ignore[method-assign]
        return runtime

    return AiConsoleApp(load, source=DEMO_SOURCE)


async def telemetry_live(pilot: Pilot, *, services: bool = False, timeout: float = 20.0) -> None:
    """Wait for the demo's GPU feeds (inference and homelab live, brain without GPU); with
    `services`, check the services once now (the hub's own round comes every 10 s)."""
    app = pilot.app

    def live() -> bool:
        if app.hub is None:
            return False
        snapshot = app.hub.snapshot()
        states = {host.host: host.state for host in snapshot.hosts}
        return states == {
            "inference": FeedState.LIVE,
            "training": FeedState.OFF,
            "homelab": FeedState.LIVE,
            "brain": FeedState.NO_GPU,
        }

    await wait_until(pilot, live, timeout=timeout, what="live GPU telemetry from the demo fleet")
    if services:
        await app.hub.check_services()


def config_runtime(
    config_text: str,
    environ: Mapping[str, str],
    tmp_path: Path,
    *,
    clock: Callable[[], datetime],
    resources: tuple = (),
) -> Runtime:
    """A runtime for a config of our own (e.g. VMs on fakes of our own), built as the CLI does."""
    settings = settings_from_toml_text(config_text, "test-fleet.toml")
    ledger = Ledger.open(tmp_path / "ledger.sqlite3")
    monitor = build_monitor(
        settings, ledger, environ, resources=resources, clock=clock, transition_poll_seconds=0.1
    )
    return Runtime(settings, monitor, source="test-fleet.toml")


# -- waiting -------------------------------------------------------------------------


async def wait_until(
    pilot: Pilot,
    condition: Callable[[], bool],
    *,
    timeout: float = 10.0,
    what: str = "condition",
    explain: Callable[[], str] | None = None,
) -> None:
    """Let the app run until `condition()` holds; fail (saying what, and `explain()`'s account
    of the state it found) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            found = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{found}")
        await pilot.pause(0.02)


def pane(app: App) -> FleetPane:
    return app.query_one(FleetPane)


def vm_now(app: AiConsoleApp, name: str) -> VmSnapshot:
    """What the monitor knows about `name` right now (not what the pane last drew)."""
    snapshot: FleetSnapshot = app.runtime.monitor.snapshot()
    return next(vm for vm in snapshot.vms if vm.name == name)


def answered(vm: VmSnapshot) -> bool:
    """The provider has answered (or failed) at least once."""
    return vm.checked_at is not None or bool(vm.error)


async def fleet_ready(pilot: Pilot, *, waiting_for: Sequence[str] | None = None, timeout: float = 10.0) -> FleetPane:
    """Wait for the runtime and the Fleet pane, and for the monitor's first poll of the VMs
    named in `waiting_for` (default: every VM)."""
    app = pilot.app
    await wait_until(pilot, lambda: bool(app.query(FleetPane)), timeout=timeout, what="the Fleet pane")

    def all_answered() -> bool:
        vms = app.runtime.monitor.snapshot().vms
        return all(answered(vm) for vm in vms if waiting_for is None or vm.name in waiting_for)

    await wait_until(pilot, all_answered, timeout=timeout, what="the VMs' first answers")
    return pane(app)


async def settle(pilot: Pilot, *, refresh: Sequence[str] | None = None) -> None:
    """Before a snapshot: the VMs observed and polled once more (those named in `refresh`,
    default all), the pane redrawn from that, no toasts left."""
    fleet = await fleet_ready(pilot, waiting_for=refresh)
    monitor = pilot.app.runtime.monitor
    for name in refresh or [None]:
        await monitor.refresh(name)
    fleet.redraw()
    await pilot.pause()
    pilot.app.clear_notifications()
    await pilot.pause()


# -- reading the screen ---------------------------------------------------------------


def screen_text(app: App) -> str:
    """The whole screen as plain text, as the terminal would show it (modals included)."""
    console = Console(
        width=app.size.width, height=app.size.height, file=io.StringIO(), record=True, legacy_windows=False
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)


async def screen_shows(pilot: Pilot, *texts: str, timeout: float = 5.0) -> str:
    """Wait until every one of `texts` is on screen (painting lags keys and answers); the screen."""
    await wait_until(
        pilot, lambda: all(text in screen_text(pilot.app) for text in texts), timeout=timeout, what=repr(texts)
    )
    return screen_text(pilot.app)


async def help_shows(pilot: Pilot, rows: Sequence[tuple[str, str]]) -> None:
    """Open help (`?`) and check it lists each (key, description) as a row of its table."""
    from aiconsole.ui.help import HelpScreen

    await pilot.press("question_mark")
    assert isinstance(pilot.app.screen, HelpScreen)
    lines = (await screen_shows(pilot, rows[-1][1])).splitlines()
    for key, description in rows:
        # A row of the help table: the key, then (after padding) what it does.
        assert any(f"│ {key} " in line and f" {description}" in line for line in lines), (key, lines)


def widget_lines(widget: Widget) -> list[str]:
    """The text of each line the widget renders, borders and border titles included."""
    width, height = widget.outer_size
    return [strip.text for strip in widget.render_lines(Region(0, 0, width, height))]


def footer_labels(app: App) -> list[str]:
    return [str(key.description) for key in app.screen.query(FooterKey)]


def notifications(app: App) -> list[tuple[str, str]]:
    """(severity, message) of every notification still held by the app."""
    return [(note.severity, note.message) for note in app._notifications]


def has_control_chars(text: str) -> bool:
    return any(ord(ch) < 0x20 and ch not in "\n\t" or 0x7F <= ord(ch) <= 0x9F for ch in text)

