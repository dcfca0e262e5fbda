"""The console's tabs: Fleet, GPUs and Services, switched by key and palette, fed by one tick.

Telemetry runs for real where it matters: the demo fleet's SSH servers (simulated RTX
4090s) and service fakes on loopback. The whole-app pictures of the GPUs and Services
tabs are in test_ui_tab_snapshots.py.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot

from aiconsole.domain.gpu_levels import GpuMetric, Level, LevelCrossing
from aiconsole.runtime import RuntimeRequest
from aiconsole.ui.app import AiConsoleApp, make_app
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.console_tabs import ConsoleTabs, crossing_notices
from aiconsole.ui.widgets.gpu_table import GpuTable
from ui_helpers import (
    demo_app,
    fleet_ready,
    footer_labels,
    help_shows,
    screen_shows,
    screen_text,
    telemetry_app,
    telemetry_live,
    wait_until,
)

SIZE = (80, 24)


def tabs(app: AiConsoleApp) -> ConsoleTabs:
    console = app.console_tabs
    assert console is not None
    return console


def footer_line(app: AiConsoleApp) -> str:
    return screen_text(app).splitlines()[-1]


# -- switching ------------------------------------------------------------------------------


async def test_number_keys_switch_tabs_and_each_tab_keeps_its_own_keys(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        console = tabs(app)
        assert console.active == "fleet"
        assert "1 2 3 4 5 6 7 Tabs" in footer_line(app) and "Start" in footer_labels(app)
        await pilot.press("j")  # training selected
        assert app.screen.focused is app.query_one("#vm-training")

        await pilot.press("2")
        assert console.active == "gpus"
        text = await screen_shows(pilot, "Telemetry is off.")  # telemetry=False in demo_app
        assert "inference" not in text  # the Fleet tab is hidden
        assert "Start" not in footer_labels(app) and "1 2 3 4 5 6 7 Tabs" in footer_line(app)
        await pilot.press("x")  # the Fleet tab's stop key does nothing here
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)

        await pilot.press("3")
        assert console.active == "services"
        await pilot.press("1")
        assert console.active == "fleet"
        assert app.screen.focused is app.query_one("#vm-training"), "the selection is where it was"
        await screen_shows(pilot, "inference", "training")
        await pilot.press("2", "2")  # the same tab again: nothing changes
        assert console.active == "gpus"

        ticks = console.ticks
        await pilot.click("#--content-tab-services-tab")  # the mouse works too, and draws at once
        await wait_until(pilot, lambda: console.active == "services", what="the Services tab")
        assert console.ticks > ticks
        await pilot.press("1")
        assert app.screen.focused is app.query_one("#vm-training")


async def test_the_palette_shows_each_tab(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        for key, query, shown, name in (
            ("ctrl+p", "GPUs", "Every GPU of the fleet", "gpus"),
            ("colon", "Services", "Each service's health", "services"),
            ("ctrl+p", "Show F", "VMs: power, cost, idle time", "fleet"),
        ):
            await pilot.press(key)
            await wait_until(pilot, lambda: CommandPalette.is_open(app), what="the palette")
            await pilot.press(*query)
            await screen_shows(pilot, shown)  # the palette searches in the background
            await pilot.press("enter")
            await wait_until(pilot, lambda name=name: tabs(app).active == name, what=f"the {name} tab")


async def test_help_lists_the_tab_keys(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await help_shows(pilot, [
            ("1", "Show the Fleet tab: VMs, cost, idle time"),
            ("2", "Show the GPUs tab: every GPU of the fleet"),
            ("3", "Show the Services tab: each service's health"),
        ])  # fmt: skip
        await pilot.press("2")  # behind help the tabs stay put
        assert tabs(app).active == "fleet"


async def test_a_tab_key_rebound_in_the_config_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICONSOLE_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "config.toml"
    config.write_text('[[vm]]\nname = "desk"\nprovider = "static"\n\n[keys]\ntab-gpus = "g"\ntab-services = "ctrl+t"\n')
    app = make_app(RuntimeRequest.for_user(config, os.environ))
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        footer = (await screen_shows(pilot, "Tabs")).splitlines()[-1]
        assert "1 4 5 6 7 g ^t Tabs" in footer

        await pilot.press("2")
        assert tabs(app).active == "fleet", "2 is no longer bound"
        await pilot.press("g")
        assert tabs(app).active == "gpus"
        await pilot.press("ctrl+t")
        assert tabs(app).active == "services"
        await help_shows(pilot, [("g", "Show the GPUs tab"), ("^t", "Show the Services tab")])


# -- what the telemetry tabs show --------------------------------------------------------------


async def test_telemetry_tabs_say_starting_then_show_the_demo_fleets_live_telemetry(tmp_path: Path) -> None:
    gate = threading.Event()

    def held_back(build):  # the hub is built in a thread: hold it until the test has looked
        assert gate.wait(30)
        return build()

    app = telemetry_app(tmp_path, build=held_back)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await pilot.press("2")
        text = await screen_shows(pilot, "◐ starting telemetry…")
        assert "host" not in text and "No GPU telemetry yet" not in text, "no empty table before the hub"
        await pilot.press("3")
        text = await screen_shows(pilot, "◐ starting telemetry…")
        assert "No services configured" not in text
        assert app.screen.focused is None

        gate.set()
        await telemetry_live(pilot, services=True)
        gpu_lines = (await screen_shows(pilot, "ollama", "v0.12.6")).splitlines()
        assert any("● ollama" in line and " up " in line and "v0.12.6" in line for line in gpu_lines)
        assert any("● open-webui" in line and " up " in line for line in gpu_lines)
        assert any("◐ localai" in line and "starting" in line for line in gpu_lines)
        assert any("loading model" in line for line in gpu_lines)  # the 503's reason, below its line
        assert any("? mlflow" in line and "not checked yet" in line for line in gpu_lines), "training is stopped"
        assert any(line.startswith(" brain  ● 1 up") for line in gpu_lines)

        await pilot.press("2")
        lines = (await screen_shows(pilot, "host", "4090")).splitlines()
        row = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in FLEET_NAMES}
        assert "0 4090" in row["inference"] and "°C" in row["inference"] and "/450W" in row["inference"]
        assert "0 4090" in row["homelab"]
        assert "off: not connected" in row["training"]
        assert "no GPU" in row["brain"] and "no GPU: no GPU" not in row["brain"]
        assert app.screen.focused is app.query_one(GpuTable), "the table takes the keys once it shows"


FLEET_NAMES = ("inference", "training", "homelab", "brain")


async def test_telemetry_that_fails_to_start_says_so_on_its_tabs(tmp_path: Path) -> None:
    def broken(_build):
        raise RuntimeError("asyncssh is missing \x1b[31m[b]here[/b]")

    app = telemetry_app(tmp_path, build=broken)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await pilot.press("2")
        text = await screen_shows(pilot, "✖ telemetry is off: asyncssh is missing [b]here[/b]")
        assert "\x1b" not in text
        await pilot.press("3")
        await screen_shows(pilot, "✖ telemetry is off: asyncssh is missing")
        await pilot.press("1")
        await screen_shows(pilot, "inference", "● running")  # the Fleet tab goes on


# -- one tick, only the visible tab drawn -------------------------------------------------------


class Counter:
    """Wraps a bound method and counts its calls."""

    def __init__(self, method) -> None:
        self.method = method
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.method(*args, **kwargs)


async def next_ticks(pilot: Pilot, console: ConsoleTabs, count: int = 1) -> None:
    """Let `count` ticks of the 1 s clock pass."""
    until = console.ticks + count
    await wait_until(pilot, lambda: console.ticks >= until, timeout=5, what=f"{count} tick(s)")


async def test_only_the_visible_tab_is_drawn_and_a_shown_tab_is_current_at_once(tmp_path: Path) -> None:
    app = telemetry_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await telemetry_live(pilot)
        console = tabs(app)
        table, board = console.gpus.table, console.services.board
        table.update_snapshot = table_calls = Counter(table.update_snapshot)  # type: ignore[method-assign]
        board.update_snapshot = board_calls = Counter(board.update_snapshot)  # type: ignore[method-assign]
        console.fleet.draw = fleet_calls = Counter(console.fleet.draw)  # type: ignore[method-assign]
        app.hub.snapshot = snapshots = Counter(app.hub.snapshot)  # type: ignore[method-assign]
        ticks = console.ticks

        await next_ticks(pilot, console, 2)  # on the Fleet tab
        assert fleet_calls.calls >= 2 and (table_calls.calls, board_calls.calls) == (0, 0)
        assert snapshots.calls == console.ticks - ticks, "one telemetry snapshot per tick"

        await pilot.press("2")  # drawn from a fresh snapshot before it shows, not a second later
        assert table_calls.calls == 1 and table.snapshot is console.latest
        fleet_drawn = fleet_calls.calls
        await next_ticks(pilot, console, 2)
        assert table_calls.calls >= 3 and fleet_calls.calls == fleet_drawn and board_calls.calls == 0
        assert "inference" in screen_text(app) and table.row_count == 4

        await pilot.press("3")
        assert board_calls.calls == 1
        assert not console.gpus.parent.visible, "a hidden tab's old picture is never shown as current"
        table_drawn = table_calls.calls
        await next_ticks(pilot, console, 2)
        assert table_calls.calls == table_drawn, "the hidden GPU table is not drawn"
        assert board_calls.calls >= 3
        assert snapshots.calls == console.ticks - ticks, "one telemetry snapshot per tick"


async def test_crossings_are_notified_once_whichever_tab_shows(tmp_path: Path) -> None:
    app = telemetry_app(tmp_path)
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        notify = app.notify

        def recording(message, *args, **kwargs):
            notes.append(str(message))
            return notify(message, *args, **kwargs)

        app.notify = recording  # type: ignore[method-assign]
        await fleet_ready(pilot)
        await pilot.press("2")  # the crossing comes while the GPUs tab shows
        await telemetry_live(pilot)
        crossing = "inference GPU0 VRAM ok → warning"  # the demo's inference GPU holds ~81 % of its VRAM
        await wait_until(pilot, lambda: any(crossing in note for note in notes), what="the VRAM notification")
        for key in ("3", "1", "2"):  # each switch is a tick of its own
            await pilot.press(key)
            await pilot.pause(0.4)
    assert sum(crossing in note for note in notes) == 1, notes


def _crossing(index: int, to: Level, value: float = 80.0) -> LevelCrossing:
    at = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    return LevelCrossing(f"GPU-{index}", index, "RTX 4090", GpuMetric.TEMP, Level.OK, to, value, at)


def test_a_flood_of_crossings_becomes_one_notice_with_the_worst_first() -> None:
    few = [("vm1", _crossing(0, Level.WARNING)), ("vm1", _crossing(1, Level.CRITICAL, 90.0))]
    assert crossing_notices(few) == [
        ("vm1 GPU0 temperature ok → warning (80 °C)", "warning"),
        ("vm1 GPU1 temperature ok → critical (90 °C)", "error"),
    ]
    flood = [(f"vm{i:03d}", _crossing(i % 8, Level.WARNING)) for i in range(799)]
    flood.insert(500, ("vm500", _crossing(3, Level.CRITICAL, 91.0)))
    (text, severity), = crossing_notices(flood)
    assert severity == "error"
    assert text == "800 GPU thresholds crossed: vm500 GPU3 temperature ok → critical (91 °C); and 799 more (GPUs tab)"
