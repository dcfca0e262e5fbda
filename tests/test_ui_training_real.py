"""The Training tab against the real `mlflow server` (the session's `mlflow_real`): a script
logs metrics while the tab tails them; new points appear; a finished run stops being tailed;
a server restart in the middle is shown as stale and then recovered from, no point lost or
twice; a run whose metrics stopped long ago is flagged as maybe killed."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.training_helpers import RUNNING, TrainingTab, watch_on

from aiconsole.ui.widgets.metric_chart import MetricChart
from mlflow_script import Script
from ui_helpers import screen_text, wait_until


@pytest.fixture
async def script(mlflow_real):
    script = Script(mlflow_real.url)
    yield script
    await script.aclose()


def steps(app) -> list[float]:
    series = app.pane.query_one(MetricChart).series
    return list(series[0].xs) if series else []


def tailing(app) -> bool:
    return any(w.group == "training-tail" and w.is_running for w in app.pane.workers)


async def test_the_tab_tails_a_run_the_script_logs_until_it_finishes(mlflow_real, script) -> None:
    run_id = await script.run(await script.experiment(), "live-lora", lora_r="16")
    await script.log(run_id, "train_loss", range(5))
    app = TrainingTab(watch_on(mlflow_real.url), None, tail_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        app.pane.query_one("#runs").select(("training", "mlflow", run_id))
        await wait_until(pilot, lambda: steps(app) == [0, 1, 2, 3, 4], what="the first points")
        assert "live-lora ● RUNNING" in screen_text(app)

        await script.log(run_id, "train_loss", range(5, 12))
        await wait_until(pilot, lambda: steps(app) == list(range(12)), what="the points logged since")

        await script.end(run_id)
        await app.watch.read_all(RUNNING)
        await wait_until(pilot, lambda: not tailing(app), what="the tail to stop")
        await wait_until(pilot, lambda: "live-lora ✓ FINISHED" in screen_text(app), what="the run shown finished")
        await script.log(run_id, "train_loss", range(12, 14))  # MLflow takes it; the tab no longer asks
        await pilot.pause(0.5)
        assert steps(app) == list(range(12))


@pytest.mark.slow  # mlflow takes several seconds to start again
async def test_a_server_restart_mid_tail_is_stale_then_recovered(mlflow_real, script) -> None:
    run_id = await script.run(await script.experiment(), "restart-lora")
    await script.log(run_id, "train_loss", range(3))
    app = TrainingTab(watch_on(mlflow_real.url), None, tail_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        app.pane.query_one("#runs").select(("training", "mlflow", run_id))
        await wait_until(pilot, lambda: steps(app) == [0, 1, 2], what="the first points")

        await asyncio.to_thread(mlflow_real.stop)
        await wait_until(pilot, lambda: "stale" in screen_text(app), timeout=10, what="the tab saying stale")
        assert steps(app) == [0, 1, 2], "the points shown stay"

        await asyncio.to_thread(mlflow_real.start)
        await script.log(run_id, "train_loss", range(3, 6))
        await wait_until(pilot, lambda: steps(app) == list(range(6)), timeout=15, what="the points logged meanwhile")
        await wait_until(pilot, lambda: "stale" not in screen_text(app), timeout=5, what="fresh again")


async def test_a_run_quiet_for_long_is_flagged_as_maybe_killed(mlflow_real, script) -> None:
    """A script killed without ending leaves its run RUNNING: the only hint is that its last
    metric is old (logged here with timestamps of 25 minutes ago)."""
    run_id = await script.run(await script.experiment(), "oom-killed")
    script.clock = int((time.time() - 25 * 60) * 1000)
    await script.log(run_id, "train_loss", range(3))
    app = TrainingTab(watch_on(mlflow_real.url), None, tail_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:  # the caveat must show whole at 80 columns
        app.pane.query_one("#runs").select(("training", "mlflow", run_id))
        await wait_until(pilot, lambda: "killed" in screen_text(app), what="the caveat")
        text = screen_text(app)
        assert "oom-killed ● RUNNING" in text
        assert "last metric 25m" in text and "⚠ a run killed without ending stays RUNNING" in text
