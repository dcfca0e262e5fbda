"""A training metric as a braille line chart, and the GPU timeline drawn under it.

    train_loss  ■ lora-r16 min 0.412 max 2.31 last 0.455  ■ lora-r8 min 0.5 max 2.4 last 0.61
       2.31┤⠻⠶⢶⣶⣤⣤⣄⣀⣀⡀                                    ◂2.31
           │    ⠈⠉⠉⠛⠚⠿⠭⣽⣓⣒⡶⠦⠤⣤⣄⣀⣀⡀
      0.412┤                   ⠈⠉⠙⠛⠻⠷⠶⣶⣤⣤⣍⣉⣉⡛⠛⠻⠷⠶⢶⣷⣤⣤⣤⣄⣀⣀⣀⡀  ◂0.455
           └0 ─────────────────── step ───────────────────── 12.3k
    temp    ▂▃▅▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▆  62–78°C

Both widgets share the gutters (`LEFT_GUTTER`, `RIGHT_GUTTER`), so at the same width
a timeline column sits under the chart column of the same moment. Run names and
metric keys come from MLflow: they pass the sanitiser and are built into `Content`,
never parsed as markup. Plotting 2 x 100k points costs ~10 ms, so each widget keeps
its last result and draws again only when the points, the size or the theme change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any, ClassVar, Literal

from textual.content import Content
from textual.widget import Widget

from aiconsole.domain.chart import (
    EMPTY_OWNER,
    ChartSeries,
    GpuPoint,
    Plot,
    SeriesStats,
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
from aiconsole.domain.sanitize import sanitize_line

MUTED = "$foreground-muted"  # not $text-muted: "auto 60%" comes out pure white (black) in a Content span
LABEL_WIDTH = 7
"""The y labels ("0.00012" is "1.2e-4") and the timeline's names, right-aligned in the gutter."""
LEFT_GUTTER = LABEL_WIDTH + 1  # and the y axis
RIGHT_GUTTER = 10
"""The last value of each series ("◂0.455"), and the timeline's figures (" ≤18.2/24G")."""
SERIES_STYLES = 4
"""Series colours; a fifth series takes the first colour again."""
TEMP_SCALE_C = (20.0, 100.0)  # as the gauges: strips of two runs compare
XKind = Literal["step", "time"]


def plot_width(total_width: int) -> int:
    """The cells left for the plot (or a strip) in a widget `total_width` wide."""
    return max(0, total_width - LEFT_GUTTER - RIGHT_GUTTER)


class _Memo:
    """One remembered result, reused while the same sequences come in (the very objects,
    at the same lengths: histories only grow) with equal `extra` (size, flags, theme)."""

    def __init__(self) -> None:
        self._sources: tuple[Sequence[Any], ...] = ()
        self._key: object = object()
        self.value: Any = None

    def get(self, sources: tuple[Sequence[Any], ...], extra: object, build: Callable[[], Any]) -> Any:
        key = (tuple(len(s) for s in sources), extra)
        same = len(sources) == len(self._sources) and all(a is b for a, b in zip(sources, self._sources, strict=True))
        if not same or key != self._key:
            # The sources are held, so their ids cannot be reused by new objects while cached.
            self._sources, self._key, self.value = sources, key, build()
        return self.value


def _pack(entries: Sequence[Content], width: int) -> list[Content]:
    """Entries on as few lines as fit `width`, two spaces apart; a too-long one is cut."""
    lines: list[Content] = []
    for entry in entries:
        entry = entry.truncate(width, ellipsis=True) if entry.cell_length > width else entry
        if lines and lines[-1].cell_length + 2 + entry.cell_length <= width:
            lines[-1] = Content.assemble(lines[-1], "  ", entry)
        else:
            lines.append(entry)
    return lines or [Content("")]


class MetricChart(Widget):
    """One metric of one or more runs: `show(series, title=..., log_y=..., x_kind=...)`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"metric-chart--series-{i}" for i in range(SERIES_STYLES)} | {
        "metric-chart--title"
    }
    DEFAULT_CSS = """
    MetricChart {
        height: 1fr;
        min-height: 4;
        /* Apart in hue from each other and from the timeline's $primary; $warning is left
           to warnings ("NaN/inf skipped"), being close to $accent in our dark theme. */
        & > .metric-chart--series-0 { color: $accent; }
        & > .metric-chart--series-1 { color: $success; }
        & > .metric-chart--series-2 { color: $secondary; }
        & > .metric-chart--series-3 { color: $error; }
        & > .metric-chart--title { text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.series: tuple[ChartSeries, ...] = ()
        self.stats: tuple[SeriesStats, ...] = ()
        self.title, self.note, self.log_y, self.x_kind = "", "", False, "step"
        self.last_plot: Plot | None = None
        """What the last render drew: its width is the strip width of a timeline beneath."""
        self._plot_memo, self._render_memo, self._stats_memo = _Memo(), _Memo(), _Memo()

    def show(
        self, series: Sequence[ChartSeries], *, title: str, log_y: bool, x_kind: XKind = "step", note: str = ""
    ) -> None:
        """New points (or flags); repainting with the same sequences reuses the last plot."""
        self.series = tuple(series)
        self.stats = self._stats_memo.get(self._sources(), None, lambda: tuple(series_stats(s.ys) for s in series))
        self.title, self.log_y, self.x_kind, self.note = title, log_y, x_kind, note
        self.refresh()

    def _sources(self) -> tuple[Sequence[float], ...]:
        return tuple(seq for s in self.series for seq in (s.xs, s.ys))

    @property
    def log_applied(self) -> bool:
        """A log scale needs every finite value > 0 (the whole data is shown, so the stats tell)."""
        mins = [s.min for s in self.stats if s.min is not None]
        return self.log_y and bool(mins) and min(mins) > 0

    def render(self) -> Content:
        width, height = self.content_size
        extra = (
            width, height, self.title, self.note, self.log_y, self.x_kind,
            tuple(s.label for s in self.series), self.app.current_theme.name,
        )  # fmt: skip
        return self._render_memo.get(self._sources(), extra, lambda: self._build(width, height))

    def _build(self, width: int, height: int) -> Content:
        title = Content.styled(sanitize_line(self.title, 80) or "metric", self._style("metric-chart--title"))
        if not any(s.count or s.non_finite for s in self.stats):
            return Content.assemble(title, "  ", ("no points yet", MUTED)).truncate(width, ellipsis=True)
        header = _pack([title, *self._legend(), *self._notes()], max(1, width))
        rows = height - len(header) - 1
        if rows < 1 or plot_width(width) < 1:
            return Content("\n").join(header[: max(1, height)])
        p = self._plot(plot_width(width), rows)
        return Content("\n").join([*header, *self._plot_lines(p), self._x_axis(p)])

    def _plot(self, width: int, rows: int) -> Plot:
        extra = (width, rows, self.log_y)
        self.last_plot = self._plot_memo.get(
            self._sources(), extra, lambda: plot(self.series, width, rows, log_y=self.log_y)
        )
        return self.last_plot

    def _style(self, component: str) -> Any:
        return self.get_visual_style(component, partial=True)

    def _series_style(self, index: int) -> Any:
        return self._style(f"metric-chart--series-{index % SERIES_STYLES}")

    def _legend(self) -> list[Content]:
        entries = []
        for i, (s, st) in enumerate(zip(self.series, self.stats, strict=True)):
            style = self._series_style(i)
            parts: list[Any] = [("■ ", style), (sanitize_line(s.label, 40) or f"run {i + 1}", style)]
            for word, value in (("min", st.min), ("max", st.max), ("last", st.last)):
                parts += [(f" {word} ", MUTED), format_value(value)]
            if st.non_finite:
                parts.append((f" · {st.non_finite} NaN/inf skipped", "$warning"))
            entries.append(Content.assemble(*parts))
        return entries

    def _notes(self) -> list[Content]:
        notes = []
        if self.log_y and not self.log_applied:
            notes.append(Content.styled("log off: values ≤ 0", "$warning"))
        elif self.log_applied:
            notes.append(Content.styled("log y", MUTED))
        if note := sanitize_line(self.note, 120):
            notes.append(Content.styled(note, MUTED))
        return notes

    def _plot_lines(self, p: Plot) -> list[Content]:
        labels = _y_labels(p)
        tags = self._last_tags(p)
        lines = []
        for r, (row, owners) in enumerate(zip(p.rows, p.owners, strict=True)):
            cells: list[Any] = []
            for owner, run in groupby(zip(row, owners, strict=True), key=lambda cell: cell[1]):
                text = "".join(ch for ch, _ in run)
                cells.append((text, "") if owner == EMPTY_OWNER else (text, self._series_style(owner)))
            lines.append(Content.assemble(labels[r], *cells, tags.get(r, "")))
        return lines

    def _last_tags(self, p: Plot) -> dict[int, Content]:
        """ "◂0.455" beside the row of each series' last value; a taken row moves it to the next free one."""
        tags: dict[int, Content] = {}
        for i, st in enumerate(self.stats):
            row = None if st.last is None else row_of_value(p, st.last)
            if row is None:
                continue
            free = [r for r in sorted(range(len(p.rows)), key=lambda r: abs(r - row)) if r not in tags]
            if free:
                tags[free[0]] = Content.styled(f" ◂{format_value(st.last)}", self._series_style(i))
        return tags

    def _x_axis(self, p: Plot) -> Content:
        width = len(p.rows[0]) if p.rows else 0
        if p.x_min is None or p.x_max is None:
            return Content.styled(" " * LABEL_WIDTH + "└" + "─" * width, MUTED)
        fmt, word = (format_step, "step") if self.x_kind == "step" else (format_elapsed, "elapsed")
        start, end = fmt(p.x_min), fmt(p.x_max)
        fill = width - len(start) - len(end) - 2
        if fill < 0:
            body = "─" * width
        elif fill >= len(word) + 6:
            left = (fill - len(word) - 2) // 2
            body = f"{start} {'─' * left} {word} {'─' * (fill - len(word) - 2 - left)} {end}"
        else:
            body = f"{start} {'─' * fill} {end}"
        return Content.styled(" " * LABEL_WIDTH + "└" + body, MUTED)


def _y_labels(p: Plot) -> list[Content]:
    """The gutter of each row: max at the top, min at the bottom, the middle value between."""
    rows = len(p.rows)
    labelled = {0: p.y_max, rows - 1: p.y_min}
    if rows >= 5:
        labelled[rows // 2] = value_at_row(p, rows // 2)
    out = []
    for r in range(rows):
        if r in labelled:
            out.append(Content.styled(format_value(labelled[r]).rjust(LABEL_WIDTH)[-LABEL_WIDTH:] + "┤", MUTED))
        else:
            out.append(Content.styled(" " * LABEL_WIDTH + "│", MUTED))
    return out


# --- the GPU timeline -----------------------------------------------------------------


class GpuTimeline(Widget):
    """Temperature, VRAM and power of a run's VM over the chart's span: `show(samples, x_min, x_max)`.

    Several GPUs' samples are combined by the max of each column: the hottest GPU, the
    fullest VRAM, the highest draw, since one struggling GPU is what a run waits for.
    """

    DEFAULT_CSS = """
    GpuTimeline {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.samples: Sequence[GpuPoint] = ()
        self.x_min, self.x_max = 0.0, 0.0
        self.width_hint: int | None = None
        self._memo = _Memo()

    def show(self, samples: Sequence[GpuPoint], x_min: float, x_max: float, *, width_hint: int | None = None) -> None:
        """`width_hint`: the strip width in cells (e.g. the chart's `last_plot` width), when
        the timeline is not as wide as the chart; None lays it out by its own width."""
        self.samples, self.x_min, self.x_max, self.width_hint = samples, x_min, x_max, width_hint
        self.refresh(layout=True)

    def render(self) -> Content:
        width = self.width_hint if self.width_hint is not None else plot_width(self.content_size.width)
        extra = (width, self.x_min, self.x_max, self.app.current_theme.name)
        return self._memo.get(
            (self.samples,), extra, lambda: timeline_content(self.samples, self.x_min, self.x_max, width)
        )


def timeline_content(samples: Sequence[GpuPoint], x_min: float, x_max: float, width: int) -> Content:
    """Three strips over [x_min, x_max], `width` cells each, with the gutters of a chart."""
    shown = [p for p in samples if x_min <= p.t <= x_max]
    if not shown or width < 1:
        return Content.styled("no GPU samples for this span: the console records them while it runs", MUTED)
    ts = [p.t for p in shown]
    temps = [p.temp_c for p in shown]
    lines = [
        _strip_line("temp", resample_times(ts, temps, x_min, x_max, width), TEMP_SCALE_C, _temp_figure(temps)),
        _strip_line("VRAM", resample_times(ts, _vram_pcts(shown), x_min, x_max, width), (0, 100), _vram_figure(shown)),
        _power_line(shown, ts, x_min, x_max, width),
    ]
    return Content("\n").join(lines)


def _strip_line(name: str, values: list[float | None], scale: tuple[float, float], figure: str) -> Content:
    return Content.assemble(
        (name.ljust(LABEL_WIDTH) + " ", MUTED), (strip(values, len(values), *scale), "$primary"), f" {figure}"
    )


def _known(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _temp_figure(temps: Sequence[float | None]) -> str:
    known = _known(temps)
    return f"{min(known):.0f}–{max(known):.0f}°C" if known else "—"


def _vram_pcts(points: Sequence[GpuPoint]) -> list[float | None]:
    """Used as a share of total; without a total, of the most ever used (the strip's shape still reads)."""
    top = max(_known([p.vram_used_mib for p in points]), default=0.0)
    return [
        None if p.vram_used_mib is None else 100 * p.vram_used_mib / (p.vram_total_mib or top or 1.0) for p in points
    ]


def _gib(mib: float) -> str:
    return f"{mib / 1024:.{1 if mib < 100 * 1024 else 0}f}"


def _vram_figure(points: Sequence[GpuPoint]) -> str:
    """ "≤18.2/24G": the most used over the span, of the total."""
    known = [p for p in points if p.vram_used_mib is not None]
    if not known:
        return "—"
    peak = max(known, key=lambda p: p.vram_used_mib or 0.0)
    used = _gib(peak.vram_used_mib or 0.0)
    return f"≤{used}/{peak.vram_total_mib / 1024:.0f}G" if peak.vram_total_mib else f"≤{used}G"


def _power_line(points: Sequence[GpuPoint], ts: list[float], x_min: float, x_max: float, width: int) -> Content:
    """Scaled to the power limit when known, else to the highest draw shown."""
    draws = [p.power_w for p in points]
    known = _known(draws)
    limit = max(_known([p.power_limit_w for p in points]), default=0.0) or max(known, default=0.0) or 1.0
    figure = f"≤{max(known):.0f}W" if known else "—"
    return _strip_line("power", resample_times(ts, draws, x_min, x_max, width), (0.0, limit), figure)
