"""The idle auto-stop against a real provider client and a loopback TensorDock, on a clock
the test moves: warnings at 5 and 1 minute, the stop at the limit (journaled first, with
its reason), activity and snoozes putting it off, the stop guard still refusing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.idle_policy import IdleAction
from aiconsole.domain.power import PowerState
from aiconsole.domain.training import StopCheck, TrackingServer
from aiconsole.services.idle_enforcer import IdleEnforcer, IdleNotice
from ui_helpers import StoppedClock, config_runtime

KEY = "td-idle-test-0123456789abcdef"
INSTANCE = "4b2c7e1a-idle-test"


@pytest.fixture
async def tensordock():
    async with FakeTensorDock(KEY, start_seconds=0.2, stop_seconds=0.2) as fake:
        fake.add_instance(INSTANCE, "gpu", "Running")
        yield fake


@pytest.fixture
async def fleet(tensordock, tmp_path):
    """(monitor, clock, notices, enforcer): `gpu` running, idle stop after 30 minutes."""
    text = (
        '[budget]\ntimezone = "UTC"\n\n[[vm]]\nname = "gpu"\nprovider = "tensordock"\nhourly_usd = 0.35\n'
        f'idle_stop_minutes = 30\n[vm.tensordock]\ninstance_id = "{INSTANCE}"\napi_key_env = "TD_KEY"\n'
        f'api_url = "{tensordock.url}"\n'
    )
    clock = StoppedClock()
    runtime = config_runtime(text, {"TD_KEY": KEY}, tmp_path, clock=clock)
    monitor = runtime.monitor
    await monitor.open()
    await monitor.refresh()
    notices = []
    yield monitor, clock, notices, IdleEnforcer(monitor, notify=notices.append)
    await monitor.close()


def power(monitor) -> PowerState:
    return monitor.snapshot().vms[0].power


async def test_warns_at_5_and_1_minute_then_stops_and_journals_why(fleet, tensordock) -> None:
    monitor, clock, notices, enforcer = fleet
    assert power(monitor) is PowerState.RUNNING
    clock.advance(24 * 60)
    assert await enforcer.step() == [] and notices == []
    clock.advance(60)  # 25 minutes idle: 5 to go
    await enforcer.step()
    await enforcer.step()  # once per idle stretch
    assert [(n.action, n.text) for n in notices] == [
        (IdleAction.WARN_5MIN, "gpu stops in 5m 00s: idle for 25m 00s (limit 30m)")
    ]
    clock.advance(4 * 60)
    await enforcer.step()
    assert notices[-1].action is IdleAction.WARN_1MIN
    assert tensordock.instances[INSTANCE].status == "Running"

    clock.advance(60)
    assert await enforcer.step() == ["gpu"]
    assert notices[-1] == IdleNotice("gpu", IdleAction.STOP, "idle for 30m 00s (limit 30m): stopping gpu")
    assert tensordock.instances[INSTANCE].status.startswith("Stopped")
    event = monitor.ledger.events()[0]
    assert (event.kind, event.vm, event.actor, event.reason) == (
        "auto-stop", "gpu", "console", "idle for 30m 00s (limit 30m): stopping gpu",
    )  # fmt: skip
    assert event.hourly_usd == 0.35 and event.cost_today_usd == pytest.approx(0.35 * 0.5)


async def test_activity_puts_the_stop_off_and_warnings_come_again(fleet, tensordock) -> None:
    monitor, clock, notices, enforcer = fleet
    clock.advance(26 * 60)
    await enforcer.step()
    assert [n.action for n in notices] == [IdleAction.WARN_5MIN]
    monitor.note_activity("gpu", "chat", "chat stream")  # someone chats at minute 26
    clock.advance(5 * 60)
    assert await enforcer.step() == []  # idle for 5 minutes only
    clock.advance(20 * 60)
    await enforcer.step()
    assert [n.action for n in notices] == [IdleAction.WARN_5MIN, IdleAction.WARN_5MIN]
    assert tensordock.instances[INSTANCE].status == "Running"


async def test_a_snooze_puts_it_off_by_30_minutes_and_is_journaled(fleet, tensordock) -> None:
    monitor, clock, _, enforcer = fleet
    clock.advance(29 * 60)
    await enforcer.step()
    until = enforcer.snooze("gpu")
    assert until == monitor.snapshot().at + timedelta(minutes=30)
    assert monitor.ledger.events()[0].kind == "snooze"
    clock.advance(10 * 60)  # 39 minutes idle, snoozed until 59
    assert await enforcer.step() == []
    clock.advance(20 * 60)
    assert await enforcer.step() == ["gpu"]
    assert "snoozed" in monitor.ledger.events()[0].reason


async def test_an_unknown_idle_time_never_stops(fleet, tensordock) -> None:
    monitor, clock, notices, enforcer = fleet
    monitor.note_activity("gpu", "gpu", "GPU telemetry stale", unknown=True)  # a signal that cannot be read holds it
    clock.advance(60 * 60)
    assert await enforcer.step() == []
    assert tensordock.instances[INSTANCE].status == "Running" and notices == []


async def test_the_stop_guard_still_refuses_an_idle_stop(fleet, tensordock) -> None:
    monitor, clock, notices, enforcer = fleet
    server = TrackingServer("gpu", "mlflow")

    async def guard(vm: str) -> StopCheck:
        return StopCheck(vm, unreadable=((server, "HTTP 503"),))

    monitor.set_stop_guard(guard)
    clock.advance(31 * 60)
    assert await enforcer.step() == []
    assert tensordock.instances[INSTANCE].status == "Running"
    assert monitor.ledger.events()[0].kind == "stop-refused"
    assert notices[-1].text.startswith(
        "gpu was not stopped: not stopping gpu: MLflow on gpu/mlflow could not be checked"
    )
