"""The Training tab (tests/training_helpers.py: the pane fed by a real TrainingWatch against the
demo's FakeMlflow on loopback, on a clock the test moves)."""

from __future__ import annotations

from tests.training_helpers import training_app

from aiconsole.demo import mlflow_api
from aiconsole.domain.power import PowerState
from aiconsole.ui.widgets.metric_chart import MetricChart
from ui_helpers import has_control_chars, screen_text, wait_until

HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b[31m[b]bold[/b] \u202eevil"
HOSTILE_SHOWN = "[b]bold[/b] evil"
RUNNING = {"training": PowerState.RUNNING}


def chart(app) -> MetricChart:
    return app.pane.query_one(MetricChart)


async def loaded(pilot, app) -> None:
    """The list is drawn and the shown run's points have come."""
    await wait_until(pilot, lambda: any(p.tracks for p in app.pane.cache.values()), what="the first points")
    await pilot.pause(0.3)


def run_lines(app) -> list[str]:
    return [line for line in screen_text(app).splitlines() if line[:1] in "●✓✗■"]


async def test_runs_running_first_and_the_shown_run_charted_with_min_max_last(tmp_path) -> None:
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        text = screen_text(app)
        assert [line.split()[1] for line in run_lines(app)] == ["lora-r16", "lora-r8"]
        assert "lora-r16 ● RUNNING 10m 00s · operator" in text
        assert "training/mlflow · last metric 0s ago" in text
        assert "train_loss" in text and "■ lora-r16 min" in text and " last " in text
        assert [s.label for s in chart(app).series] == ["lora-r16"]


async def test_new_points_appear_as_the_run_goes_on(tmp_path) -> None:
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        before = len(chart(app).series[0].xs)
        app.clock.now += 20.0  # ten more steps
        await wait_until(pilot, lambda: len(chart(app).series[0].xs) == before + 10, what="ten new points")
        assert chart(app).series[0].xs[-1] == 310.0


async def test_a_finished_run_stops_being_tailed(tmp_path) -> None:
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        app.fake.finish_running()
        await app.watch.read_all(RUNNING)
        await wait_until(
            pilot, lambda: not any(w.group == "training-tail" and w.is_running for w in app.pane.workers),
            timeout=5, what="the tail to end",
        )  # fmt: skip
        await wait_until(pilot, lambda: "FINISHED" in screen_text(app), what="the run shown finished")


async def test_filters_by_status_and_by_name(tmp_path) -> None:
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("f")  # RUNNING
        await pilot.pause(0.2)
        assert [line.split()[1] for line in run_lines(app)] == ["lora-r16"]
        assert "status: RUNNING" in screen_text(app)
        await pilot.press("f")  # FINISHED
        await pilot.pause(0.2)
        assert [line.split()[1] for line in run_lines(app)] == ["lora-r8"]
        for _ in range(3):  # FAILED, KILLED, all
            await pilot.press("f")
        await pilot.press("slash", "r", "8")
        await pilot.pause(0.2)
        assert [line.split()[1] for line in run_lines(app)] == ["lora-r8"]
        assert "name ~ r8" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert len(run_lines(app)) == 2


async def test_two_runs_compared_on_one_chart_metrics_and_log_scale(tmp_path) -> None:
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("down", "c", "up")
        await wait_until(pilot, lambda: len(chart(app).series) == 2, what="two series")
        assert [s.label for s in chart(app).series] == ["lora-r16", "lora-r8"]
        for series in chart(app).series:  # each point once, in order (a tail per run, kept)
            assert all(a < b for a, b in zip(series.xs, series.xs[1:], strict=False))
        await pilot.press("down", "up", "down", "up")  # back and forth: nothing read twice
        await pilot.pause(0.6)
        assert [len(s.xs) for s in chart(app).series] == [300, 1200]
        assert "compared with lora-r8 (pinned" in screen_text(app)
        await pilot.press("m")
        await pilot.pause(0.2)
        assert chart(app).title == "eval_loss"
        await pilot.press("n")
        await pilot.pause(0.2)
        assert chart(app).title == "train_loss"
        await pilot.press("l")
        await pilot.pause(0.2)
        assert chart(app).log_y and chart(app).log_applied
        await pilot.press("t")
        await pilot.pause(0.2)
        assert chart(app).x_kind == "time"
        await pilot.press("down", "c")  # c on the pinned run unpins it
        await pilot.pause(0.3)
        assert len(chart(app).series) == 1


async def test_params_and_tags(tmp_path) -> None:
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        await pilot.press("p")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "params (8)" in text and "lora_r = 16" in text and "mlflow.runName = lora-r16" in text
        await pilot.press("p")
        await pilot.pause(0.2)
        assert "params (8)" not in screen_text(app)


async def test_a_failing_server_leaves_the_last_data_shown_as_stale_then_recovers(tmp_path) -> None:
    app = training_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        points = len(chart(app).series[0].xs)
        app.fake.faults.fail_next(503, times=1000)
        app.clock.now += 20.0
        await wait_until(pilot, lambda: "stale" in screen_text(app), what="the chart marked stale")
        await app.watch.read_all(RUNNING)
        await pilot.pause(0.6)
        text = screen_text(app)
        assert "training/mlflow · stale" in text and "503" in text
        assert len(chart(app).series[0].xs) == points, "the points shown stay"
        app.fake.faults.clear()
        await wait_until(pilot, lambda: len(chart(app).series[0].xs) == points + 10, what="the points logged meanwhile")
        await wait_until(pilot, lambda: "last metric" in screen_text(app), what="fresh again")


async def test_hostile_names_params_and_metric_keys_are_shown_inert(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(mlflow_api.METRICS, HOSTILE, 1)
    app = training_app()
    run = app.fake.add_run(HOSTILE, start_s=app.clock() - 30, step_every_s=2.0)
    run.params[HOSTILE] = HOSTILE
    run.tags[HOSTILE] = HOSTILE
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, app)
        await wait_until(pilot, lambda: HOSTILE_SHOWN in screen_text(app), what="the hostile run listed")
        app.pane.query_one("#runs").select(("training", "mlflow", run.run_id))
        await wait_until(pilot, lambda: app.pane.cache.get(("training", "mlflow", run.run_id)) is not None
                         and app.pane.cache[("training", "mlflow", run.run_id)].tracks, what="its points")  # fmt: skip
        for _ in range(8):  # to the hostile metric (sorted after the usual ones)
            if chart(app).title.startswith("[b]"):
                break
            await pilot.press("m")
            await pilot.pause(0.1)
        assert chart(app).title == HOSTILE_SHOWN
        text = screen_text(app)
        await pilot.press("p")
        await pilot.pause(0.3)
        text += screen_text(app)
        assert text.count(HOSTILE_SHOWN) >= 3
        assert not has_control_chars(text) and "\u202e" not in text


async def test_key_6_shows_the_tab_which_says_why_it_is_off_without_telemetry(tmp_path) -> None:
    from ui_helpers import demo_app, fleet_ready

    app = demo_app(tmp_path)  # telemetry off: no hub, so no MLflow watch either
    async with app.run_test(size=(80, 24)) as pilot:
        await fleet_ready(pilot)
        await pilot.press("6")
        await pilot.pause(0.2)
        assert app.console_tabs.active == "training"
        assert "The Training tab is off: it starts with telemetry, which is off" in screen_text(app)
        assert "t Axis" in screen_text(app).splitlines()[-1]  # its keys in the footer


async def test_the_palette_offers_the_tab_and_every_training_action(tmp_path) -> None:
    from ui_helpers import demo_app, fleet_ready

    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await fleet_ready(pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Show Training" in titles
        assert [t for t in titles if t.startswith("Training: ")] == [
            "Training: compare", "Training: next metric", "Training: log scale", "Training: steps or time",
            "Training: params and tags", "Training: status filter", "Training: filter by name", "Training: refresh",
        ]  # fmt: skip
