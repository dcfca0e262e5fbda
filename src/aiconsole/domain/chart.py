"""Terminal charts: braille line plots of training metrics, block strips of GPU timelines.

`plot` lays series out on `width` x `height` cells, each cell a braille character of
2 x 4 dots. Each dot-column keeps the min/max envelope of the points that fall in it,
so a spike survives when 100,000 points share 160 dot-columns, and consecutive
columns are joined vertically so the line reads as one stroke. Non-finite values
(NaN, ±inf, as MLflow logs a diverged loss) are gaps: never drawn, never used for
the scale. The cost is a few bisects and one builtin min/max per dot-column, so a
plot of 2 x 100k points at 80 x 12 takes ~10-14 ms on a 2-core machine, nearly all
of it in min/max over the points.

The functions are pure: the widgets in `ui/widgets/metric_chart.py` hand in data.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

BRAILLE_BASE = 0x2800
# The bit of dot (row % 4, column % 2) in a braille cell: Unicode numbers dots 1-3 and 4-6
# down the two columns, then 7 and 8 on the bottom row.
_DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
BLOCKS = "▁▂▃▄▅▆▇█"
EMPTY_OWNER = -1
"""The owner of a cell no series drew in; where two series share a cell, the later one owns it."""

_isfinite = math.isfinite


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """Min, max and last of the finite values; `count` of them and how many were NaN/±inf."""

    min: float | None
    max: float | None
    last: float | None
    count: int
    non_finite: int


def series_stats(ys: Sequence[float]) -> SeriesStats:
    finite = list(filter(_isfinite, ys))
    if not finite:
        return SeriesStats(None, None, None, 0, len(ys))
    return SeriesStats(min(finite), max(finite), finite[-1], len(finite), len(ys) - len(finite))


# eq=False: equality and hashing by identity. Comparing 100k-point sequences field by
# field on every repaint is what the widget's cache is there to avoid.
@dataclass(frozen=True, slots=True, eq=False)
class ChartSeries:
    """One line: `xs` ascending (steps or seconds), `ys` may hold NaN/±inf (drawn as gaps)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.xs) != len(self.ys):
            raise ValueError(f"series {self.label!r}: {len(self.xs)} xs but {len(self.ys)} ys")


@dataclass(frozen=True, slots=True)
class Plot:
    """What `plot` drew: `rows` of exactly `width` characters, the series index owning each
    cell (`EMPTY_OWNER` where none), and the ranges and scale actually used (None: no data)."""

    rows: tuple[str, ...]
    owners: tuple[tuple[int, ...], ...]
    y_min: float | None
    y_max: float | None
    x_min: float | None
    x_max: float | None
    log_y: bool


class _Column(NamedTuple):
    """The finite points of one dot-column; `gap_*`: a NaN/inf at its first or last point."""

    lo: float
    hi: float
    first: float
    last: float
    gap_before: bool
    gap_after: bool


_GAP = "gap"  # a dot-column holding only non-finite points: the line breaks there
Envelope = list[_Column | str | None]  # None: no point fell in the column


def _first_finite(chunk: Sequence[float]) -> float:
    return next(y for y in chunk if _isfinite(y))


def _last_finite(chunk: Sequence[float]) -> float:
    return next(y for y in reversed(chunk) if _isfinite(y))


def _column(chunk: Sequence[float]) -> _Column | str:
    lo, hi = min(chunk), max(chunk)
    # min/max skip a NaN unless it comes first (then they return it) and return ±inf when
    # present, so two finite answers mean they are the finite min and max: the filtering
    # below runs only for the few columns that hold a NaN first or an inf.
    if not (_isfinite(lo) and _isfinite(hi)):
        finite = list(filter(_isfinite, chunk))
        if not finite:
            return _GAP
        lo, hi = min(finite), max(finite)
    first, last = chunk[0], chunk[-1]
    gap_before, gap_after = not _isfinite(first), not _isfinite(last)
    return _Column(
        lo,
        hi,
        _first_finite(chunk) if gap_before else first,
        _last_finite(chunk) if gap_after else last,
        gap_before,
        gap_after,
    )


def _column_bounds(xs: Sequence[float], x0: float, x1: float, columns: int) -> list[int]:
    """Index bounds of the points in each of `columns` equal slices of [x0, x1]."""
    if x1 <= x0:  # one x (a single point): it goes in the middle
        mid = columns // 2
        return [bisect_left(xs, x0)] * (mid + 1) + [bisect_right(xs, x0)] * (columns - mid)
    step = (x1 - x0) / columns
    bounds, lo = [], 0
    for k in range(columns):
        lo = bisect_left(xs, x0 + k * step, lo)
        bounds.append(lo)
    bounds.append(max(lo, bisect_right(xs, x1, lo)))
    return bounds


def envelope(xs: Sequence[float], ys: Sequence[float], x0: float, x1: float, columns: int) -> Envelope:
    """Per dot-column: the min/max envelope of its finite points, a gap, or None (no point)."""
    bounds = _column_bounds(xs, x0, x1, columns)
    out: Envelope = []
    for k in range(columns):
        a, b = bounds[k], bounds[k + 1]
        out.append(_column(ys[a:b]) if b > a else None)
    return out


def _x_extent(series: Sequence[ChartSeries]) -> tuple[float, float] | None:
    ends = [(s.xs[0], s.xs[-1]) for s in series if len(s.xs)]
    if not ends:
        return None
    return min(lo for lo, _ in ends), max(hi for _, hi in ends)


def _y_extent(envelopes: Sequence[Envelope]) -> tuple[float, float] | None:
    cols = [c for env in envelopes for c in env if isinstance(c, _Column)]
    if not cols:
        return None
    return min(c.lo for c in cols), max(c.hi for c in cols)


def _row_mapper(y0: float, y1: float, dots_high: int, log_y: bool) -> Callable[[float], int]:
    """Value -> dot row (0 at the top). Rows are clamped just outside the grid, so a value
    far beyond an explicit y_range costs no more than one on its edge."""
    scale = math.log10 if log_y else float
    # Halved, so that a span as wide as all floats (-1e308..1e308) does not overflow.
    h0, h1 = scale(y0) / 2, scale(y1) / 2
    top = dots_high - 1
    factor = top / (h1 - h0) if h1 > h0 else math.inf
    if not math.isfinite(factor):  # a flat series: the middle, no division by zero
        return lambda _v: (top + 1) // 2

    def to_row(v: float) -> int:
        offset = (scale(v) / 2 - h0) * factor  # finite or ±inf, never NaN: clamp before round
        return top - round(min(top + 1.0, max(-1.0, offset)))

    return to_row


class _Grid:
    """Braille dots of `width` x `height` cells and the series that drew each cell last."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.dots_high = width, height * 4
        self.bits = [0] * (width * height)
        self.owners = [EMPTY_OWNER] * (width * height)

    def span(self, column: int, row_a: int, row_b: int, owner: int) -> None:
        """Dots from `row_a` to `row_b` (either order, inclusive) in one dot-column."""
        lo, hi = max(0, min(row_a, row_b)), min(self.dots_high - 1, max(row_a, row_b))
        cell_x, bit_x = column >> 1, column & 1
        for row in range(lo, hi + 1):
            cell = (row >> 2) * self.width + cell_x
            self.bits[cell] |= _DOT_BITS[row & 3][bit_x]
            self.owners[cell] = owner

    def rows(self) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
        w, bits, owners = self.width, self.bits, self.owners
        cells = range(0, len(bits), w) if w else range(0)
        rows = tuple("".join(chr(BRAILLE_BASE + b) if b else " " for b in bits[i : i + w]) for i in cells)
        return rows, tuple(tuple(owners[i : i + w]) for i in cells)


def _draw_join(grid: _Grid, c0: int, r0: int, c1: int, r1: int, owner: int) -> None:
    """A straight stroke from (c0, r0) to (c1, r1), one vertical run per dot-column, each run
    starting just past the previous one's end so the stroke has no holes."""
    prev = r0
    for c in range(c0 + 1, c1 + 1):
        r = r0 + round((r1 - r0) * (c - c0) / (c1 - c0))
        start = prev if r == prev else prev + (1 if r > prev else -1)
        grid.span(c, start, r, owner)
        prev = r


def _draw_series(grid: _Grid, env: Envelope, to_row: Callable[[float], int], owner: int) -> None:
    last: tuple[int, int] | None = None  # (column, row) of the last finite point, when joinable
    for c, col in enumerate(env):
        if col is None:
            continue  # no point here: the stroke bridges it
        if not isinstance(col, _Column):
            last = None  # NaN/inf only: a gap
            continue
        if last is not None and not col.gap_before:
            _draw_join(grid, last[0], last[1], c, to_row(col.first), owner)
        grid.span(c, to_row(col.hi), to_row(col.lo), owner)
        last = None if col.gap_after else (c, to_row(col.last))


def blank_plot(width: int, height: int, *, log_y: bool = False) -> Plot:
    row = " " * max(0, width)
    owners = (EMPTY_OWNER,) * max(0, width)
    return Plot((row,) * max(0, height), (owners,) * max(0, height), None, None, None, None, log_y)


def plot(
    series: Sequence[ChartSeries],
    width: int,
    height: int,
    *,
    log_y: bool = False,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
) -> Plot:
    """Draw `series` on `width` x `height` braille cells.

    `x_range`/`y_range` default to the data's extent (finite values only). A log scale
    is applied only when every finite value shown (and an explicit y_range) is > 0;
    otherwise the plot is linear and says so with `log_y=False`.
    """
    x_span = x_range or _x_extent(series)
    if width <= 0 or height <= 0 or x_span is None:
        return blank_plot(width, height)
    x0, x1 = min(x_span), max(x_span)
    envelopes = [envelope(s.xs, s.ys, x0, x1, width * 2) for s in series]
    data_y = _y_extent(envelopes)
    y_span = y_range or data_y
    if y_span is None:
        return replace(blank_plot(width, height), x_min=x0, x_max=x1)
    y0, y1 = min(y_span), max(y_span)
    applied = log_y and y0 > 0 and (data_y is None or data_y[0] > 0)
    grid = _Grid(width, height)
    to_row = _row_mapper(y0, y1, height * 4, applied)
    for index, env in enumerate(envelopes):
        _draw_series(grid, env, to_row, index)
    rows, owners = grid.rows()
    return Plot(rows, owners, y0, y1, x0, x1, applied)


def value_at_row(p: Plot, row: int) -> float | None:
    """The value at the middle of cell row `row` (axis labels between top and bottom)."""
    if p.y_min is None or p.y_max is None or not p.rows:
        return None
    top = len(p.rows) * 4 - 1
    frac = (top - (row * 4 + 1.5)) / top
    if p.log_y:
        lo, hi = math.log10(p.y_min), math.log10(p.y_max)
        return 10 ** (lo + (hi - lo) * frac)
    return p.y_min * (1 - frac) + p.y_max * frac  # no y_max - y_min: it can overflow


def row_of_value(p: Plot, v: float) -> int | None:
    """The cell row where `v` is drawn; None when it is off the plot or nothing is plotted."""
    if p.y_min is None or p.y_max is None or not p.rows or not _isfinite(v) or (p.log_y and v <= 0):
        return None
    dot = _row_mapper(p.y_min, p.y_max, len(p.rows) * 4, p.log_y)(v)
    return dot >> 2 if 0 <= dot < len(p.rows) * 4 else None


# --- axis labels ------------------------------------------------------------------------

_SUFFIXES = ("", "k", "M", "G", "T")


def format_value(v: float | None) -> str:
    """Compact, at most 7 characters: "2.31", "0.412", "1.2e-4", "15.3k", "1.53M"."""
    if v is None:
        return "—"
    if not _isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    sign, mag = ("-" if v < 0 else ""), abs(v)
    if mag < 0.01:
        return sign + _exponent(mag)
    for suffix in _SUFFIXES:
        text = f"{mag:.3g}"
        if "e" not in text and float(text) < 1000:
            return f"{sign}{text}{suffix}"
        mag /= 1000
    return sign + _exponent(abs(v))


def _exponent(mag: float) -> str:
    mantissa, exp = f"{mag:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exp)}"


def format_step(n: float) -> str:
    """A step count: "950", "1.2k", "100k", "1.5M"."""
    return str(round(n)) if abs(n) < 1000 else format_value(round(n))


def format_elapsed(seconds: float) -> str:
    """Time since a run began: "45s", "1m30s", "12m", "3h05m", "2d04h"."""
    if seconds < 0:
        return "-" + format_elapsed(-seconds)
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s" if minutes < 10 and secs else f"{minutes}m"
    return f"{secs}s"


# --- strips: one line of blocks ---------------------------------------------------------


def _known(v: float | None) -> bool:
    return v is not None and _isfinite(v)


def _bucket_max(values: Sequence[float | None], width: int) -> list[float | None]:
    """`values` in `width` buckets, the max of each (None where none is known); fewer values
    than buckets are stretched."""
    n, out = len(values), []
    for k in range(width):
        a = k * n // width
        known = [v for v in values[a : max(a + 1, (k + 1) * n // width)] if _known(v)]
        out.append(max(known) if known else None)
    return out


def strip(values: Sequence[float | None], width: int, lo: float, hi: float) -> str:
    """A one-line sparkline of `width` blocks scaled lo..hi; a space where nothing is known."""
    if width <= 0:
        return ""
    if not values:
        return " " * width
    top = len(BLOCKS) - 1
    span = (hi - lo) or 1.0
    return "".join(
        " " if v is None else BLOCKS[min(top, max(0, round((v - lo) / span * top)))] for v in _bucket_max(values, width)
    )


def resample_times(
    ts: Sequence[float], values: Sequence[float | None], x_min: float, x_max: float, width: int
) -> list[float | None]:
    """Time-stamped values onto `width` equal columns of [x_min, x_max], the chart's cells:
    the max of each column, None where no known value fell. `ts` need not be sorted."""
    out: list[float | None] = [None] * max(0, width)
    span = x_max - x_min
    for t, v in zip(ts, values, strict=False):
        if not _known(v) or not x_min <= t <= x_max or width <= 0:
            continue
        col = min(width - 1, int((t - x_min) / span * width)) if span > 0 else width // 2
        prev = out[col]
        if prev is None or v > prev:  # type: ignore[operator]
            out[col] = v
    return out


class GpuPoint(NamedTuple):
    """One GPU at one moment, for the timeline under a chart: `t` in the chart's seconds."""

    t: float
    temp_c: float | None = None
    vram_used_mib: float | None = None
    vram_total_mib: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
