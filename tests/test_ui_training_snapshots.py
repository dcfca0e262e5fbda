"""Pictures of the Training tab (snapshots/test_ui_training_snapshots/, 80x24): the runs list,
a live chart with the GPU beneath it, two runs compared, and the stale state.

The pane reads a real TrainingWatch against the demo's FakeMlflow, whose clock stands still
unless the test moves it (tests/training_helpers.py): every picture is the same on every run.
"""

from __future__ import annotations

from tests.training_helpers import training_app

from aiconsole.domain.power import PowerState
from aiconsole.ui.widgets.metric_chart import MetricChart
from ui_helpers import wait_until

SIZE = (80, 24)
RUNNING = {"training": PowerState.RUNNING}


def _more_runs(app) -> None:
    """A failed and a killed run beside the demo's two, so the list shows every status."""
    now = app.clock()
    failed = app.fake.add_run(
        "lora-r32-oom", lora_r=32, steps=900, step_every_s=4.0, start_s=now - 7 * 3600, running=False
    )
    failed.end_status = "FAILED"
    killed = app.fake.add_run("qlora-r8", lora_r=8, steps=600, step_every_s=3.0, start_s=now - 9 * 3600, running=False)
    killed.end_status = "KILLED"


async def _points_in(pilot, app, series: int = 1) -> None:
    chart = app.pane.query_one(MetricChart)
    await wait_until(pilot, lambda: len(chart.series) == series and all(len(s.xs) for s in chart.series),
                     what=f"{series} series charted")  # fmt: skip
    await pilot.pause(0.6)  # a tick of the list after the last poll


def test_the_runs_list_with_every_status(snap_compare) -> None:
    app = training_app()
    _more_runs(app)

    async def run_before(pilot) -> None:
        await _points_in(pilot, app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_live_chart_against_time_with_the_gpu_beneath(snap_compare) -> None:
    app = training_app()

    async def run_before(pilot) -> None:
        await _points_in(pilot, app)
        await app.move_on(60.0)  # thirty more steps come in
        chart = app.pane.query_one(MetricChart)
        await wait_until(pilot, lambda: len(chart.series[0].xs) == 330, what="the new points")
        await pilot.press("t")
        await pilot.pause(0.6)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_two_runs_compared_on_one_chart(snap_compare) -> None:
    app = training_app()

    async def run_before(pilot) -> None:
        await _points_in(pilot, app)
        await pilot.press("down", "c", "up")
        await _points_in(pilot, app, series=2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_stale_state_when_mlflow_stops_answering(snap_compare) -> None:
    app = training_app()

    async def run_before(pilot) -> None:
        await _points_in(pilot, app)
        app.fake.faults.fail_next(503, times=1000)
        app.clock.now += 50.0
        await app.watch.read_all(RUNNING)
        await wait_until(pilot, lambda: app.pane.cache and all(p.error for p in app.pane.cache.values()),
                         what="the tail failing")  # fmt: skip
        await pilot.pause(0.6)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
