"""SVG snapshots of the console at 80x24 (stored under snapshots/test_ui_snapshots/).

Each screen is the real app on loopback fakes of the provider APIs, with the monitor's
clock stopped at `FIXED_NOW`, so costs, idle timers and "checked … ago" are the same on
every run. Before the picture, every VM has answered (or failed) and the toasts are gone.
Open every changed SVG before accepting it (`--snapshot-update`).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from textual.pilot import Pilot

from aiconsole.demo.fleet import INFERENCE_ID
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.power import PowerState
from aiconsole.ui.app import AiConsoleApp
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.help import HelpScreen
from ui_helpers import (
    HOSTILE_NAME,
    StoppedClock,
    config_runtime,
    demo_app,
    demo_env,
    fast_fleet,
    pane,
    settle,
    vm_now,
    wait_until,
    widget_lines,
)

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICONSOLE_DATA_DIR", str(tmp_path / "data"))


async def _card_shows(pilot: Pilot, name: str, text: str) -> None:
    card = pilot.app.query_one(f"#vm-{name}")
    await wait_until(pilot, lambda: text in "\n".join(widget_lines(card)), what=f"{text!r} on {name}")


def test_demo_fleet_after_first_refresh(snap_compare, tmp_path: Path) -> None:
    """Running (inference), stopped (training), a Proxmox guest, an always-on box; budget bars."""
    assert snap_compare(demo_app(tmp_path), terminal_size=SIZE, run_before=settle)


def test_vms_starting_and_stopping(snap_compare, tmp_path: Path) -> None:
    """training asked to start (starting), inference asked to stop (stopping), mid-way."""
    fleet = fast_fleet(start_seconds=60, stop_seconds=60)  # they stay in transition for the picture

    async def start_training_stop_inference(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("j", "s")
        await _card_shows(pilot, "training", "◐ starting")
        await pilot.press("k", "x")
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("y")
        await _card_shows(pilot, "inference", "◑ stopping")
        pane(pilot.app).redraw()
        await pilot.pause()
        pilot.app.clear_notifications()

    assert snap_compare(demo_app(tmp_path, fleet=fleet), terminal_size=SIZE, run_before=start_training_stop_inference)


_TROUBLE_CONFIG = """
[budget]
daily_usd = 5.0
monthly_usd = 50.0
timezone = "UTC"

[[vm]]
name = "denied"
provider = "tensordock"
hourly_usd = 0.35
poll_seconds = 60
[vm.tensordock]
instance_id = "denied-1"
api_key_env = "WRONG_TENSORDOCK_KEY"
api_url = "{good_url}"

[[vm]]
name = "lapsed"
provider = "tensordock"
hourly_usd = 0.50
poll_seconds = 5
[vm.tensordock]
instance_id = "lapsed-1"
api_key_env = "TD_KEY"
api_url = "{lapsing_url}"

[[vm]]
name = "odd"
provider = "tensordock"
hourly_usd = 0.20
poll_seconds = 60
[vm.tensordock]
instance_id = "odd-1"
api_key_env = "TD_KEY"
api_url = "{good_url}"

[[vm]]
name = "waking"
provider = "command"
poll_seconds = 60
[vm.command]
status = "{slow_status}"
start = "true"
"""


def _trouble_app(tmp_path: Path, clock: StoppedClock) -> tuple[AiConsoleApp, FakeTensorDock]:
    """Four VMs: a rejected key, a provider that stopped answering, a word we don't know,
    and a status command that has not answered yet."""
    good = FakeTensorDock("td-key")
    good.add_instance("denied-1", "denied-a100", "Running")
    good.add_instance("odd-1", "odd-h100", "Hibernating")
    lapsing = FakeTensorDock("td-key")
    lapsing.add_instance("lapsed-1", "lapsed-4090", "Running")
    for fake in (good, lapsing):
        fake.server.bind()
    slow_status = tmp_path / "slow-status.sh"
    slow_status.write_text("#!/bin/sh\nsleep 30\necho running\n")
    slow_status.chmod(slow_status.stat().st_mode | stat.S_IXUSR)
    config = _TROUBLE_CONFIG.format(good_url=good.url, lapsing_url=lapsing.url, slow_status=slow_status)
    environ = {**demo_env(tmp_path), "TD_KEY": "td-key", "WRONG_TENSORDOCK_KEY": "not-the-key"}

    def load():
        return config_runtime(config, environ, tmp_path, clock=clock, resources=(good, lapsing))

    return AiConsoleApp(load, source="test-fleet.toml", telemetry=False), lapsing


def test_vms_in_trouble_error_stale_unknown_checking(snap_compare, tmp_path: Path) -> None:
    """denied: 401 error; lapsed: last answer 20 s ago, provider now failing (stale);
    odd: a status word we do not know (unknown); waking: no answer yet (checking…)."""
    clock = StoppedClock()
    app, lapsing = _trouble_app(tmp_path, clock)

    async def make_trouble(pilot: Pilot) -> None:
        await settle(pilot, refresh=["denied", "lapsed", "odd"])
        assert vm_now(pilot.app, "lapsed").power is PowerState.RUNNING
        lapsing.faults.fail_next(503, times=10_000)
        clock.advance(20)  # past 3 polls of 5 s since the last good answer
        await settle(pilot, refresh=["denied", "lapsed", "odd"])
        lapsed = vm_now(pilot.app, "lapsed")
        assert lapsed.stale and lapsed.error and lapsed.power is PowerState.RUNNING
        assert vm_now(pilot.app, "waking").checked_at is None

    assert snap_compare(app, terminal_size=SIZE, run_before=make_trouble)


def test_stop_confirm_dialog(snap_compare, tmp_path: Path) -> None:
    """x on inference: the question, what it costs, Stop/Cancel with Cancel focused."""

    async def ask_to_stop(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("x")
        assert isinstance(pilot.app.screen, ConfirmScreen)

    assert snap_compare(demo_app(tmp_path), terminal_size=SIZE, run_before=ask_to_stop)


def test_help_screen(snap_compare, tmp_path: Path) -> None:
    """? on the Fleet tab: every key that works there, with what it does."""

    async def open_help(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)

    assert snap_compare(demo_app(tmp_path), terminal_size=SIZE, run_before=open_help)


def test_read_only_mode(snap_compare, tmp_path: Path) -> None:
    """--read-only: "read-only" in the header, no Start/Stop in the footer."""
    assert snap_compare(demo_app(tmp_path, read_only=True), terminal_size=SIZE, run_before=settle)


def test_untrusted_instance_name(snap_compare, tmp_path: Path) -> None:
    """An instance named with an OSC, a CSI and markup: the markup shows as typed, no escapes."""
    fleet = fast_fleet()
    fleet.tensordock.instances[INFERENCE_ID].name = HOSTILE_NAME
    assert snap_compare(demo_app(tmp_path, fleet=fleet), terminal_size=SIZE, run_before=settle)


def test_light_theme(snap_compare, tmp_path: Path) -> None:
    """The demo fleet in aiconsole-light."""
    assert snap_compare(demo_app(tmp_path, theme_name="aiconsole-light"), terminal_size=SIZE, run_before=settle)
