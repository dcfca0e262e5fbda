"""Snapshots of the money guard on the Fleet tab (80x24): each VM pane's idle countdown and
why it is busy (known apart from unknown), a snooze, the guard's state; the budget bars at
80 % with the outlook line and who enforces."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from textual.pilot import Pilot

from aiconsole.assembly import build_money_guard
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.guard import GuardView
from aiconsole.ui.app import AiConsoleApp
from ui_helpers import StoppedClock, config_runtime, demo_env, settle

SIZE = (80, 24)


def _config(url: str, names: list[str], hourly: float) -> str:
    text = '[budget]\ndaily_usd = 5.0\nmonthly_usd = 50.0\ntimezone = "UTC"\n'
    for name in names:
        text += (
            f'\n[[vm]]\nname = "{name}"\nprovider = "tensordock"\nhourly_usd = {hourly}\nidle_stop_minutes = 30\n'
            f'poll_seconds = 60\n[vm.tensordock]\ninstance_id = "{name}-1"\napi_key_env = "TD_KEY"\napi_url = "{url}"\n'
        )
    return text


def _app(tmp_path: Path, clock: StoppedClock, names: list[str], hourly: float) -> AiConsoleApp:
    fake = FakeTensorDock("td-key")
    for name in names:
        fake.add_instance(f"{name}-1", f"{name}-rtx4090", "Running")
    fake.server.bind()
    config = _config(fake.url, names, hourly)
    environ = {**demo_env(tmp_path), "TD_KEY": "td-key"}
    return AiConsoleApp(
        lambda: config_runtime(config, environ, tmp_path, clock=clock, resources=(fake,)),
        source="test-fleet.toml",
        telemetry=False,
    )


class _Guards:
    """The heartbeats' view of each VM's dead-man's switch (what GuardHeartbeat.state gives)."""

    def __init__(self, views: dict[str, GuardView]) -> None:
        self.views = views

    def state(self, vm: str) -> GuardView | None:
        return self.views.get(vm)


def test_vm_panes_show_the_idle_countdown_and_why_they_are_busy(snap_compare, tmp_path: Path) -> None:
    """inference: idle 26 minutes, stops in 4 (warning colour), guard armed; training: a RUNNING
    run and two SSH sessions, and a GPU feed that cannot be read, told apart, and a guard whose
    heartbeat fails; chatting: a chat stream; notebook: idle 26 minutes too, but snoozed."""
    clock = StoppedClock()
    app = _app(tmp_path, clock, ["inference", "training", "chatting", "notebook"], 0.35)

    async def busy_fleet(pilot: Pilot) -> None:
        await settle(pilot)
        monitor = pilot.app.runtime.monitor
        clock.advance(26 * 60)
        monitor.note_activity("training", "mlflow", "MLflow run lora-r16 RUNNING", lease_s=45)
        monitor.note_activity("training", "ssh", "2 SSH sessions", lease_s=60)
        monitor.note_activity("training", "gpu", "GPU stale", lease_s=30, unknown=True)
        monitor.note_activity("chatting", "chat", "chat stream", lease_s=20)
        guard = build_money_guard(pilot.app.runtime)
        guard.claim()
        guard.snooze("notebook")
        fleet = pilot.app.fleet
        fleet.use_money_guard(guard)
        now = clock()
        fleet.use_heartbeat(_Guards({
            "inference": GuardView(now, installed=True, timer_state="active", silence_limit_s=1200, last_sent_at=now),
            "training": GuardView(now, installed=True, timer_state="active", silence_limit_s=1200,
                                  last_sent_at=now - timedelta(minutes=3), error="ssh: connection refused"),
        }))  # fmt: skip
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=busy_fleet)


def test_budget_bars_at_80_percent_with_the_outlook_and_who_enforces(snap_compare, tmp_path: Path) -> None:
    """Two VMs at $2/h for an hour: $4.00 of $5.00 (80 %, the alert colour); at $4.00/h the
    daily budget is reached at 16:15; this console enforces."""
    clock = StoppedClock()
    app = _app(tmp_path, clock, ["inference", "training"], 2.0)

    async def spend(pilot: Pilot) -> None:
        await settle(pilot)
        clock.advance(60 * 60)
        for name in ("inference", "training"):
            pilot.app.runtime.monitor.note_activity(name, "gpu", "GPU busy")
        guard = build_money_guard(pilot.app.runtime)
        guard.claim()
        pilot.app.fleet.use_money_guard(guard)
        await settle(pilot)
        budget = pilot.app.runtime.monitor.snapshot().budget
        assert budget.spent_today_usd == 4.0 and budget.day_level == "alert"

    assert snap_compare(app, terminal_size=SIZE, run_before=spend)
