"""Idle time from activity signals, with explicit clocks. Unknown never counts as idle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aiconsole.domain.idle import UNKNOWN_ACTIVITY_REASON, ActivityKind, ActivitySignal, idle_status
from aiconsole.domain.power import PowerState

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
RUNNING = PowerState.RUNNING


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def signal(kind: str, minutes_ago: float, detail: str = "", ongoing: bool = False) -> ActivitySignal:
    return ActivitySignal("inference", kind, ago(minutes_ago), detail, ongoing)


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


def test_ongoing_signal_holds_the_vm_busy() -> None:
    signals = [signal("power", 50, "started"), signal("chat", 40, "llama3.1:8b", ongoing=True)]
    status = idle_status(signals, RUNNING, 30, NOW)
    assert status.idle_seconds == 0
    assert status.remaining_seconds is None
    assert status.busy_reasons == ("chat: llama3.1:8b",)


def test_unreadable_signal_counts_as_busy_never_idle() -> None:
    signals = [signal("power", 50, "started"), signal(ActivityKind.UNREADABLE, 45, "gpu: ssh timeout")]
    status = idle_status(signals, RUNNING, 30, NOW)
    assert status.idle_seconds == 0 and status.remaining_seconds is None
    assert status.busy_reasons == ("unreadable: gpu: ssh timeout",)


def test_every_busy_reason_is_listed() -> None:
    signals = [signal("pull", 2, "mistral:7b", ongoing=True), signal("chat", 1, ongoing=True)]
    assert idle_status(signals, RUNNING, 30, NOW).busy_reasons == ("pull: mistral:7b", "chat")


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
        idle_status([], RUNNING, 30, datetime(2026, 5, 4, 12))
