"""The GPU view: every GPU of the fleet, one row each, in ONE line-API scroll view.

Why not widgets or a DataTable: drawing 400 rows at 1 Hz costs ~16 % of a core as
400 widgets, ~6.5 % in a DataTable, under 1 % in a scroll view that draws only the
rows on screen (DESIGN.md). Each row's rendered `Strip` is cached with the
immutable `GpuView` it was drawn from, and reused while the row's view is the same
(identity, then equality). `update_snapshot` rebuilds the list of rows and marks
dirty only the rows on screen whose view changed; rows off screen cost nothing until
scrolled into view. With 800 GPUs at 80x24 a tick costs ~1.6 ms of bookkeeping and
23 row renders: about 1 % of a core at 1 Hz (measured headless over 30 s).

A host without GPU rows (off, connecting, no GPU, error, refused) gets one row with
its state, so the view also says why a host is missing.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.style import Style as RichStyle
from textual.content import Content
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.style import Style as VisualStyle

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import FeedState, GpuView, HostTelemetry, TelemetrySnapshot
from aiconsole.ui.widgets.gpu_gauges import (
    MUTED,
    NAME_WIDTH,
    PCT_WIDTH,
    POWER_WIDTH,
    SPARK_WIDTH,
    TEMP_WIDTH,
    UTIL_WIDTH,
    VRAM_WIDTH,
    gpu_name_cell,
    host_status_content,
    power_cell,
    stale_cell,
    temp_cell,
    temp_spark,
    util_cell,
    util_spark,
    vram_cells,
)

HOST_WIDTH = 15
INDEX_WIDTH = 2
_SPACED = 1  # one space before each column after the host
COLUMNS_WIDE = (
    ("host", HOST_WIDTH, "<"), ("#", INDEX_WIDTH, ">"), ("GPU", NAME_WIDTH - 1, "<"),
    ("temp", TEMP_WIDTH, "!"), ("history", SPARK_WIDTH, "<"), ("VRAM", VRAM_WIDTH, ">"),
    ("used", PCT_WIDTH, "!"), ("util", UTIL_WIDTH, ">"), ("history", SPARK_WIDTH, "<"),
    ("power", POWER_WIDTH, ">"),
)  # fmt: skip
"""(title, width, alignment) of each column: "<" left, ">" right, "!" right of a level mark."""
COLUMNS_COMPACT = tuple(column for i, column in enumerate(COLUMNS_WIDE) if i != 4)  # no temperature history
WIDE_WIDTH = sum(width for _, width, _ in COLUMNS_WIDE) + _SPACED * (len(COLUMNS_WIDE) - 1)
COMPACT_WIDTH = WIDE_WIDTH - SPARK_WIDTH - _SPACED


def _align(title: str, width: int, align: str) -> str:
    if align == "<":
        return title.ljust(width)
    if align == "!":  # over a value followed by its level mark
        return title.rjust(width - 1) + " "
    return title.rjust(width)


def header_content(wide: bool) -> Content:
    columns = COLUMNS_WIDE if wide else COLUMNS_COMPACT
    cells = [_align(title, width, align) for title, width, align in columns]
    return Content.styled(" ".join(cells), f"bold {MUTED}")


def host_cell(host: str, first: bool) -> Content:
    """The host's name: bold on its first row, muted on the rows after it."""
    name = sanitize_line(host, 200)
    name = name if len(name) <= HOST_WIDTH else name[: HOST_WIDTH - 1] + "…"
    return Content.styled(name.ljust(HOST_WIDTH), "bold" if first else MUTED)


def gpu_row_content(host: str, view: GpuView, *, first: bool, wide: bool) -> Content:
    """One GPU as a row of the GPU view; a stale one ends in "stale 12s" instead of its history and power."""
    index = Content.styled(str(view.sample.index).rjust(INDEX_WIDTH), MUTED if view.stale else "bold")
    parts: list[Content | str] = [host_cell(host, first), " ", index, " ", gpu_name_cell(view), temp_cell(view)]
    if wide:
        parts += [" ", temp_spark(view, SPARK_WIDTH)]
    parts += [" ", vram_cells(view), " ", util_cell(view)]
    tail_width = _SPACED + SPARK_WIDTH + _SPACED + POWER_WIDTH
    if view.stale:
        parts.append(stale_cell(view, tail_width))
    else:
        parts += [" ", util_spark(view, SPARK_WIDTH), " ", power_cell(view)]
    return Content.assemble(*parts)


def host_row_content(host: HostTelemetry, *, first: bool, width: int) -> Content:
    """A host without GPU rows (or one whose feed failed): its state on one line."""
    status_width = max(1, width - HOST_WIDTH - 1)
    return Content.assemble(
        host_cell(host.host, first), " ", host_status_content(host, width=status_width, max_lines=1)
    )


class _Row(NamedTuple):
    key: tuple[str, int]  # (host, GPU index); -1 for the host's status row
    host: str
    first: bool
    data: GpuView | tuple[FeedState, str]


def _rows_of(snapshot: TelemetrySnapshot) -> list[_Row]:
    rows: list[_Row] = []
    append = rows.append
    for host in snapshot.hosts:
        name = host.host
        first = True
        for view in host.gpus:
            append(_Row((name, view.sample.index), name, first, view))
            first = False
        if not host.gpus or host.state not in (FeedState.LIVE, FeedState.STALE):
            append(_Row((name, -1), name, first, (host.state, host.message)))
    return rows


class GpuTable(ScrollView, can_focus=True):
    """Every GPU of the fleet; feed it with `update_snapshot(snapshot)` once per tick.

    Keys: up/down, page up/down, home/end (from ScrollView). The header row stays put.
    `row_renders` counts rows rendered since mount (the cost that must stay small).
    """

    DEFAULT_CSS = """
    GpuTable {
        height: 1fr;
        background: $surface;
    }
    GpuTable:focus {
        background-tint: $primary 4%;
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._rows: list[_Row] = []
        self._strips: dict[tuple[str, int], tuple[object, Strip]] = {}
        self._header: Strip | None = None
        self._base: tuple[VisualStyle, RichStyle] | None = None
        self._wide = True
        self.snapshot: TelemetrySnapshot | None = None
        self.row_renders = 0

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def update_snapshot(self, snapshot: TelemetrySnapshot) -> None:
        """Show `snapshot`; repaint the rows on screen whose data changed, render nothing else.

        A row's cached strip is kept with the data it was drawn from and checked when the
        row is drawn (identity, then equality), so rows off screen cost nothing per tick.
        """
        self.snapshot = snapshot
        rows = _rows_of(snapshot)
        old_rows = self._rows
        self._rows = rows
        if len(rows) != len(old_rows) or any(old.key != new.key for old, new in zip(old_rows, rows)):
            # Hosts or GPUs came or went: cheap enough to start over.
            self._strips.clear()
            self._set_virtual_size()
            self.refresh()
            return
        top = int(self.scroll_offset.y)
        bottom = min(len(rows), top + max(0, self.size.height - 1))  # rows on screen: [top, bottom)
        changed = [index for index in range(top, bottom) if self._cached(rows[index]) is None]
        if changed:  # one region, one repaint; +1: the header line
            first, last = changed[0] - top + 1, changed[-1] - top + 1
            self.refresh(Region(0, first, self.size.width, last - first + 1))

    def _cached(self, row: _Row) -> Strip | None:
        """The row's strip if it was drawn from data equal to the row's."""
        cached = self._strips.get(row.key)
        if cached is None:
            return None
        data, strip = cached
        return strip if data is row.data or data == row.data else None

    def _set_virtual_size(self) -> None:
        self.virtual_size = Size(self._row_width, len(self._rows) + 1)

    def on_resize(self) -> None:
        wide = self.size.width >= WIDE_WIDTH
        if wide != self._wide:
            self._wide = wide
            self._strips.clear()
            self._header = None
            self._set_virtual_size()
            self.refresh()

    def _page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # the header line is no row

    def action_page_down(self) -> None:
        # Not animated: every frame of an animation would draw a screenful of new rows.
        self.scroll_to(y=self.scroll_y + self._page_rows(), animate=False)

    def action_page_up(self) -> None:
        self.scroll_to(y=self.scroll_y - self._page_rows(), animate=False)

    def notify_style_update(self) -> None:
        # A theme change (or focus) re-resolves $variables: strips drawn with old colours go.
        super().notify_style_update()
        self._strips.clear()
        self._header = None
        self._base = None
        self.refresh()

    def _base_styles(self) -> tuple[VisualStyle, RichStyle]:
        # Computing a widget's style walks its ancestors: once per style change, not per row.
        if self._base is None:
            self._base = (self.visual_style, self.rich_style)
        return self._base

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        rich_style = self._base_styles()[1]
        if y == 0:
            strip = self._header_strip()
        else:
            index = scroll_y + y - 1
            if index < len(self._rows):
                strip = self._row_strip(self._rows[index])
            elif index == 0:
                strip = self._to_strip(Content.styled("No GPU telemetry yet.", MUTED))
            else:
                return Strip.blank(width, rich_style)
        if scroll_x == 0 and strip.cell_length == width:
            return strip
        return strip.crop_extend(scroll_x, scroll_x + width, rich_style)

    def _header_strip(self) -> Strip:
        if self._header is None:
            self._header = self._to_strip(header_content(self._wide))
        return self._header

    def _row_strip(self, row: _Row) -> Strip:
        strip = self._cached(row)
        if strip is None:
            self.row_renders += 1
            if isinstance(row.data, GpuView):
                content = gpu_row_content(row.host, row.data, first=row.first, wide=self._wide)
            else:
                host = HostTelemetry(row.host, row.data[0], row.data[1])
                content = host_row_content(host, first=row.first, width=self._row_width)
            strip = self._to_strip(content)
            self._strips[row.key] = (row.data, strip)
        return strip

    @property
    def _row_width(self) -> int:
        return WIDE_WIDTH if self._wide else COMPACT_WIDTH

    def _to_strip(self, content: Content) -> Strip:
        width = self._row_width
        padded = content.truncate(width, pad=True)
        return Strip(padded.render_segments(self._base_styles()[0]), width)
