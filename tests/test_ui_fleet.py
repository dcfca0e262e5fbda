"""The console driven by keys (Textual's pilot) on the demo fleet's loopback provider APIs.

Nothing above the wire is faked: the real providers talk HTTP to the fakes, the real
monitor polls them and writes a real ledger; only the monitor's clock stands still.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aiconsole.config_file import ConfigError
from aiconsole.demo.fleet import INFERENCE_ID, TRAINING_ID
from aiconsole.domain.power import PowerState
from aiconsole.runtime import RuntimeRequest
from aiconsole.ui.app import EXIT_BAD_CONFIG, AiConsoleApp, make_app
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.help import HelpScreen
from aiconsole.ui.widgets.vm_card import VmCard
from ui_helpers import (
    FIXED_NOW,
    HOSTILE_NAME,
    HOSTILE_NAME_SHOWN,
    StoppedClock,
    demo_app,
    fast_fleet,
    fleet_ready,
    footer_labels,
    has_control_chars,
    help_shows,
    notifications,
    screen_shows,
    screen_text,
    vm_now,
    wait_until,
    widget_lines,
)

SIZE = (80, 24)


def card(app: AiConsoleApp, name: str) -> VmCard:
    return app.query_one(f"#vm-{name}", VmCard)


def card_text(app: AiConsoleApp, name: str) -> str:
    return "\n".join(widget_lines(card(app, name)))


async def wait_for_card(pilot, name: str, text: str, *, timeout: float = 10.0) -> None:
    await wait_until(
        pilot, lambda: text in card_text(pilot.app, name), timeout=timeout, what=f"{text!r} on the {name} card"
    )


# -- 1. first frame, then the fleet -------------------------------------------------------


async def test_loading_body_first_then_four_vms_with_their_power(tmp_path: Path) -> None:
    seen_while_loading: list[str] = []
    app = demo_app(tmp_path, on_load=lambda app: seen_while_loading.append(screen_text(app)))
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        fleet = app.fleet
        fleet.redraw()
        await pilot.pause()

        # load_runtime ran once, after the first frame, while the body said it was loading.
        assert len(seen_while_loading) == 1
        assert "Loading the fleet…" in seen_while_loading[0]
        assert "inference" not in seen_while_loading[0]
        assert not app.query("#loading")

        powers = {vm.name: vm.power for vm in fleet.snapshot.vms}
        assert powers == {
            "inference": PowerState.RUNNING,
            "training": PowerState.STOPPED,
            "homelab": PowerState.RUNNING,
            "brain": PowerState.RUNNING,
        }
        assert "● running" in card_text(app, "inference")
        assert "StoppedDisassociated" in card_text(app, "training")  # the provider's own word
        assert "○ stopped" in card_text(app, "training")
        assert "gpu-workstation" in card_text(app, "homelab")
        assert "always on" in card_text(app, "brain")
        assert app.screen.focused is card(app, "inference")  # the first VM is selected


# -- 2. start ------------------------------------------------------------------------------


async def test_s_starts_the_selected_stopped_vm_through_starting_to_running(tmp_path: Path) -> None:
    fleet = fast_fleet(start_seconds=0.6)
    app = demo_app(tmp_path, fleet=fleet)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await pilot.press("j")
        assert app.screen.focused is card(app, "training")

        await pilot.press("s")
        await wait_for_card(pilot, "training", "◐ starting")
        await wait_for_card(pilot, "training", "● running")

        assert fleet.tensordock.instances[TRAINING_ID].status == "running"
        assert fleet.tensordock.instances[INFERENCE_ID].status == "Running"  # untouched
        assert ("POST", f"/api/v2/instances/{TRAINING_ID}/start") in fleet.tensordock.requests
        ledger = app.runtime.monitor.ledger
        last = ledger.intervals("training")[-1]
        assert (last.state, last.start, last.end) == (PowerState.RUNNING, FIXED_NOW, None)
        operator = [a for a in ledger.latest_activities("training") if a.kind == "operator"]
        assert [(a.detail, a.at) for a in operator] == [("start", FIXED_NOW)]
        await wait_until(
            pilot, lambda: ("information", "training is running.") in notifications(app), what="the notification"
        )


# -- 3. stop asks first ------------------------------------------------------------------------


async def test_x_asks_with_the_hourly_cost_n_cancels_y_stops(tmp_path: Path) -> None:
    fleet = fast_fleet(stop_seconds=0.6)
    app = demo_app(tmp_path, fleet=fleet)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        assert app.screen.focused is card(app, "inference")

        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await screen_shows(pilot, "Stop inference?", "It costs $0.35/h while running")
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        await app.runtime.monitor.refresh()
        assert vm_now(app, "inference").power is PowerState.RUNNING
        assert not any(path.endswith("/stop") for _, path in fleet.tensordock.requests)

        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for_card(pilot, "inference", "◑ stopping")
        await wait_for_card(pilot, "inference", "○ stopped")
        assert fleet.tensordock.instances[INFERENCE_ID].status == "StoppedDisassociated"
        assert app.runtime.monitor.ledger.intervals("inference")[-1].state is PowerState.STOPPED


async def test_x_on_an_always_on_host_says_so_and_asks_nothing(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await pilot.press("j", "j", "j")
        assert app.screen.focused is card(app, "brain")
        await pilot.press("x")
        assert not isinstance(app.screen, ConfirmScreen)
        assert ("information", "brain is always on: its provider has no stop.") in notifications(app)


# -- 4. help and quit ----------------------------------------------------------------------------


async def test_question_mark_lists_the_keys_esc_closes_q_quits(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await help_shows(pilot, [
            ("s", "Start the selected VM"),
            ("x", "Stop the selected VM (asks; twice with an MLflow run going)"),
            ("r", "Ask every provider for fresh state now"),
            ("q", "Quit"),
            ("?", "Help: list every key"),
        ])  # fmt: skip
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        await pilot.pause()
    assert (app.return_code or 0) == 0


# -- 5. read-only ------------------------------------------------------------------------------


async def test_read_only_hides_start_and_stop_and_refuses_them(tmp_path: Path) -> None:
    fleet = fast_fleet()
    app = demo_app(tmp_path, fleet=fleet, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        labels = footer_labels(app)
        assert "Refresh" in labels and "Help" in labels
        assert "Start" not in labels and "Stop" not in labels
        assert "read-only" in app.sub_title

        await pilot.press("j")
        assert app.screen.focused is card(app, "training")
        await pilot.press("s", "x")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        await app.runtime.monitor.refresh()
        assert vm_now(app, "training").power is PowerState.STOPPED
        assert not any(method == "POST" for method, _ in fleet.tensordock.requests)
        messages = [message for _, message in notifications(app)]
        assert "Read-only mode: start is disabled." in messages
        assert "Read-only mode: stop is disabled." in messages

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = await screen_shows(pilot, "Ask every provider for fresh state now")
        assert "Ask every provider for fresh state now" in help_text
        assert "Start the selected VM" not in help_text and "Stop the selected VM" not in help_text


# -- 6. rebinding keys from the user's config --------------------------------------------------

_POWER_SCRIPT = """#!/bin/sh
# A host that powers on/off by writing its state file, as a wake-on-LAN script might.
state="$(dirname "$0")/state"
case "$1" in
  status) cat "$state" ;;
  start) echo running > "$state" ;;
  stop) echo stopped > "$state" ;;
esac
"""


def _command_host_config(tmp_path: Path, keys: str) -> Path:
    script = tmp_path / "power.sh"
    script.write_text(_POWER_SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "state").write_text("stopped\n")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[[vm]]
name = "desk"
provider = "command"
hourly_usd = 0.05
poll_seconds = 30
[vm.command]
status = "{script} status"
start = "{script} start"
stop = "{script} stop"
timeout_s = 10

[keys]
{keys}
"""
    )
    return config


async def test_keys_from_config_rebind_start(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AICONSOLE_DATA_DIR", str(tmp_path / "data"))
    config = _command_host_config(tmp_path, 'vm-start = "ctrl+s"')
    app = make_app(RuntimeRequest.for_user(config, os.environ))
    state = tmp_path / "state"
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        assert vm_now(app, "desk").power is PowerState.STOPPED
        footer = (await screen_shows(pilot, "^s Start")).splitlines()[-1]
        assert "^s Start" in footer  # the footer shows the new key

        await pilot.press("s")
        await pilot.pause(0.3)
        assert state.read_text() == "stopped\n"
        assert not any("Starting desk" in message for _, message in notifications(app))

        await pilot.press("ctrl+s")
        await wait_for_card(pilot, "desk", "● running")
        assert state.read_text() == "running\n"
        assert app.runtime.monitor.ledger.intervals("desk")[-1].state is PowerState.RUNNING
        await pilot.press("question_mark")
        lines = (await screen_shows(pilot, "Start the selected VM")).splitlines()
        assert any("│ ^s " in line and "Start the selected VM" in line for line in lines)


async def test_an_unknown_key_id_in_the_config_ends_the_app_naming_it(tmp_path: Path, monkeypatch, capsys) -> None:
    # Since 20ec199 a typo in [keys] is a config error (file, field, value), not a warning.
    monkeypatch.setenv("AICONSOLE_DATA_DIR", str(tmp_path / "data"))
    config = _command_host_config(tmp_path, 'vm-strat = "ctrl+s"')
    app = make_app(RuntimeRequest.for_user(config, os.environ))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == EXIT_BAD_CONFIG
    message = " ".join(capsys.readouterr().err.split())  # the terminal folds long lines
    assert str(config) in message and "keys: no binding has the id(s) vm-strat" in message


# -- 7. themes ---------------------------------------------------------------------------------


async def test_a_broken_theme_file_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    themes = tmp_path / "themes"
    themes.mkdir()
    broken = themes / "broken.toml"
    broken.write_text('name = "broken"\nprimary = "not-a-colour"\n')
    app = demo_app(tmp_path, theme_dirs=[themes])
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        warnings = [message for severity, message in notifications(app) if severity == "warning"]
        assert any(str(broken) in message and "not-a-colour" in message for message in warnings), warnings
        assert app.theme == "aiconsole-dark"
        assert "broken" not in app.available_themes


async def test_theme_name_selects_the_light_theme(tmp_path: Path) -> None:
    app = demo_app(tmp_path, theme_name="aiconsole-light")
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        assert app.theme == "aiconsole-light"
        assert not app.current_theme.dark
        assert not notifications(app)


# -- 8. bad config -------------------------------------------------------------------------------


async def test_a_config_error_while_loading_exits_with_status_2(tmp_path: Path, capsys) -> None:
    def load():
        raise ConfigError("x.toml: invalid value for vm[0].hourly_usd: -1")

    app = AiConsoleApp(load, source="x.toml", telemetry=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == EXIT_BAD_CONFIG == 2
    assert app.runtime is None
    assert capsys.readouterr().err.strip() == "aiconsole: x.toml: invalid value for vm[0].hourly_usd: -1"


# -- 9. untrusted text -----------------------------------------------------------------------------


async def test_a_hostile_instance_name_shows_literally_without_escapes(tmp_path: Path) -> None:
    fleet = fast_fleet()
    fleet.tensordock.instances[INFERENCE_ID].name = HOSTILE_NAME
    app = demo_app(tmp_path, fleet=fleet)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        await wait_until(pilot, lambda: HOSTILE_NAME_SHOWN in card_text(app, "inference"), what="the label")
        inference = card(app, "inference")
        assert inference._border_title.plain == f"inference  tensordock  {HOSTILE_NAME_SHOWN}"
        assert not has_control_chars(card_text(app, "inference"))
        assert not has_control_chars(await screen_shows(pilot, HOSTILE_NAME_SHOWN))
        svg = app.export_screenshot()
        assert "[bold&#160;red]evil[/]" in svg  # shown, not applied as markup
        assert "pwned" not in svg and "\x1b" not in svg and "\x07" not in svg


async def test_a_server_error_with_markup_and_escapes_is_shown_inert(tmp_path: Path) -> None:
    fleet = fast_fleet()
    hostile_detail = "\x1b[2J\x1b]52;c;ZXZpbA==\x07[b]boom[/b] \x9b31m[link=http://x]y[/link]"
    fleet.tensordock.faults.fail_next(500, times=1000, body={"errors": [{"status": "500", "detail": hostile_detail}]})
    app = demo_app(tmp_path, fleet=fleet)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        expected = "⚠ TensorDock server error (HTTP 500): [b]boom[/b] [link=http://x]y[/link]"
        await wait_until(pilot, lambda: expected in card_text(app, "training"), what="the error on training")
        assert card(app, "training")._border_subtitle.plain == expected
        text = await screen_shows(pilot, "[b]boom[/b] [link=http://x]y[/link]")
        assert not has_control_chars(text)
        assert "ZXZpbA" not in text
        assert "● running" in card_text(app, "homelab")  # Proxmox is another server


# -- 10. a failing provider stays on its pane ---------------------------------------------------


async def test_a_rejected_api_key_is_an_error_on_those_panes_only(tmp_path: Path) -> None:
    fleet = fast_fleet()
    fleet.environ["DEMO_TENSORDOCK_API_KEY"] = "not-the-key"  # the fake still wants its own
    app = demo_app(tmp_path, fleet=fleet)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        app.fleet.redraw()
        await pilot.pause()
        message = "TensorDock rejected the API key (HTTP 401): Invalid or missing API token"
        for name in ("inference", "training"):
            vm = vm_now(app, name)
            assert (vm.power, vm.error) == (PowerState.UNKNOWN, message)
            assert f"⚠ {message}" in card_text(app, name)
            assert "not-the-key" not in card_text(app, name)
        assert vm_now(app, "homelab").power is PowerState.RUNNING
        assert "● running" in card_text(app, "homelab")
        assert "● running" in card_text(app, "brain")

        await pilot.press("r")  # polling again fails the same way, and the app lives on
        await pilot.pause(0.2)
        assert app.is_running
        assert vm_now(app, "inference").error == message


async def test_a_provider_failing_past_its_freshness_marks_the_last_state_stale(tmp_path: Path) -> None:
    clock = StoppedClock()
    fleet = fast_fleet()
    app = demo_app(tmp_path, fleet=fleet, clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        fleet.tensordock.faults.fail_next(503, times=10_000)
        clock.advance(20)  # the demo polls every 5 s: stale after 15 s without an answer
        await app.runtime.monitor.refresh()
        app.fleet.redraw()
        await pilot.pause()
        subtitle = card(app, "inference")._border_subtitle.plain
        assert subtitle == "⚠ stale 20s · TensorDock server error (HTTP 503): Service Unavailable"
        assert "● running" in card_text(app, "inference")  # the last answer, still shown
        assert "stale" not in card_text(app, "homelab")  # Proxmox answered just now


async def test_only_cards_in_view_are_repainted_and_the_others_when_they_scroll_into_view(tmp_path: Path) -> None:
    # A fleet of 100 VMs repainting every card every second cost a quarter of a core.
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 14)) as pilot:
        fleet = await fleet_ready(pilot)
        fleet.redraw()
        await pilot.pause()
        assert card(app, "inference").behind is False, "in view: repainted"
        assert card(app, "brain").behind is True, "out of view: remembered, not repainted"
        assert card(app, "brain").vm == vm_now(app, "brain"), "but given the latest state"
        for _ in range(3):
            await pilot.press("j")  # focus moves down to brain, which scrolls into view
        await pilot.pause()
        assert app.screen.focused is card(app, "brain")
        assert card(app, "brain").behind is False
        assert "always on" in card_text(app, "brain")
