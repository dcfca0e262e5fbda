"""domain/training.py: what is said about runs, filters, staleness and the stop check (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiconsole.domain.mlflow import FINISHED, RUNNING, MetricPoint, Run
from aiconsole.domain.training import (
    ServerRuns,
    StopCheck,
    TrackingServer,
    activity_detail,
    filter_runs,
    is_quiet,
    next_status_filter,
    run_label,
    running_note,
    with_error,
    with_runs,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SERVER = TrackingServer("training", "mlflow")


def run(name: str, status: str = RUNNING, *, last_metric_ago: float | None = 5.0, started_ago: float = 600.0) -> Run:
    latest = {}
    if last_metric_ago is not None:
        latest["loss"] = MetricPoint("loss", 0.5, 10, NOW - timedelta(seconds=last_metric_ago))
    return Run(name + "-id", name, "1", status, start_time=NOW - timedelta(seconds=started_ago), latest=latest)


def test_a_running_run_says_how_long_since_its_last_metric_and_warns_when_quiet() -> None:
    assert running_note(run("a", last_metric_ago=12), NOW) == "last metric 12s ago"
    assert running_note(run("a", last_metric_ago=None), NOW) == "no metric logged yet"
    quiet = run("a", last_metric_ago=11 * 60)
    assert is_quiet(quiet, NOW)
    assert running_note(quiet, NOW) == "last metric 11m 00s ago — a run killed without ending stays RUNNING in MLflow"
    assert not is_quiet(run("b", FINISHED, last_metric_ago=3600), NOW), "only a RUNNING run can be a dead one"


def test_activity_detail_names_the_runs() -> None:
    assert activity_detail([run("lora-r16")]) == "MLflow run lora-r16 RUNNING"
    many = [run(f"r{i}") for i in range(5)]
    assert activity_detail(many) == "MLflow runs r0, r1, r2 and 2 more RUNNING"
    assert activity_detail([run("\x1b[31m[b]x[/b]")]) == "MLflow run [b]x[/b] RUNNING"


def test_filters_by_status_and_name_and_cycles_statuses() -> None:
    runs = [run("lora-r16"), run("lora-r8", FINISHED), run("QLoRA-r4", FINISHED)]
    assert [r.name for r in filter_runs(runs, RUNNING)] == ["lora-r16"]
    assert [r.name for r in filter_runs(runs, "all", "lora-r")] == ["lora-r16", "lora-r8", "QLoRA-r4"]
    assert [r.name for r in filter_runs(runs, FINISHED, "qlora")] == ["QLoRA-r4"]
    seen = ["all"]
    for _ in range(5):
        seen.append(next_status_filter(seen[-1]))
    assert seen == ["all", "RUNNING", "FINISHED", "FAILED", "KILLED", "all"]


def test_runs_come_running_first_and_a_failed_reading_keeps_them_stale() -> None:
    fresh = with_runs(ServerRuns(SERVER), [], [run("done", FINISHED), run("going")], NOW)
    assert [r.name for r in fresh.runs] == ["going", "done"] and not fresh.is_stale(NOW, 45)
    assert fresh.is_stale(NOW + timedelta(seconds=46), 45), "too old is stale even without an error"
    failed = with_error(fresh, "HTTP 503")
    assert failed.runs == fresh.runs and failed.is_stale(NOW, 45) and failed.running == (fresh.runs[0],)
    assert not ServerRuns(SERVER).is_stale(NOW, 45), "nothing shown, nothing to mistake for fresh"


def test_the_stop_check_is_clear_only_with_nothing_going_and_everything_asked() -> None:
    assert StopCheck("training").clear
    going = StopCheck("training", running=((SERVER, run("lora-r16")),))
    assert not going.clear and going.run_names == ["lora-r16"]
    assert going.warnings(NOW) == ["MLflow run lora-r16 is RUNNING on training (mlflow; last metric 5s ago)"]
    unreadable = StopCheck("training", unreadable=((SERVER, "HTTP 503"),))
    assert not unreadable.clear
    assert unreadable.warnings(NOW) == [
        "MLflow on training/mlflow could not be checked (HTTP 503): a run may still be going"
    ]
    failed = StopCheck("training", failed="timeout")
    assert not failed.clear and failed.warnings(NOW) == ["what runs on training could not be checked (timeout)"]


def test_a_run_without_a_name_is_shown_by_its_id() -> None:
    nameless = Run("0123456789abcdef0123", "", "1", RUNNING)
    assert run_label(nameless) == "0123456789ab"
