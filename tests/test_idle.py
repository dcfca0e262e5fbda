"""Idle time from activity signals, with explicit clocks. Unknown never counts as idle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aiconsole.domain.idle import UNKNOWN_ACTIVITY_REASON, ActivitySignal, idle_status
from aiconsole.domain.power import PowerState

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
RUNNING = PowerState.RUNNING


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def signal(
    kind: str, minutes_ago: float, detail: str = "", lease_min: float | None = None, unknown: bool = False
) -> ActivitySignal:
    """A signal `minutes_ago`, holding the VM busy for `lease_min` minutes from then."""
    until = None if lease_min is None else ago(minutes_ago - lease_min)
    return ActivitySignal("inference", kind, ago(minutes_ago), detail, until, unknown)


@pytest.mark.parametrize(
    "power",
    [PowerState.STOPPED, PowerState.STARTING, PowerState.STOPPING, PowerState.UNKNOWN, PowerState.ERROR],
)
def test_idleness_applies_only_while_running(power: PowerState) -> None:
    status = idle_status([signal("operator", 90, "start")], power, 30, NOW, running_since=ago(120))
    assert status.idle_seconds is None and status.remaining_seconds is None
    assert status.busy_reasons == ()
    assert status.last_activity == "operator: start"


def test_no_signal_counts_from_the_start_of_the_running_interval() -> None:
    status = idle_status([], RUNNING, 30, NOW, running_since=ago(10))
    assert status.idle_seconds == 600
    assert status.remaining_seconds == 20 * 60
    assert status.last_activity == ""


def test_no_signal_and_no_running_start_is_unknown_so_busy() -> None:
    status = idle_status([], RUNNING, 30, NOW)
    assert status.idle_seconds is None and status.remaining_seconds is None
    assert status.busy_reasons == (UNKNOWN_ACTIVITY_REASON,)


def test_latest_signal_wins_whatever_the_order() -> None:
    signals = [
        signal("operator", 5, "refresh"),
        signal("power", 25, "started"),
        signal("operator", 26, "start"),
    ]
    status = idle_status(signals, RUNNING, 30, NOW, running_since=ago(25))
    assert status.idle_seconds == 5 * 60
    assert status.remaining_seconds == 25 * 60
    assert status.last_activity == "operator: refresh"


def test_a_signal_older_than_the_current_run_does_not_make_it_idle() -> None:
    # Last chat yesterday, VM started 3 minutes ago outside the console: 3 minutes idle, not a day.
    status = idle_status([signal("chat", 24 * 60)], RUNNING, 30, NOW, running_since=ago(3))
    assert status.idle_seconds == 180
    assert status.last_activity == "chat"


def test_remaining_never_negative() -> None:
    status = idle_status([signal("power", 45, "started")], RUNNING, 30, NOW)
    assert status.idle_seconds == 45 * 60
    assert status.remaining_seconds == 0


def test_fractional_idle_stop_minutes() -> None:
    status = idle_status([signal("operator", 0.25, "start")], RUNNING, 0.5, NOW)
    assert status.idle_seconds == 15
    assert status.remaining_seconds == 15


def test_no_idle_stop_still_reports_idle_time() -> None:
    status = idle_status([signal("operator", 7, "start")], RUNNING, None, NOW)
    assert status.idle_seconds == 7 * 60
    assert status.remaining_seconds is None


def test_a_lease_holds_the_vm_busy_while_it_runs() -> None:
    signals = [signal("power", 50, "started"), signal("chat", 0.5, "chat stream", lease_min=1)]
    status = idle_status(signals, RUNNING, 30, NOW)
    assert status.idle_seconds == 0
    assert status.remaining_seconds is None
    assert status.busy_reasons == ("chat stream",) and status.unknown_reasons == ()


def test_a_lapsed_lease_counts_idle_from_its_end() -> None:
    # A RUNNING run last renewed 12 minutes ago for 2 minutes: its source stopped renewing
    # (the run ended, or the console reading it went away): idle for 10 minutes.
    signals = [signal("power", 50, "started"), signal("mlflow", 12, "MLflow run lora-r16 RUNNING", lease_min=2)]
    status = idle_status(signals, RUNNING, 30, NOW)
    assert status.busy_reasons == ()
    assert status.idle_seconds == 10 * 60 and status.remaining_seconds == 20 * 60
    assert status.last_activity == "mlflow: MLflow run lora-r16 RUNNING"


def test_a_keep_alive_ending_later_holds_until_then() -> None:
    keep_alive = ActivitySignal("inference", "ollama", ago(4), "llama3.1:8b loaded", until=NOW + timedelta(minutes=1))
    assert idle_status([keep_alive], RUNNING, 30, NOW).busy_reasons == ("llama3.1:8b loaded",)
    later = NOW + timedelta(minutes=3)
    status = idle_status([keep_alive], RUNNING, 30, later)
    assert status.busy_reasons == () and status.idle_seconds == 2 * 60


def test_unreadable_signal_counts_as_busy_never_idle() -> None:
    signals = [signal("power", 50, "started"), signal("gpu", 45, "GPU telemetry stale", unknown=True)]
    status = idle_status(signals, RUNNING, 30, NOW)
    assert status.idle_seconds == 0 and status.remaining_seconds is None
    assert status.busy_reasons == ("GPU telemetry stale",)
    assert status.unknown_reasons == ("GPU telemetry stale",)


def test_an_unreadable_lease_lapses_like_any_other() -> None:
    # The source that could not read stopped reporting: it holds no longer, but the time it
    # was unknown is not counted as idle.
    signals = [signal("power", 50, "started"), signal("ssh", 10, "SSH down", lease_min=1, unknown=True)]
    status = idle_status(signals, RUNNING, 30, NOW)
    assert status.busy_reasons == () and status.idle_seconds == 9 * 60


def test_every_busy_reason_is_listed_the_unknown_last() -> None:
    signals = [
        signal("mlflow", 1, "MLflow unreachable", lease_min=2, unknown=True),
        signal("pull", 2, "pulling mistral:7b", lease_min=3),
        signal("ssh", 1, "2 SSH sessions", lease_min=2),
    ]
    status = idle_status(signals, RUNNING, 30, NOW)
    assert status.busy_reasons == ("pulling mistral:7b", "2 SSH sessions", "MLflow unreachable")
    assert status.unknown_reasons == ("MLflow unreachable",)


def test_signal_from_a_clock_ahead_counts_as_just_now() -> None:
    status = idle_status([signal("operator", -2, "start")], RUNNING, 30, NOW)
    assert status.idle_seconds == 0 and status.remaining_seconds == 30 * 60


def test_idle_time_across_the_autumn_dst_hour_is_real_elapsed_time() -> None:
    paris = ZoneInfo("Europe/Paris")
    before = datetime(2026, 10, 25, 2, 30, tzinfo=paris, fold=0)  # CEST
    after = datetime(2026, 10, 25, 2, 30, tzinfo=paris, fold=1)  # CET, one hour later
    status = idle_status([ActivitySignal("inference", "operator", before)], RUNNING, 90, after)
    assert status.idle_seconds == 3600
    assert status.remaining_seconds == 30 * 60


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ActivitySignal("inference", "operator", datetime(2026, 5, 4, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        ActivitySignal("inference", "chat", NOW, until=datetime(2026, 5, 4, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        idle_status([], RUNNING, 30, datetime(2026, 5, 4, 12))
