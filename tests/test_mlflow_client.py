"""MlflowClient, MetricTail and RunTail against the real `mlflow server`, and wire faults on a fake.

A "script" logs through MLflow's own REST API (runs/create, runs/log-batch, runs/update)
while the console's client reads; an httpx event hook counts the client's requests, the
bytes of each answer and the points in it, so the tail's cost per poll is measured.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aiconsole.demo.fake_api import FakeApi
from aiconsole.demo.httpserver import Request, Response
from aiconsole.domain.mlflow import RUNNING, Run, run_duration, sort_runs
from aiconsole.domain.secret import Secret
from aiconsole.services.mlflow_client import MetricTail, MlflowClient, MlflowError, RunTail
from mlflow_script import Script
from mlflow_wire import Wire
from providers_conftest import HOSTILE_NAME, has_no_control_chars, unused_loopback_url

TOKEN = "mlflow-token-0123456789abcdef"


@pytest.fixture
def server(mlflow_real):
    return mlflow_real


@pytest.fixture
async def wire_client(server):
    wire = Wire()
    async with MlflowClient(server.url, event_hooks={"response": [wire.hook]}) as client:
        yield client, wire


@pytest.fixture
async def script(server):
    script = Script(server.url)
    yield script
    await script.aclose()


async def test_lists_experiments_and_runs_running_first(wire_client, script):
    client, wire = wire_client
    eid = await script.experiment()
    done = await script.run(eid, "lora-r8", lr="2e-4", rank="8")
    await script.log(done, "loss", range(3))
    await script.end(done)
    live = await script.run(eid, "lora-r16", lr="1e-4")
    await script.log(live, "loss", range(5))

    assert eid in {e.id for e in await client.experiments()}
    runs = await client.runs([eid])
    assert {r.name for r in runs} == {"lora-r8", "lora-r16"}
    paged = await client.runs([eid], page_size=1)  # one run per page: the client follows the tokens
    assert [r.id for r in paged] == [r.id for r in runs]
    assert sum(1 for call in wire.take() if call.path == "runs/search") >= 1 + 2

    first = sort_runs(runs)[0]
    assert first.id == live and first.status == RUNNING and first.user == "op"
    assert first.params == {"lr": "1e-4"} and first.tags["mlflow.runName"] == "lora-r16"
    assert first.latest["loss"].step == 4 and first.latest["loss"].value == pytest.approx(0.2)
    finished = next(r for r in runs if r.id == done)
    assert finished.status == "FINISHED" and finished.end_time is not None
    assert run_duration(finished, datetime.now(UTC)) == finished.end_time - finished.start_time


async def test_tail_fetches_only_new_points_and_its_cost_stays_flat(wire_client, script):
    client, wire = wire_client
    run_id = await script.run(await script.experiment(), "tail")
    await script.log(run_id, "loss", range(25))
    tail = MetricTail(client, run_id, "loss", page_size=10)

    first = await tail.poll()
    assert [p.step for p in first.points] == list(range(25)) and not first.reset
    assert [call.points for call in wire.take()] == [10, 10, 5]  # the first load pages through

    assert (await tail.poll()).points == ()
    assert [call.points for call in wire.take()] == [5]  # re-reads only the unfilled page

    await script.log(run_id, "loss", range(25, 28))
    assert [p.step for p in (await tail.poll()).points] == [25, 26, 27]
    assert [call.points for call in wire.take()] == [8]

    await script.log(run_id, "loss", range(28, 35))  # fills the page: the tail moves on
    assert [p.step for p in (await tail.poll()).points] == list(range(28, 35))
    assert [call.points for call in wire.take()] == [10, 5]

    short = await _poll_cost(tail, script, run_id, wire)
    await script.log(run_id, "loss", range(36, 2036))  # the run grows 57x
    await tail.poll()
    wire.take()
    long = await _poll_cost(tail, script, run_id, wire)
    full_before = len(await client.history(run_id, "loss", page_size=1000))
    naive = sum(call.size for call in wire.take())
    assert full_before == 2037
    # One request each, at most a page of points, whatever the run's length; a full refetch
    # of the same run costs far more.
    assert short[0] == long[0] == 1
    assert long[1] <= 10 * 120 and short[1] <= 10 * 120
    print(f"tail poll: short run {short}, long run {long}; full refetch {naive} bytes")
    assert naive > 50 * long[1]


async def _poll_cost(tail: MetricTail, script: Script, run_id: str, wire: Wire) -> tuple[int, int]:
    step = (tail.last.step + 1) if tail.last else 0
    await script.log(run_id, "loss", range(step, step + 1))
    update = await tail.poll()
    assert [p.step for p in update.points] == [step]
    calls = wire.take()
    return len(calls), sum(call.size for call in calls)


async def test_run_tail_asks_only_for_metrics_that_moved_and_stops_when_finished(wire_client, script):
    client, wire = wire_client
    run_id = await script.run(await script.experiment(), "guarded")
    await script.log(run_id, "loss", range(3))
    await script.log(run_id, "eval_ppl", range(1))
    tail = RunTail(client, run_id)

    update = await tail.poll()
    assert {k: len(u.points) for k, u in update.metrics.items()} == {"loss": 3, "eval_ppl": 1}
    assert sorted(call.path for call in wire.take()) == ["metrics/get-history"] * 2 + ["runs/get"]

    await script.log(run_id, "loss", range(3, 5))
    update = await tail.poll()
    assert list(update.metrics) == ["loss"] and [p.step for p in update.metrics["loss"].points] == [3, 4]
    assert [call.path for call in wire.take()] == ["runs/get", "metrics/get-history"]

    assert (await tail.poll()).metrics == {}
    assert [call.path for call in wire.take()] == ["runs/get"]  # nothing moved: no history asked

    await script.log(run_id, "loss", range(5, 6))
    await script.end(run_id)
    update = await tail.poll()
    assert update.done and update.run.status == "FINISHED"
    assert [p.step for p in update.metrics["loss"].points] == [5]
    wire.take()
    assert (await tail.poll()).done
    assert wire.take() == []  # a finished run is not polled again


async def test_nan_and_infinities_from_the_real_server(wire_client, script):
    client, _ = wire_client
    run_id = await script.run(await script.experiment(), "diverged")
    values = {0: "NaN", 1: "Infinity", 2: "-Infinity", 3: 0.5}
    await script.log(run_id, "loss", range(4), value=values.__getitem__)
    points = await client.history(run_id, "loss")
    assert math.isnan(points[0].value)
    assert [p.value for p in points[1:]] == [math.inf, -math.inf, 0.5]
    await script.log(run_id, "grad_norm", range(1), value=lambda _: "NaN")
    assert math.isnan((await client.run(run_id)).latest["grad_norm"].value)


async def test_hostile_names_come_back_verbatim_for_the_ui_to_sanitise(wire_client, script):
    client, _ = wire_client
    run_id = await script.run(await script.experiment(), HOSTILE_NAME, note=HOSTILE_NAME)
    run = await client.run(run_id)
    assert run.name == HOSTILE_NAME and run.params == {"note": HOSTILE_NAME}


async def test_unknown_run_is_not_found_and_not_retryable(wire_client):
    client, _ = wire_client
    with pytest.raises(MlflowError) as caught:
        await client.run("0" * 32)
    assert caught.value.status == 404 and not caught.value.retryable
    assert "RESOURCE_DOES_NOT_EXIST" in caught.value.message


# -- wire-level faults against a loopback fake -----------------------------------------


def _run_json(value) -> dict:
    info = {
        "run_id": "abc",
        "run_name": "r",
        "experiment_id": "1",
        "status": "RUNNING",
        "start_time": 1_700_000_000_000,
    }
    metric = {"key": "loss", "value": value, "timestamp": 1_700_000_000_500, "step": 7}
    return {"run": {"info": info, "data": {"metrics": [metric]}}}


class FakeMlflow(FakeApi):
    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.value: object = 1.0
        self.raw_body: bytes | None = None
        self.router.add("GET", "/api/2.0/mlflow/runs/get", self._get_run)

    async def serve(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Response(
                401, {"error_code": "UNAUTHENTICATED", "message": f"bad {request.headers.get('authorization')}\x1b[2J"}
            )
        return await self.router(request)

    async def _get_run(self, request: Request) -> Response:
        if self.raw_body is not None:
            return Response(200, self.raw_body, {"Content-Type": "application/json"})
        return Response(200, _run_json(self.value))


@pytest.fixture
async def fake():
    async with FakeMlflow() as fake:
        yield fake


@pytest.fixture
async def fake_client(fake):
    async with MlflowClient(fake.url, token=Secret(TOKEN), timeout=2.0) as client:
        yield client


async def _error(awaitable) -> MlflowError:
    with pytest.raises(MlflowError) as caught:
        await awaitable
    error = caught.value
    assert TOKEN not in error.message and has_no_control_chars(error.message)
    assert TOKEN not in repr(error) and TOKEN not in str(error)
    return error


async def test_fake_answers_with_the_token(fake_client):
    run = await fake_client.run("abc")
    assert isinstance(run, Run) and run.latest["loss"].step == 7
    assert run.start_time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert run_duration(run, run.start_time + timedelta(minutes=3)) == timedelta(minutes=3)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(fake, fake_client, status):
    fake.faults.fail_next(status, body={"error_code": "INTERNAL_ERROR", "message": "db locked"})
    error = await _error(fake_client.run("abc"))
    assert error.retryable and error.status == status and "db locked" in error.message


async def test_wrong_token_is_an_auth_error_without_the_token(fake):
    wrong = "wrong-" + TOKEN
    async with MlflowClient(fake.url, token=Secret(wrong)) as client:
        error = await _error(client.run("abc"))
    assert wrong not in error.message and "********" in error.message  # the server echoed it
    assert error.status == 401 and not error.retryable and "credentials" in error.message


async def test_basic_auth_is_sent(fake):
    import base64

    fake.token = "unused"
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.headers["authorization"])

    async with MlflowClient(fake.url, basic=("op", Secret(TOKEN)), event_hooks={"request": [record]}) as client:
        error = await _error(client.run("abc"))
    assert error.status == 401
    assert seen == ["Basic " + base64.b64encode(f"op:{TOKEN}".encode()).decode()]


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b'{"run": ', b"[1, 2]", b'{"run": "nope"}'])
async def test_malformed_json_is_one_retryable_error(fake, fake_client, body):
    fake.raw_body = body
    error = await _error(fake_client.run("abc"))
    assert error.retryable


async def test_dropped_connection_is_retryable(fake, fake_client):
    fake.faults.drop_next()
    error = await _error(fake_client.run("abc"))
    assert error.retryable and error.status is None
    assert (await fake_client.run("abc")).id == "abc"  # the next poll recovers


async def test_timeout_and_refused_are_retryable(fake, fake_client):
    fake.faults.delay_next(3.0)
    assert (await _error(fake_client.run("abc"))).retryable
    async with MlflowClient(unused_loopback_url()) as client:
        error = await _error(client.experiments())
    assert error.retryable and "cannot reach" in error.message


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        ('"NaN"', math.isnan),
        ("NaN", math.isnan),  # a bare token, as Python's json writes it
        ('"Infinity"', lambda v: v == math.inf),
        ("-Infinity", lambda v: v == -math.inf),
        ("1.7976931348623157e308", lambda v: v == math.inf),  # MLflow's SQL store keeps inf so
        ('"garbage"', math.isnan),
        ("null", math.isnan),
    ],
)
async def test_nan_and_infinity_on_the_wire(fake, fake_client, raw, check):
    fake.raw_body = json.dumps(_run_json(0.0)).replace('"value": 0.0', f'"value": {raw}').encode()
    assert check((await fake_client.run("abc")).latest["loss"].value)


async def test_a_server_restart_mid_tail_is_a_retryable_error_then_the_tail_goes_on(server, wire_client, script):
    """The server goes away between two polls and comes back on the same store: the poll in
    between fails (retryable, the tab shows the last data as stale), and the next one brings
    exactly the points logged meanwhile, none lost and none twice."""
    client, _ = wire_client
    run_id = await script.run(await script.experiment(), "restarted")
    await script.log(run_id, "loss", range(5))
    tail = RunTail(client, run_id)
    assert [p.step for p in (await tail.poll()).metrics["loss"].points] == list(range(5))

    await asyncio.to_thread(server.stop)
    with pytest.raises(MlflowError) as caught:
        await tail.poll()
    assert caught.value.retryable

    await asyncio.to_thread(server.start)
    await script.log(run_id, "loss", range(5, 8))
    update = await tail.poll()
    assert [p.step for p in update.metrics["loss"].points] == [5, 6, 7]
    assert not update.done and update.run.status == "RUNNING"
