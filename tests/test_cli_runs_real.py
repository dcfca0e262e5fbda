"""`aiconsole runs list|tail` against the real `mlflow server` (the session's `mlflow_real`).

A script logs through MLflow's REST API (tests/mlflow_script.py) while `main()` tails the
run in a worker thread: the points logged appear as lines, a restart of the server in the
middle is ridden out (none lost, none twice), and ending the run ends the tail with 0.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mlflow_script import Script
from test_cli_runs import Cli, until, write_config


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}


@pytest.fixture
async def script(mlflow_real):
    script = Script(mlflow_real.url)
    yield script
    await script.aclose()


@pytest.fixture
def cli(monkeypatch, env, tmp_path, mlflow_real) -> Cli:
    return Cli(monkeypatch, env, write_config(tmp_path, {"gpu": mlflow_real.url}))


async def listed(cli: Cli, run_id: str) -> dict:
    assert await cli("runs", "list", "gpu", "--json") == 0, cli.err.getvalue()
    return next(run for run in json.loads(cli.out.getvalue())["runs"] if run["id"] == run_id)


async def test_tail_shows_points_as_they_are_logged_and_stops_when_the_run_ends(cli, script) -> None:
    run_id = await script.run(await script.experiment(), "lora-real", lr="2e-4")
    await script.log(run_id, "loss", range(5))
    run = await listed(cli, run_id)
    assert run["status"] == "RUNNING" and run["end_time"] is None and run["params"] == {"lr": "2e-4"}
    assert run["metrics"]["loss"]["step"] == 4 and run["metrics"]["loss"]["value"] == pytest.approx(0.2)

    tail = cli.start("runs", "tail", run_id, "-n", "3", "--interval", "0.1")
    try:
        await until(lambda: cli.steps("loss") == [2, 3, 4], "the last 3 points")
        await script.log(run_id, "loss", range(5, 8))
        await script.log(run_id, "grad_norm", range(2), value=lambda step: "NaN" if step else 2.5)
        await until(lambda: cli.steps("loss")[-1:] == [7], "the points logged since")
        await until(lambda: len(cli.steps("grad_norm")) == 2, "a new metric")
        await script.end(run_id)
        assert await asyncio.wait_for(tail, 20) == 0, cli.err.getvalue()
    finally:
        await _stop(tail, script, run_id)
    assert cli.steps("loss") == list(range(2, 8))
    values = {(step, key): value for step, key, value in cli.points()}
    assert values[(7, "loss")] == repr(1.0 / 8) and values[(1, "grad_norm")] == "NaN"
    assert cli.err.getvalue().splitlines()[-1] == "run lora-real ended: FINISHED"

    run = await listed(cli, run_id)
    assert run["status"] == "FINISHED" and run["end_time"] and run["duration_s"] is not None
    assert run["metrics"]["grad_norm"] == {**run["metrics"]["grad_norm"], "value": None, "value_text": "NaN"}


@pytest.mark.slow  # the restart: mlflow takes ~8 s to start
async def test_a_server_restart_mid_tail_loses_and_doubles_nothing(cli, script, mlflow_real) -> None:
    run_id = await script.run(await script.experiment(), "restarted")
    await script.log(run_id, "loss", range(3))
    tail = cli.start("runs", "tail", run_id, "--interval", "0.1")
    try:
        await until(lambda: cli.steps("loss") == [0, 1, 2], "the points before")
        await asyncio.to_thread(mlflow_real.stop)
        await until(lambda: "MLflow unreachable, retrying" in cli.err.getvalue(), "a failed poll")
        await asyncio.to_thread(mlflow_real.start)  # same port, same store
        await script.log(run_id, "loss", range(3, 6))
        await until(lambda: cli.steps("loss")[-1:] == [5], "the points after the restart", timeout=40)
        await script.end(run_id, "KILLED")
        assert await asyncio.wait_for(tail, 40) == 1  # KILLED: not a success
    finally:
        await _stop(tail, script, run_id)
    assert cli.steps("loss") == list(range(6))
    err = cli.err.getvalue()
    assert "MLflow answering again" in err and err.splitlines()[-1] == "run restarted ended: KILLED"


async def _stop(tail: asyncio.Task[int], script: Script, run_id: str) -> None:
    """A test that failed mid-tail: end the run so the tail (in its thread) ends too."""
    if not tail.done():
        await script.end(run_id, "KILLED")
        await asyncio.wait([tail], timeout=30)
