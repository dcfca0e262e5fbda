"""`TrainingWatch` against the demo's FakeMlflow on loopback: readings, activity, staleness,
the stop guard's check, auth, and a forward that moves (the client follows it)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from aiconsole.demo.mlflow_api import FakeMlflow
from aiconsole.domain.power import PowerState
from aiconsole.domain.training import TrackingServer
from aiconsole.services.endpoints import Endpoints
from aiconsole.services.training import TrainingError, TrainingOptions, TrainingWatch
from providers_conftest import FakeClock, unused_loopback_url

NOW = 1_795_000_000.0
RUNNING_VM = {"training": PowerState.RUNNING}
SERVER = TrackingServer("training", "mlflow", hourly_usd=0.35)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def aware(clock: FakeClock):
    """The fake clock as the watch reads time (aware datetimes)."""
    return lambda: datetime.fromtimestamp(clock(), UTC)


@pytest.fixture
async def fake(clock):
    async with FakeMlflow(clock=clock, step_every_s=2.0, running_for_s=600.0) as server:
        yield server


def watch_for(url: str, *, server: TrackingServer = SERVER, environ=None, options=TrainingOptions(), **kwargs):
    endpoints = Endpoints()
    endpoints.add(server.vm, server.service, url)
    return TrainingWatch([server], endpoints, options, environ=environ, **kwargs)


async def test_a_reading_lists_runs_running_first_and_reports_the_running_run_as_activity(fake):
    activity: list[tuple[str, str]] = []
    watch = watch_for(fake.url, on_activity=lambda vm, detail, unknown=False: activity.append((vm, detail)))
    await watch.read_all(RUNNING_VM)
    runs = watch.snapshot().server("training", "mlflow")
    assert [(r.name, r.status) for r in runs.runs] == [("lora-r16", "RUNNING"), ("lora-r8", "FINISHED")]
    assert {e.name for e in runs.experiments} >= {"lora-llama3.1-8b"} and runs.error == ""
    assert activity == [("training", "MLflow run lora-r16 RUNNING")]

    fake.finish_running()
    await watch.read_all(RUNNING_VM)
    assert activity == [("training", "MLflow run lora-r16 RUNNING")], "a finished run is no activity"
    await watch.aclose()


async def test_a_stopped_vm_is_not_asked_and_its_last_runs_stay_marked(fake):
    watch = watch_for(fake.url)
    await watch.read_all(RUNNING_VM)
    fake.faults.fail_next(500, times=5)  # would show up as an error if it were asked
    await watch.read_all({"training": PowerState.STOPPED})
    state = watch.snapshot().server("training", "mlflow")
    assert not state.vm_running and state.error == "" and fake.faults.pending == 5
    assert len(state.runs) == 2 and state.is_stale(watch.snapshot().at, 45.0)
    await watch.aclose()


async def test_a_failed_reading_keeps_the_runs_as_stale_and_the_vm_busy_then_recovers(fake, clock):
    activity: list[tuple[str, bool]] = []
    now = aware(clock)
    watch = watch_for(fake.url, on_activity=lambda vm, detail, unknown=False: activity.append((detail, unknown)), clock=now)
    await watch.read_all(RUNNING_VM)
    fake.faults.fail_next(503)
    clock.now += 20
    await watch.read_all(RUNNING_VM)
    state = watch.snapshot().server("training", "mlflow")
    assert "503" in state.error and [r.name for r in state.runs] == ["lora-r16", "lora-r8"]
    assert state.is_stale(now(), 45.0) and state.age(now()) == pytest.approx(20.0)
    assert activity[-1] == ("MLflow run lora-r16 RUNNING (last seen; MLflow unreachable)", True)

    await watch.read_all(RUNNING_VM)
    state = watch.snapshot().server("training", "mlflow")
    assert state.error == "" and not state.is_stale(now(), 45.0)
    assert activity[-1] == ("MLflow run lora-r16 RUNNING", False)
    await watch.aclose()


async def test_an_unreachable_mlflow_without_a_run_seen_still_counts_as_unknown(fake):
    """Unknown is never idle: a server never read (the run may have begun since) holds the VM."""
    activity: list[tuple[str, str, bool]] = []
    watch = watch_for(fake.url, on_activity=lambda vm, detail, unknown=False: activity.append((vm, detail, unknown)))
    fake.finish_running()
    await watch.read_all(RUNNING_VM)
    assert activity == [], "no run going, server readable: nothing to report"
    fake.faults.fail_next(503)
    await watch.read_all(RUNNING_VM)
    assert activity == [("training", "MLflow unreachable (mlflow)", True)]
    await watch.aclose()


async def test_stop_check_names_the_running_run_and_is_clear_once_it_ended(fake):
    watch = watch_for(fake.url)
    check = await watch.stop_check("training")
    assert not check.clear and check.run_names == ["lora-r16"]
    warning = check.warnings(watch.snapshot().at)[0]
    assert warning.startswith("MLflow run lora-r16 is RUNNING on training (mlflow; last metric")
    fake.finish_running()
    assert (await watch.stop_check("training")).clear
    assert (await watch.stop_check("inference")).clear, "a VM without an mlflow service has nothing to lose"
    await watch.aclose()


async def test_stop_check_counts_an_unreachable_or_slow_server_as_not_clear(fake):
    down = watch_for(unused_loopback_url())
    check = await down.stop_check("training")
    assert not check.clear and check.unreadable and "could not be checked" in check.warnings(down.snapshot().at)[0]
    await down.aclose()

    slow = watch_for(fake.url, options=TrainingOptions(stop_check_timeout_s=0.2))
    fake.faults.delay_next(1.0)
    check = await slow.stop_check("training")
    assert [error for _, error in check.unreadable] == ["no answer within 0.2 s"]
    await slow.aclose()


async def test_the_token_comes_from_the_environment_and_never_shows(fake):
    seen: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.headers.get("authorization"))

    server = TrackingServer("training", "mlflow", api_key_env="MLFLOW_TOKEN")
    watch = watch_for(fake.url, server=server, environ={"MLFLOW_TOKEN": "s3cret-token-value"})
    client = await watch.client(server)
    client._http.event_hooks["request"].append(record)
    await watch.read(server)
    assert seen and all(value == "Bearer s3cret-token-value" for value in seen)
    fake.faults.fail_next(401, body={"error_code": "UNAUTHENTICATED", "message": "bad s3cret-token-value"})
    with pytest.raises(TrainingError) as caught:
        await watch.read(server)
    assert "s3cret-token-value" not in caught.value.message and not caught.value.retryable
    await watch.aclose()


async def test_a_missing_secret_is_one_error_not_a_crash(fake):
    server = TrackingServer("training", "mlflow", api_key_env="MLFLOW_TOKEN", username="operator")
    watch = watch_for(fake.url, server=server, environ={})
    await watch.read_all(RUNNING_VM)
    error = watch.snapshot().server("training", "mlflow").error
    assert "MLFLOW_TOKEN" in error and "not set" in error
    await watch.aclose()


async def test_the_tail_follows_a_forward_that_moved_without_losing_or_repeating_points(fake, clock):
    watch = watch_for(fake.url)
    follower = watch.follow(SERVER, fake.running.run_id, ["train_loss"])
    first = await follower.poll()
    steps = [p.step for p in first.metrics["train_loss"].points]
    old_client = await watch.client(SERVER)

    moved = fake.url.replace("127.0.0.1", "localhost")  # the same server at another URL
    watch.endpoints.add("training", "mlflow", moved)
    clock.now += 6.0  # three more steps
    update = await follower.poll()
    new_steps = [p.step for p in update.metrics["train_loss"].points]
    assert new_steps == list(range(steps[-1] + 1, steps[-1] + 4))
    assert (await watch.client(SERVER)) is not old_client and old_client._http.is_closed
    await watch.aclose()


async def test_run_runs_until_cancelled_and_refresh_soon_reads_at_once(fake):
    readings: list[int] = []
    watch = watch_for(fake.url, options=TrainingOptions(refresh_s=60.0), on_change=lambda: readings.append(1))
    task = asyncio.create_task(watch.run(lambda: RUNNING_VM))
    for _ in range(100):
        if readings:
            break
        await asyncio.sleep(0.02)
    watch.refresh_soon()
    for _ in range(100):
        if len(readings) >= 2:
            break
        await asyncio.sleep(0.02)
    assert len(readings) >= 2, "refresh_soon did not cut the 60 s wait short"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await watch.aclose()


async def test_username_sends_basic_auth_with_the_password_from_the_environment(fake):
    import base64

    seen: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.headers.get("authorization"))

    server = TrackingServer("training", "mlflow", api_key_env="MLFLOW_TRACKING_PASSWORD", username="operator")
    watch = watch_for(fake.url, server=server, environ={"MLFLOW_TRACKING_PASSWORD": "pw-0123456789"})
    client = await watch.client(server)
    client._http.event_hooks["request"].append(record)
    await watch.read(server)
    expected = "Basic " + base64.b64encode(b"operator:pw-0123456789").decode()
    assert seen and all(value == expected for value in seen)
    assert "pw-0123456789" not in repr(client) and "pw-0123456789" not in repr(watch.servers)
    await watch.aclose()
