"""FakeMlflow against the real MlflowClient, MetricTail and RunTail over loopback HTTP.

The fake plays the MLflow server the client was tested against (tests/test_mlflow_client.py
runs the same client against the real `mlflow server`); a fake clock moves the running
run on, and an httpx event hook counts what each poll costs.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aiconsole.demo.mlflow_api import EXPERIMENT, FakeMlflow, page_token, wire_value
from aiconsole.domain.mlflow import FINISHED, RUNNING, run_duration, sort_runs
from aiconsole.services.mlflow_client import MetricTail, MlflowClient, MlflowError, RunTail
from mlflow_wire import Wire
from providers_conftest import FakeClock

NOW = 1_795_000_000.0
"""2026-11-18 11:06:40 UTC."""
API = "/api/2.0/mlflow"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def fake(clock):
    async with FakeMlflow(clock=clock, step_every_s=2.0, running_for_s=600.0) as server:
        yield server


@pytest.fixture
async def wired(fake):
    wire = Wire()
    async with MlflowClient(fake.url, event_hooks={"response": [wire.hook]}) as client:
        yield client, wire


async def test_experiments_and_runs_running_first_with_params_tags_and_latest(fake, wired):
    client, wire = wired
    experiments = await client.experiments()
    assert {e.name for e in experiments} == {"Default", EXPERIMENT}
    eid = next(e.id for e in experiments if e.name == EXPERIMENT)

    runs = sort_runs(await client.runs([eid]))
    assert [(r.name, r.status) for r in runs] == [("lora-r16", RUNNING), ("lora-r8", FINISHED)]
    live, done = runs
    assert live.user == "operator" and live.end_time is None
    assert live.start_time == datetime.fromtimestamp(NOW - 600, UTC)
    assert live.params["lora_r"] == "16" and done.params["lora_r"] == "8"
    assert {"base_model", "lora_alpha", "learning_rate", "epochs", "dataset"} <= set(done.params)
    assert done.tags["mlflow.runName"] == "lora-r8" and done.tags["mlflow.user"] == "operator"
    assert set(done.latest) == {"train_loss", "eval_loss", "perplexity", "learning_rate", "gpu_mem_gb"}
    assert done.latest["train_loss"].step == 1200 and live.latest["train_loss"].step == 300
    assert live.latest["eval_loss"].step == 300 and live.latest["perplexity"].value == pytest.approx(
        math.exp(live.latest["eval_loss"].value), rel=1e-5
    )
    assert run_duration(done, datetime.fromtimestamp(NOW, UTC)) == timedelta(seconds=1200 * 6 + 45)
    assert run_duration(live, datetime.fromtimestamp(NOW, UTC)) == timedelta(minutes=10)

    wire.take()
    paged = await client.runs([eid], page_size=1)  # one run per page: the client follows the token
    assert [r.id for r in paged] == [live.id, done.id]  # start_time DESC
    assert [call.path for call in wire.take()] == ["runs/search"] * 2
    assert await client.runs(["0"]) == []  # the Default experiment is empty


async def test_finished_run_has_plausible_seeded_curves(fake, wired):
    client, _ = wired
    loss = await client.history(fake.finished.run_id, "train_loss", page_size=500)
    assert [p.step for p in loss] == list(range(1, 1201))
    assert all(a.timestamp < b.timestamp for a, b in itertools.pairwise(loss))
    head = sum(p.value for p in loss[:50]) / 50
    tail = sum(p.value for p in loss[-50:]) / 50
    assert head > 1.5 * tail and 0.7 < tail < 1.1
    assert any(b.value > a.value for a, b in itertools.pairwise(loss))  # noisy, not a smooth line
    evals = await client.history(fake.finished.run_id, "eval_loss")
    assert [p.step for p in evals] == list(range(25, 1201, 25))
    lr = [p.value for p in await client.history(fake.finished.run_id, "learning_rate")]
    peak = lr.index(max(lr))
    assert 0 < peak < 100 and lr[-1] < lr[peak] / 100  # warm-up, then a cosine to ~0
    memory = [p.value for p in await client.history(fake.finished.run_id, "gpu_mem_gb")]
    assert 17 < min(memory) and max(memory) < 19

    async with FakeMlflow(clock=FakeClock(NOW)) as again, MlflowClient(again.url) as other:
        assert await other.history(again.finished.run_id, "train_loss") == loss


async def test_metric_tail_gets_new_points_as_time_passes_asking_only_for_them(fake, wired, clock):
    client, wire = wired
    tail = MetricTail(client, fake.running.run_id, "train_loss", page_size=128)

    first = await tail.poll()
    assert [p.step for p in first.points] == list(range(1, 301))
    assert [call.points for call in wire.take()] == [128, 128, 44]  # the first load pages through

    assert (await tail.poll()).points == ()
    (call,) = wire.take()  # one request, for the page not yet full, not the whole history
    assert call.params["page_token"] and call.points == 44

    clock.now += 3 * 2.0
    assert [p.step for p in (await tail.poll()).points] == [301, 302, 303]
    assert [call.points for call in wire.take()] == [47]

    clock.now += 90 * 2.0  # the page fills up: the tail moves on to the next one
    assert [p.step for p in (await tail.poll()).points] == list(range(304, 394))
    assert [call.points for call in wire.take()] == [128, 9]

    clock.now += 1.0  # half a step: nothing yet
    assert (await tail.poll()).points == ()
    clock.now += 1.0
    assert [p.step for p in (await tail.poll()).points] == [394]
    assert sum(call.points for call in wire.take()) == 9 + 10


async def test_run_tail_follows_the_running_run_until_it_finishes(fake, wired, clock):
    client, wire = wired
    tail = RunTail(client, fake.running.run_id)

    update = await tail.poll()
    assert {k: len(u.points) for k, u in update.metrics.items()} == {
        "train_loss": 300, "learning_rate": 300, "gpu_mem_gb": 300, "eval_loss": 12, "perplexity": 12,
    }  # fmt: skip
    assert not update.done and update.run.is_running
    wire.take()

    clock.now += 2.0  # step 301: the per-step metrics move, the eval ones do not
    update = await tail.poll()
    assert {k: [p.step for p in u.points] for k, u in update.metrics.items()} == {
        "train_loss": [301],
        "learning_rate": [301],
        "gpu_mem_gb": [301],
    }
    assert sorted(call.path for call in wire.take()) == ["metrics/get-history"] * 3 + ["runs/get"]

    assert (await tail.poll()).metrics == {}
    assert [call.path for call in wire.take()] == ["runs/get"]  # nothing moved: no history asked

    clock.now += 24 * 2.0  # step 325: an eval
    update = await tail.poll()
    assert [p.step for p in update.metrics["eval_loss"].points] == [325]
    assert len(update.metrics["train_loss"].points) == 24
    wire.take()

    clock.now += 2.0
    fake.finish_running()
    update = await tail.poll()
    assert update.done and update.run.status == FINISHED
    assert update.run.end_time == datetime.fromtimestamp(clock.now, UTC)
    assert [p.step for p in update.metrics["train_loss"].points] == [326]
    wire.take()
    clock.now += 600.0  # a finished run logs nothing more and is not polled again
    assert (await tail.poll()).done
    assert wire.take() == []
    assert len(await client.history(fake.running.run_id, "train_loss")) == 326


async def test_finished_run_is_done_on_the_first_poll(fake, wired, clock):
    client, wire = wired
    tail = RunTail(client, fake.finished.run_id, ["train_loss"])
    update = await tail.poll()
    assert update.done and len(update.metrics["train_loss"].points) == 1200
    wire.take()
    clock.now += 60.0
    assert (await tail.poll()).done and wire.take() == []


async def test_a_running_run_ends_by_itself_at_its_last_step(fake, wired, clock):
    client, _ = wired
    short = fake.add_run("lora-r4", lora_r=4, steps=10, start_s=NOW)
    clock.now += 9 * 2.0
    assert (await client.run(short.run_id)).status == RUNNING
    clock.now += 2.0
    run = await client.run(short.run_id)
    assert run.status == FINISHED and run.end_time == datetime.fromtimestamp(NOW + 20, UTC)
    assert run.latest["train_loss"].step == 10


async def test_search_filter_and_order(fake, wired):
    client, _ = wired
    eid = fake.experiment_id
    running = await client.runs([eid], filter="attributes.status = 'RUNNING'")
    assert [r.name for r in running] == ["lora-r16"]
    named = await client.runs([eid], filter="tags.mlflow.runName LIKE 'lora-r%' AND params.lora_r != '16'")
    assert [r.name for r in named] == ["lora-r8"]
    oldest_first = await client.runs([eid], order_by=["attributes.start_time ASC"])
    assert [r.name for r in oldest_first] == ["lora-r8", "lora-r16"]
    by_loss = await client.runs([eid], order_by=["metrics.train_loss ASC"])
    assert by_loss[0].latest["train_loss"].value <= by_loss[1].latest["train_loss"].value
    with pytest.raises(MlflowError) as caught:
        await client.runs([eid], filter="status ~ 'x'")
    assert caught.value.status == 400 and not caught.value.retryable
    assert "INVALID_PARAMETER_VALUE" in caught.value.message


async def test_unknown_run_is_404_not_retryable(fake, wired):
    client, _ = wired
    for call in (client.run("0" * 32), client.history_page("0" * 32, "train_loss")):
        with pytest.raises(MlflowError) as caught:
            await call
        assert caught.value.status == 404 and not caught.value.retryable
        assert "RESOURCE_DOES_NOT_EXIST" in caught.value.message
    assert await client.history(fake.running.run_id, "no_such_metric") == []


async def test_errors_and_wire_format_as_mlflow_sends_them(fake):
    async with httpx.AsyncClient(base_url=fake.url) as http:
        health = await http.get("/health")
        assert health.status_code == 200 and health.text == "OK"

        answer = await http.get(f"{API}/runs/get", params={"run_id": fake.running.run_id})
        assert answer.headers["content-type"] == "application/json"
        assert answer.text.startswith('{\n  "run"')  # pretty-printed, as MLflow's server writes it
        info = answer.json()["run"]["info"]
        assert info["start_time"] == int((NOW - 600) * 1000) and "end_time" not in info

        missing = await http.get(f"{API}/runs/get", params={"run_id": "nope"})
        assert missing.status_code == 404
        assert missing.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run with id=nope not found"}
        for params in ({"run_id": fake.running.run_id}, {"metric_key": "train_loss"},
                       {"run_id": fake.running.run_id, "metric_key": "train_loss", "max_results": "10",
                        "page_token": "not a token"}):  # fmt: skip
            bad = await http.get(f"{API}/metrics/get-history", params=params)
            assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        too_many = await http.post(f"{API}/runs/search", json={"experiment_ids": ["1"], "max_results": 50_001})
        assert too_many.status_code == 400

        # A token is given only when rows exist past the page, and it is the offset in base64 JSON.
        params = {"run_id": fake.finished.run_id, "metric_key": "train_loss", "max_results": "600"}
        page = (await http.get(f"{API}/metrics/get-history", params=params)).json()
        assert page["next_page_token"] == page_token(600)
        last = (await http.get(f"{API}/metrics/get-history", params=params | {"page_token": page_token(600)})).json()
        assert len(last["metrics"]) == 600 and "next_page_token" not in last
        searched = (await http.get(f"{API}/experiments/search", params={"max_results": "1"})).json()
        assert len(searched["experiments"]) == 1 and searched["next_page_token"]

    assert json.dumps([wire_value(math.nan), wire_value(-math.inf)]) == '["NaN", -1.7976931348623157e+308]'


async def test_faults_reach_the_client_as_retryable(fake, wired):
    client, _ = wired
    fake.faults.fail_next(503)
    with pytest.raises(MlflowError) as caught:
        await client.run(fake.running.run_id)
    assert caught.value.retryable and caught.value.status == 503
    assert (await client.run(fake.running.run_id)).is_running


async def test_a_metric_tail_failing_between_two_pages_keeps_its_place(fake, wired, clock):
    """Page 1 answers, page 2 fails: the next poll brings both pages' points, none twice."""
    client, _ = wired
    tail = MetricTail(client, fake.running.run_id, "train_loss", page_size=100)
    first = await tail.poll()
    seen = [p.step for p in first.points]
    clock.now += 2.0 * 150  # 150 more steps: the tail's page fills and one more page starts
    fake.faults.delay_next(0)  # the re-read of the tail's page answers
    fake.faults.fail_next(503)  # the next page does not
    with pytest.raises(MlflowError):
        await tail.poll()
    update = await tail.poll()
    steps = seen + [p.step for p in update.points]
    assert steps == list(range(1, steps[-1] + 1)) and len(update.points) == 150
