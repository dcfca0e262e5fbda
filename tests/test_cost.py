"""Cost arithmetic with explicit clocks: days and months end at the operator's midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aiconsole.domain.cost import (
    PowerInterval,
    billed_seconds,
    cost_month,
    cost_this_run,
    cost_today,
    day_window,
    last_run,
    month_window,
)
from aiconsole.domain.power import PowerState

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")
RATE = 0.35
HOUR = 3600.0
S = PowerState


def paris(*parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=PARIS, fold=fold)


def interval(state: PowerState, start: datetime, end: datetime | None = None) -> PowerInterval:
    return PowerInterval("inference", state, start, end)


def run(start: datetime, end: datetime | None) -> list[PowerInterval]:
    """A stretch that was running from `start` to `end`, then stopped (or still running)."""
    intervals = [interval(S.RUNNING, start, end)]
    if end is not None:
        intervals.append(interval(S.STOPPED, end))
    return intervals


# --- windows -------------------------------------------------------------------------


def test_day_window_is_the_operators_day_not_utcs() -> None:
    now = datetime(2026, 1, 15, 23, 30, tzinfo=UTC)  # already the 16th in Paris
    start, end = day_window(now, PARIS)
    assert start == paris(2026, 1, 16) and end == paris(2026, 1, 17)
    assert start.tzinfo is UTC and end - start == timedelta(hours=24)


@pytest.mark.parametrize(
    ("now", "hours"),
    [
        (paris(2026, 3, 29, 12), 23),  # spring forward
        (paris(2026, 10, 25, 12), 25),  # fall back
        (paris(2026, 7, 1, 12), 24),
    ],
)
def test_day_window_length_on_dst_days(now: datetime, hours: int) -> None:
    start, end = day_window(now, PARIS)
    assert end - start == timedelta(hours=hours)
    assert start.astimezone(PARIS).hour == 0 and end.astimezone(PARIS).hour == 0


def test_day_window_where_midnight_itself_is_skipped() -> None:
    # Chile springs forward at 24:00: 6 Sep 2026 begins at 01:00 local, 04:00 UTC.
    start, end = day_window(datetime(2026, 9, 6, 12, tzinfo=UTC), SANTIAGO)
    assert start == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert end - start == timedelta(hours=23)


def test_month_window_december_to_january() -> None:
    start, end = month_window(paris(2026, 12, 31, 23, 59), PARIS)
    assert start == paris(2026, 12, 1) and end == paris(2027, 1, 1)
    start, end = month_window(paris(2027, 1, 1, 0, 1), PARIS)
    assert start == paris(2027, 1, 1) and end == paris(2027, 2, 1)


def test_month_window_length_counts_the_dst_hour() -> None:
    start, end = month_window(paris(2026, 3, 15), PARIS)
    assert end - start == timedelta(days=31, hours=-1)
    start, end = month_window(paris(2028, 2, 10), PARIS)
    assert end - start == timedelta(days=29)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        day_window(datetime(2026, 1, 1), PARIS)
    with pytest.raises(ValueError, match="timezone-aware"):
        interval(S.RUNNING, datetime(2026, 1, 1))


def test_interval_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends before"):
        interval(S.RUNNING, paris(2026, 1, 1, 12), paris(2026, 1, 1, 11))


# --- billed time -----------------------------------------------------------------------


def test_open_interval_counts_until_now_and_never_past_it() -> None:
    intervals = [interval(S.RUNNING, paris(2026, 5, 4, 10))]
    now = paris(2026, 5, 4, 12)
    assert billed_seconds(intervals, paris(2026, 5, 4), paris(2026, 5, 5), now) == 2 * HOUR
    # A closed interval reaching past `now` (a clock behind the ledger) stops at now too.
    closed = [interval(S.RUNNING, paris(2026, 5, 4, 10), paris(2026, 5, 4, 15))]
    assert billed_seconds(closed, paris(2026, 5, 4), paris(2026, 5, 5), now) == 2 * HOUR


def test_starting_and_stopping_are_billed_stopped_is_not() -> None:
    intervals = [
        interval(S.STOPPED, paris(2026, 5, 4, 8), paris(2026, 5, 4, 9)),
        interval(S.STARTING, paris(2026, 5, 4, 9), paris(2026, 5, 4, 9, 2)),
        interval(S.RUNNING, paris(2026, 5, 4, 9, 2), paris(2026, 5, 4, 10, 2)),
        interval(S.STOPPING, paris(2026, 5, 4, 10, 2), paris(2026, 5, 4, 10, 5)),
        interval(S.STOPPED, paris(2026, 5, 4, 10, 5)),
    ]
    now = paris(2026, 5, 4, 18)
    assert billed_seconds(intervals, *day_window(now, PARIS), now) == 65 * 60
    assert cost_today(intervals, RATE, now, PARIS) == pytest.approx(RATE * 65 / 60)


def test_several_runs_in_a_day() -> None:
    intervals = [
        interval(S.STOPPED, paris(2026, 5, 4, 0), paris(2026, 5, 4, 9)),
        interval(S.RUNNING, paris(2026, 5, 4, 9), paris(2026, 5, 4, 10)),
        interval(S.STOPPED, paris(2026, 5, 4, 10), paris(2026, 5, 4, 14)),
        interval(S.RUNNING, paris(2026, 5, 4, 14), paris(2026, 5, 4, 14, 30)),
        interval(S.STOPPED, paris(2026, 5, 4, 14, 30)),
    ]
    now = paris(2026, 5, 4, 20)
    assert cost_today(intervals, RATE, now, PARIS) == pytest.approx(RATE * 1.5)
    assert cost_this_run(intervals, RATE, now, PARIS) == pytest.approx(RATE * 0.5)


def test_run_across_midnight_costs_half_in_each_day() -> None:
    intervals = run(paris(2026, 5, 4, 23, 30), paris(2026, 5, 5, 0, 30))
    now = paris(2026, 5, 5, 1)
    assert cost_today(intervals, RATE, now, PARIS) == pytest.approx(RATE / 2)
    yesterday = day_window(paris(2026, 5, 4, 12), PARIS)
    assert billed_seconds(intervals, *yesterday, now) == 1800
    # Seen from New York the same run lies inside one day (17:30-18:30 local).
    assert cost_today(intervals, RATE, now, NEW_YORK) == pytest.approx(RATE)


@pytest.mark.parametrize(
    ("start", "month_before"),
    [
        (paris(2026, 1, 31, 23, 30), paris(2026, 1, 15)),
        (paris(2026, 12, 31, 23, 30), paris(2026, 12, 15)),
    ],
    ids=["jan31-feb1", "dec31-jan1"],
)
def test_run_across_month_end_costs_half_in_each_month(start: datetime, month_before: datetime) -> None:
    intervals = run(start, start + timedelta(hours=1))
    now = start + timedelta(hours=1, minutes=30)
    assert cost_month(intervals, RATE, now, PARIS) == pytest.approx(RATE / 2)
    assert cost_today(intervals, RATE, now, PARIS) == pytest.approx(RATE / 2)
    assert billed_seconds(intervals, *month_window(month_before, PARIS), now) == 1800


@pytest.mark.parametrize(("day", "hours"), [((2026, 3, 29), 23), ((2026, 10, 25), 25)])
def test_a_vm_running_all_through_a_dst_day(day: tuple[int, int, int], hours: int) -> None:
    intervals = [interval(S.RUNNING, paris(*day) - timedelta(hours=2))]
    now = paris(*day) + timedelta(days=1, hours=2)  # wall-clock arithmetic: next day 02:00
    yesterday_now = paris(*day, 12)
    assert billed_seconds(intervals, *day_window(yesterday_now, PARIS), now) == hours * HOUR
    assert cost_today(intervals, RATE, now, PARIS) == pytest.approx(RATE * 2)


def test_month_cost_sums_runs_and_ignores_last_month() -> None:
    intervals = [
        interval(S.RUNNING, paris(2026, 4, 30, 20), paris(2026, 4, 30, 22)),
        interval(S.STOPPED, paris(2026, 4, 30, 22), paris(2026, 5, 2, 10)),
        interval(S.RUNNING, paris(2026, 5, 2, 10), paris(2026, 5, 2, 13)),
        interval(S.STOPPED, paris(2026, 5, 2, 13), paris(2026, 5, 3, 10)),
        interval(S.RUNNING, paris(2026, 5, 3, 10)),
    ]
    now = paris(2026, 5, 3, 11)
    assert cost_month(intervals, RATE, now, PARIS) == pytest.approx(RATE * 4)
    assert cost_today(intervals, RATE, now, PARIS) == pytest.approx(RATE)


def test_intervals_of_other_states_and_empty_lists_cost_nothing() -> None:
    now = paris(2026, 5, 4, 12)
    assert cost_today([], RATE, now, PARIS) == 0
    assert cost_this_run([], RATE, now, PARIS) == 0
    stopped = [interval(S.STOPPED, paris(2026, 5, 1))]
    assert cost_month(stopped, RATE, now, PARIS) == 0
    assert cost_this_run(stopped, RATE, now, PARIS) == 0


# --- this run --------------------------------------------------------------------------


def test_this_run_is_the_current_billed_stretch_from_starting() -> None:
    intervals = [
        *run(paris(2026, 5, 4, 8), paris(2026, 5, 4, 9)),
        interval(S.STARTING, paris(2026, 5, 4, 12), paris(2026, 5, 4, 12, 6)),
        interval(S.RUNNING, paris(2026, 5, 4, 12, 6)),
    ]
    now = paris(2026, 5, 4, 13)
    assert [i.state for i in last_run(intervals)] == [S.STARTING, S.RUNNING]
    assert cost_this_run(intervals, RATE, now, PARIS) == pytest.approx(RATE)


def test_this_run_after_a_stop_today_is_the_last_run_whole() -> None:
    intervals = [
        interval(S.RUNNING, paris(2026, 5, 3, 23), paris(2026, 5, 4, 1)),
        interval(S.STOPPING, paris(2026, 5, 4, 1), paris(2026, 5, 4, 1, 6)),
        interval(S.STOPPED, paris(2026, 5, 4, 1, 6)),
    ]
    now = paris(2026, 5, 4, 18)
    assert cost_this_run(intervals, RATE, now, PARIS) == pytest.approx(RATE * 2.1)


def test_this_run_is_zero_once_the_day_of_the_last_stop_is_over() -> None:
    intervals = run(paris(2026, 5, 3, 20), paris(2026, 5, 3, 22))
    assert cost_this_run(intervals, RATE, paris(2026, 5, 3, 23, 59), PARIS) == pytest.approx(RATE * 2)
    assert cost_this_run(intervals, RATE, paris(2026, 5, 4, 0, 1), PARIS) == 0


def test_this_run_across_midnight_while_still_running() -> None:
    intervals = [interval(S.RUNNING, paris(2026, 5, 3, 22))]
    now = paris(2026, 5, 4, 1)
    assert cost_this_run(intervals, RATE, now, PARIS) == pytest.approx(RATE * 3)
    assert cost_today(intervals, RATE, now, PARIS) == pytest.approx(RATE)
