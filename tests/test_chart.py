"""The chart maths of domain/chart.py: braille plots, axis labels, GPU timeline strips."""

from __future__ import annotations

import math

import pytest

from aiconsole.domain.chart import (
    BRAILLE_BASE,
    EMPTY_OWNER,
    ChartSeries,
    Plot,
    envelope,
    format_elapsed,
    format_step,
    format_value,
    plot,
    resample_times,
    row_of_value,
    series_stats,
    strip,
    value_at_row,
)

NAN, INF = float("nan"), float("inf")


def line(label: str, ys: list[float], xs: list[float] | None = None) -> ChartSeries:
    return ChartSeries(label, list(range(len(ys))) if xs is None else xs, ys)


def dots(p: Plot) -> int:
    """How many braille dots are set in the whole plot."""
    return sum((ord(ch) - BRAILLE_BASE).bit_count() for row in p.rows for ch in row if ch != " ")


def drawn_columns(p: Plot) -> set[int]:
    return {x for owners in p.owners for x, owner in enumerate(owners) if owner != EMPTY_OWNER}


def drawn_rows(p: Plot) -> set[int]:
    return {y for y, row in enumerate(p.rows) if row.strip()}


def assert_shape(p: Plot, width: int, height: int) -> None:
    assert len(p.rows) == height and len(p.owners) == height
    assert all(len(row) == width for row in p.rows) and all(len(owners) == width for owners in p.owners)


# --- stats ---------------------------------------------------------------------------------


def test_series_stats_skip_and_count_non_finite_values() -> None:
    stats = series_stats([2.0, NAN, 0.5, INF, 1.0, -INF, NAN])
    assert (stats.min, stats.max, stats.last, stats.count, stats.non_finite) == (0.5, 2.0, 1.0, 3, 4)


def test_series_stats_without_finite_values_are_none() -> None:
    assert series_stats([NAN, INF]) == series_stats([NAN, INF])
    stats = series_stats([NAN, INF])
    assert (stats.min, stats.max, stats.last, stats.count, stats.non_finite) == (None, None, None, 0, 2)
    assert series_stats([]).count == 0


def test_chart_series_needs_one_y_per_x() -> None:
    with pytest.raises(ValueError, match="3 xs but 2 ys"):
        ChartSeries("a", [1, 2, 3], [1.0, 2.0])


# --- plot ----------------------------------------------------------------------------------


def test_a_spike_survives_100k_points_in_few_columns() -> None:
    ys = [1.0] * 100_000
    ys[54_321] = 100.0
    p = plot([line("loss", ys)], 60, 10)
    assert_shape(p, 60, 10)
    assert (p.y_min, p.y_max, p.x_min, p.x_max) == (1.0, 100.0, 0, 99_999)
    spike_cell = int(54_321 / 100_000 * 60)
    assert p.rows[0][spike_cell] != " "  # the spike reaches the top row
    assert all(row[spike_cell] != " " for row in p.rows)  # and is joined down to the flat line
    assert p.rows[-1].count(" ") == 0  # the flat line runs across the bottom


def test_the_line_is_continuous_across_a_jump_and_sparse_points() -> None:
    step = plot([line("a", [0.0] * 50 + [10.0] * 50)], 25, 6)
    assert drawn_rows(step) == set(range(6))  # the jump is drawn as a vertical run
    sparse = plot([line("a", [0.0, 10.0], xs=[0.0, 100.0])], 30, 4)
    assert drawn_columns(sparse) == set(range(30))  # two points 30 cells apart: one stroke
    assert drawn_rows(sparse) == set(range(4))


def test_non_finite_values_are_gaps_and_not_used_for_the_range() -> None:
    ys = [float(i % 7) for i in range(100)]
    for i in range(40, 60):
        ys[i] = NAN if i % 2 else INF
    ys[10] = -INF
    p = plot([line("a", ys)], 50, 4)  # two points per cell
    assert (p.y_min, p.y_max) == (0.0, 6.0)
    assert drawn_columns(p) == set(range(50)) - set(range(20, 30))  # the NaN/inf run is blank
    assert not any(ch != " " and ord(ch) < BRAILLE_BASE for row in p.rows for ch in row)


def test_a_single_nan_between_columns_breaks_the_line() -> None:
    joined = plot([line("a", [0.0, 0.0, 9.0, 9.0], xs=[0, 1, 9, 10])], 11, 3)
    broken = plot([line("a", [0.0, NAN, 9.0, 9.0], xs=[0, 1, 9, 10])], 11, 3)
    assert drawn_columns(joined) == set(range(11))
    assert drawn_columns(broken) < drawn_columns(joined)


def test_log_scale_needs_every_finite_value_above_zero() -> None:
    positive = plot([line("a", [1000.0, 10.0, 0.1, INF, -INF])], 20, 4, log_y=True)
    assert positive.log_y and (positive.y_min, positive.y_max) == (0.1, 1000.0)
    with_zero = plot([line("a", [1000.0, 10.0, 0.0])], 20, 4, log_y=True)
    assert not with_zero.log_y and (with_zero.y_min, with_zero.y_max) == (0.0, 1000.0)
    assert dots(with_zero) > 0
    negative_range = plot([line("a", [1.0, 2.0])], 20, 4, log_y=True, y_range=(-1.0, 3.0))
    assert not negative_range.log_y
    assert not plot([line("a", [1.0, 2.0])], 20, 4).log_y


def test_log_scale_spreads_decades_evenly() -> None:
    p = plot([line("a", [1.0, 10.0, 100.0, 1000.0, 10000.0])], 5, 5, log_y=True)
    # A straight diagonal: one decade per cell across, about one cell row down per column.
    first_cells = [next(y for y in range(5) if p.rows[y][x] != " ") for x in range(5)]
    assert first_cells == sorted(first_cells, reverse=True) and first_cells[0] == 4 and first_cells[-1] == 0


def test_a_flat_series_draws_in_the_middle() -> None:
    p = plot([line("a", [3.0] * 500)], 40, 6)
    assert (p.y_min, p.y_max) == (3.0, 3.0)
    assert drawn_rows(p) == {3} and drawn_columns(p) == set(range(40))


def test_empty_input_gives_blank_rows() -> None:
    for p in (plot([], 10, 3), plot([line("a", [])], 10, 3), plot([line("a", [NAN, INF])], 10, 3)):
        assert_shape(p, 10, 3)
        assert p.rows == (" " * 10,) * 3 and p.y_min is None and p.y_max is None
    assert plot([line("a", [1.0])], 0, 3).rows == ("", "", "")
    assert plot([line("a", [1.0])], 5, 0).rows == ()


def test_a_single_point_sits_in_the_middle() -> None:
    p = plot([line("a", [5.0])], 9, 3)
    assert drawn_columns(p) == {4} and drawn_rows(p) == {1}


def test_two_series_own_their_cells_and_the_later_wins_a_shared_cell() -> None:
    high = line("high", [10.0] * 40)
    low = line("low", [0.0] * 40)
    p = plot([high, low], 20, 4)
    assert set(p.owners[0]) == {0} and set(p.owners[-1]) == {1}
    assert set(p.owners[1]) == {EMPTY_OWNER}
    same = plot([line("a", [1.0, 2.0]), line("b", [1.0, 2.0])], 10, 3)
    assert {owner for owners in same.owners for owner in owners} == {1, EMPTY_OWNER}


def test_series_of_different_lengths_share_the_x_span() -> None:
    p = plot([line("long", [1.0] * 100), line("short", [1.0] * 50)], 20, 2)
    assert (p.x_min, p.x_max) == (0, 99)
    assert {x for owners in p.owners for x, owner in enumerate(owners) if owner == 1} == set(range(10))


def test_explicit_ranges_clip() -> None:
    ys = [float(i) for i in range(100)]
    p = plot([line("a", ys)], 10, 4, x_range=(50.0, 59.0), y_range=(50.0, 59.0))
    assert (p.x_min, p.x_max, p.y_min, p.y_max) == (50.0, 59.0, 50.0, 59.0)
    assert drawn_columns(p) == set(range(10)) and drawn_rows(p) == set(range(4))
    far = plot([line("a", [0.0, 1e300])], 10, 4, y_range=(0.0, 1.0))  # off the grid: clipped, and fast
    assert_shape(far, 10, 4)


def test_envelope_marks_points_gaps_and_empty_columns() -> None:
    env = envelope([0, 1, 2, 3, 8], [1.0, 5.0, NAN, 2.0, 3.0], 0.0, 9.0, 9)
    assert env[0] is not None and (env[0].lo, env[0].hi) == (1.0, 1.0)
    assert env[2] == "gap" and env[4] is None and env[8] is not None
    mixed = envelope([0, 1, 2], [NAN, 4.0, INF], 0.0, 2.0, 1)[0]
    assert (mixed.lo, mixed.hi, mixed.first, mixed.last, mixed.gap_before, mixed.gap_after) == (
        4.0, 4.0, 4.0, 4.0, True, True,
    )  # fmt: skip


def test_rows_and_values_map_both_ways() -> None:
    p = plot([line("a", [0.0, 100.0])], 10, 5)
    assert row_of_value(p, 100.0) == 0 and row_of_value(p, 0.0) == 4 and row_of_value(p, 200.0) is None
    assert value_at_row(p, 2) == pytest.approx(50.0, abs=3)
    log = plot([line("a", [1.0, 10_000.0])], 10, 4, log_y=True)
    assert value_at_row(log, 0) > 1000 and value_at_row(log, 3) < 10
    assert row_of_value(log, -1.0) is None and value_at_row(plot([], 5, 2), 0) is None


# --- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.31, "2.31"), (0.412, "0.412"), (0.00012, "1.2e-4"), (-0.00012, "-1.2e-4"), (0.001, "1e-3"),
        (15_300, "15.3k"), (999.96, "1k"), (123.4, "123"), (1_530_000, "1.53M"), (2.5e15, "2.5e15"),
        (0.0, "0"), (-3.5, "-3.5"), (NAN, "nan"), (INF, "inf"), (-INF, "-inf"), (None, "—"),
    ],
)  # fmt: skip
def test_format_value_is_compact(value: float | None, text: str) -> None:
    assert format_value(value) == text
    assert len(format_value(value)) <= 7


@pytest.mark.parametrize(
    ("steps", "text"), [(0, "0"), (950, "950"), (1200, "1.2k"), (100_000, "100k"), (1.5e6, "1.5M")]
)
def test_format_step(steps: float, text: str) -> None:
    assert format_step(steps) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (45, "45s"),
        (90, "1m30s"),
        (720, "12m"),
        (725, "12m"),
        (3 * 3600 + 5 * 60, "3h05m"),
        (2 * 86400 + 4 * 3600, "2d04h"),
    ],
)
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


# --- strips --------------------------------------------------------------------------------


def test_strip_scales_and_shows_missing_as_space() -> None:
    assert strip([0.0, 50.0, 100.0, None, NAN], 5, 0.0, 100.0) == "▁▅█  "
    assert strip([200.0, -5.0], 2, 0.0, 100.0) == "█▁"  # beyond the scale: clamped
    assert strip([], 3, 0, 1) == "   " and strip([1.0], 0, 0, 1) == ""


def test_strip_resamples_by_the_max_of_each_bucket() -> None:
    values: list[float | None] = [0.0] * 100
    values[37] = 100.0
    shown = strip(values, 10, 0.0, 100.0)
    assert shown == "▁▁▁█▁▁▁▁▁▁"
    assert strip([0.0, 100.0], 4, 0.0, 100.0) == "▁▁██"  # fewer values than columns: stretched


def test_resample_times_puts_points_in_the_chart_columns() -> None:
    ts = [5.0, 0.0, 12.0, 13.0, 39.9, 40.0, 50.0, -1.0]
    values = [7.0, 1.0, 3.0, 9.0, 4.0, 6.0, 99.0, 99.0]
    assert resample_times(ts, values, 0.0, 40.0, 4) == [7.0, 9.0, None, 6.0]
    assert resample_times([1.0, 2.0], [None, NAN], 0.0, 4.0, 2) == [None, None]
    assert resample_times([3.0], [1.0], 3.0, 3.0, 5) == [None, None, 1.0, None, None]
    assert resample_times([1.0], [1.0], 0.0, 2.0, 0) == []


def test_resample_times_agrees_with_the_plot_columns() -> None:
    """A GPU sample at time t lands in the cell column where the chart draws a point at t."""
    xs = [0.0, 13.0, 27.0, 41.0, 59.0, 60.0, 61.0]
    ys = [1.0] * len(xs)
    dot_columns = envelope(xs, ys, 0.0, 60.0, 2 * 6)  # a cell is two dot-columns
    columns = resample_times(xs, ys, 0.0, 60.0, 6)
    assert {i for i, v in enumerate(columns) if v is not None} == {0, 1, 2, 4, 5}
    assert {k // 2 for k, column in enumerate(dot_columns) if column is not None} == {0, 1, 2, 4, 5}


def test_extreme_values_neither_overflow_nor_divide_by_zero() -> None:
    huge = plot([line("a", [1e308, -1e308, 0.0])], 5, 2)
    assert (huge.y_min, huge.y_max) == (-1e308, 1e308) and dots(huge) > 0
    tiny = plot([line("a", [1e300, 0.0, 5e-324])], 5, 2, y_range=(0.0, 5e-324))
    assert_shape(tiny, 5, 2)
    assert math.isfinite(value_at_row(huge, 0) or 0.0)
