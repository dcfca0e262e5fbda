"""The money guard (services/money_guard.py) on a clock the test moves, against the real
TensorDock client and a loopback TensorDock: budget levels notified and journaled once per
period (across a restart too), the stop at 100 % with a grace period for a VM with a RUNNING
run and then its forced stop, and two guards on one ledger never both enforcing."""

from __future__ import annotations

import pytest

from aiconsole.assembly import build_money_guard
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.enforcement import Role
from aiconsole.domain.mlflow import Run
from aiconsole.domain.training import StopCheck, TrackingServer
from aiconsole.services.money_guard import MoneyGuard, MoneyNotice
from ui_helpers import StoppedClock, config_runtime

KEY = "td-money-test-0123456789abcdef"
IDS = {"inference": "9f1c-inference-money", "training": "7a2d-training-money"}


@pytest.fixture
async def tensordock():
    async with FakeTensorDock(KEY, start_seconds=0.1, stop_seconds=0.1) as fake:
        for name, instance in IDS.items():
            fake.add_instance(instance, name, "Running")
        yield fake


def _config(url: str, *, hourly: float = 2.5, idle: str = "") -> str:
    text = '[budget]\ntimezone = "UTC"\ndaily_usd = 5\nmonthly_usd = 50\ngrace_minutes = 10\n'
    for name, instance in IDS.items():
        text += (
            f'\n[[vm]]\nname = "{name}"\nprovider = "tensordock"\nhourly_usd = {hourly}\n{idle}'
            f'[vm.tensordock]\ninstance_id = "{instance}"\napi_key_env = "TD_KEY"\napi_url = "{url}"\n'
        )
    return text


async def _runtime(tensordock, tmp_path, clock, **config):
    runtime = config_runtime(_config(tensordock.url, **config), {"TD_KEY": KEY}, tmp_path, clock=clock)
    await runtime.monitor.open()
    await runtime.monitor.refresh()
    return runtime


def status(tensordock, name: str) -> str:
    return tensordock.instances[IDS[name]].status


LORA = Run("r1", "lora-r16", "1", "RUNNING")


def training_runs_lora(monitor) -> None:
    """The stop guard finds lora-r16 RUNNING on training (as the MLflow watch would)."""
    server = TrackingServer("training", "mlflow")

    async def guard(vm: str) -> StopCheck:
        return StopCheck(vm, running=((server, LORA),)) if vm == "training" else StopCheck(vm)

    monitor.set_stop_guard(guard)


async def test_levels_are_notified_and_journaled_once_per_period_even_across_a_restart(tensordock, tmp_path):
    clock = StoppedClock()
    runtime = await _runtime(tensordock, tmp_path, clock, hourly=1.25)  # two VMs: $2.50/h together
    notices: list[MoneyNotice] = []
    guard = build_money_guard(runtime, notify=notices.append)
    training_runs_lora(runtime.monitor)
    await guard.step()
    assert guard.holding and notices == []
    clock.advance(61 * 60)  # $2.54: 51 % of the day
    await guard.step()
    await guard.step()
    assert [(n.text, n.severity) for n in notices] == [("51 % of the daily budget used: $2.54 spent", "warning")]
    event = runtime.monitor.ledger.events()[0]
    assert (event.kind, event.vm, event.actor, event.reason) == (
        "budget", "", "console", "warning: 51 % of the daily budget used: $2.54 spent",
    )  # fmt: skip

    # The console restarts: the level already told stays told.
    guard.release()
    again: list[MoneyNotice] = []
    second = build_money_guard(runtime, notify=again.append)
    await second.step()
    assert again == []
    clock.advance(36 * 60)  # $4.04: 81 %, the alert level
    await second.step()
    assert [(n.text, n.severity) for n in again] == [("81 % of the daily budget used: $4.04 spent", "error")]
    await runtime.monitor.close()


async def test_at_100_percent_vms_stop_a_run_gets_its_grace_then_stops_too(tensordock, tmp_path):
    clock = StoppedClock()
    runtime = await _runtime(tensordock, tmp_path, clock)  # $2.50/h each: $5/h together
    monitor = runtime.monitor
    training_runs_lora(monitor)
    notices: list[MoneyNotice] = []
    guard = build_money_guard(runtime, notify=notices.append)
    await guard.step()
    clock.advance(60 * 60)  # $5.00 spent: the daily budget is reached
    await guard.step()
    assert status(tensordock, "inference").startswith("Stopped")
    assert status(tensordock, "training") == "Running"
    reasons = {(e.kind, e.vm): e.reason for e in monitor.ledger.events()}
    assert reasons[("auto-stop", "inference")] == (
        "daily budget $5.00 reached ($5.00 spent): stopping inference ($2.50/h)"
    )
    assert reasons[("budget", "training")] == (
        "grace: training keeps running for its MLflow run lora-r16 until 16:10, then stops: "
        "daily budget $5.00 reached ($5.00 spent)"
    )
    assert any(n.severity == "error" and n.text.startswith("⚠ training keeps running") for n in notices)

    clock.advance(9 * 60)
    await guard.step()
    assert status(tensordock, "training") == "Running"
    assert sum(1 for e in monitor.ledger.events() if e.reason.startswith("grace:")) == 1, "one loud alert"
    clock.advance(60)  # the grace is over: stopped even though the run still goes
    await guard.step()
    assert status(tensordock, "training").startswith("Stopped")
    stop = next(e for e in monitor.ledger.events() if e.vm == "training" and e.kind == "auto-stop")
    assert stop.reason.endswith("grace of 10 min for its MLflow run over, stopping training ($2.50/h)")
    # The overshoot is bounded: training's 10 minutes of grace at $2.50/h.
    assert monitor.snapshot().budget.spent_today_usd == pytest.approx(5.0 + 2.5 * 10 / 60, abs=0.01)
    await monitor.close()


async def test_a_run_that_ends_during_its_grace_is_stopped_at_once(tensordock, tmp_path):
    clock = StoppedClock()
    runtime = await _runtime(tensordock, tmp_path, clock)
    monitor = runtime.monitor
    training_runs_lora(monitor)
    guard = build_money_guard(runtime)
    await guard.step()
    clock.advance(60 * 60)
    await guard.step()
    assert status(tensordock, "training") == "Running"
    monitor.set_stop_guard(None)  # lora-r16 finished
    clock.advance(2 * 60)
    await guard.step()
    assert status(tensordock, "training").startswith("Stopped")
    stop = next(e for e in monitor.ledger.events() if e.vm == "training" and e.kind == "auto-stop")
    assert "its MLflow run ended" in stop.reason
    await monitor.close()


async def test_a_console_and_a_watch_never_both_enforce(tensordock, tmp_path):
    """Two monitors on one ledger (a console and a watch, as two processes would have): only
    the lock's holder stops; the other warns its operator and says who enforces."""
    clock = StoppedClock()
    console_rt = await _runtime(tensordock, tmp_path / "a", clock, hourly=0.35, idle="idle_stop_minutes = 30\n")
    path = console_rt.monitor.ledger.path
    watch_rt = config_runtime(
        _config(tensordock.url, hourly=0.35, idle="idle_stop_minutes = 30\n"),
        {"TD_KEY": KEY},
        tmp_path / "b",
        clock=clock,
    )
    watch_rt.monitor.ledger.close()
    from aiconsole.services.ledger import Ledger

    watch_rt.monitor.ledger = Ledger.open(path)
    await watch_rt.monitor.open()
    await watch_rt.monitor.refresh()
    told: dict[str, list[MoneyNotice]] = {"console": [], "watch": []}
    console = MoneyGuard(console_rt.monitor, role=Role.CONSOLE, tz=console_rt.monitor.tz, notify=told["console"].append,
                         holder="console pid 1 on laptop")  # fmt: skip
    watch = MoneyGuard(watch_rt.monitor, role=Role.WATCH, tz=watch_rt.monitor.tz, notify=told["watch"].append,
                       holder="watch pid 2 on jumphost")  # fmt: skip
    await console.step()
    assert console.holding and console.holder_text(clock.now) == "money guard: this console"
    await watch.step()  # asks; the console gives it up at its next claim
    assert not watch.holding
    await console.step()
    assert not console.holding
    assert told["console"][-1].text.startswith("Another aiconsole takes over the money guard")
    await watch.step()
    assert watch.holding
    await console.step()
    assert console.holder_text(clock.now) == "money guard: watch pid 2 on jumphost enforces (since 15:00, seen 0s ago)"

    # 25 idle minutes: both warn their operator; 30: only the watch stops, once.
    clock.advance(25 * 60)
    for guard in (console, watch):
        await guard.step()
    assert all(notices[-1].snoozable and "stops in 5m 00s" in notices[-1].text for notices in told.values())
    # The console's operator snoozes inference: the watch, which enforces, honours it.
    console.snooze("inference")
    clock.advance(5 * 60)
    for guard in (console, watch):
        await guard.step()
    assert status(tensordock, "inference") == "Running" and status(tensordock, "training").startswith("Stopped")
    stops = [e for e in watch_rt.monitor.ledger.events() if e.kind == "auto-stop"]
    assert [(e.vm, e.actor) for e in stops] == [("training", "watch")]
    for rt in (console_rt, watch_rt):
        await rt.monitor.close()


async def test_nothing_is_stopped_before_the_sources_had_time_to_report(tensordock, tmp_path):
    """A console started long after the last activity it knows of: the VMs look idle and over
    budget, but the GPU feeds and the MLflow watch have not reported yet. Nothing stops in the
    first minute; after it, whatever still holds."""
    clock = StoppedClock()
    runtime = await _runtime(tensordock, tmp_path, clock, hourly=2.5, idle="idle_stop_minutes = 30\n")
    clock.advance(2 * 60 * 60)  # two hours since the VMs started: idle 2 h and $10 spent
    guard = build_money_guard(runtime)  # warm-up: 60 s
    await guard.step()
    runtime.monitor.note_activity("inference", "gpu", "GPU busy")  # the feed reports, seconds later
    clock.advance(59)
    await guard.step()
    assert status(tensordock, "inference") == "Running" and status(tensordock, "training") == "Running"
    clock.advance(1)
    await guard.step()
    assert status(tensordock, "inference").startswith("Stopped")  # the budget: busy or not
    assert status(tensordock, "training").startswith("Stopped")
    # training was stopped by the idle rule, once: the budget rule, in the same step, saw it stopped.
    stops = [(e.vm, e.reason.split(":")[0]) for e in runtime.monitor.ledger.events() if e.kind == "auto-stop"]
    assert sorted(stops) == [
        ("inference", "daily budget $5.00 reached ($10.08 spent)"),
        ("training", "idle for 2h 01m (limit 30m)"),
    ]
    await runtime.monitor.close()
