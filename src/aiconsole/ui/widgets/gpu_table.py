"""The GPU view: every GPU of the fleet, one row each, in ONE line-API scroll view.

Why not widgets or a DataTable: drawing 400 rows at 1 Hz costs ~16 % of a core as
400 widgets, ~6.5 % in a DataTable, under 1 % in a scroll view that draws only the
rows on screen (DESIGN.md). Each row's rendered `Strip` is cached with the
immutable `GpuView` it was drawn from, and reused while the row's view is the same
(identity, then equality). `update_snapshot` rebuilds the list of rows and marks
dirty only the rows on screen whose view changed; rows off screen cost nothing until
scrolled into view. With 800 GPUs at 80x24 a tick costs ~1.6 ms of bookkeeping and
23 row renders: about 1 % of a core at 1 Hz (measured headless over 30 s).

A GPU row is drawn from the cells' plain (text, style) pieces straight to segments,
each style string resolved to a Rich style once per theme or focus change: building
the row as `Content` and rendering that was most of a row's cost. `gpu_row_content`
builds the same row as `Content`; a test holds the two to the same segments.

A host without GPU rows (off, connecting, no GPU, error, refused) gets one row with
its state, so the view also says why a host is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.content import Content
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.style import Style as VisualStyle

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import FeedState, GpuView, HostOutline, HostTelemetry, TelemetrySnapshot
from aiconsole.ui.widgets.gpu_gauges import (
    MUTED,
    NAME_WIDTH,
    PCT_WIDTH,
    POWER_WIDTH,
    SPACE,
    SPARK_WIDTH,
    TEMP_WIDTH,
    UTIL_WIDTH,
    VRAM_WIDTH,
    Piece,
    Pieces,
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


@lru_cache(maxsize=1024)
def _host_piece(host: str, first: bool) -> Piece:
    # Sanitised once per host, not once per row drawn.
    name = sanitize_line(host, 200)
    name = name if len(name) <= HOST_WIDTH else name[: HOST_WIDTH - 1] + "…"
    return (name.ljust(HOST_WIDTH), "bold" if first else MUTED)


def host_cell(host: str, first: bool) -> Content:
    """The host's name: bold on its first row, muted on the rows after it."""
    return Content.styled(*_host_piece(host, first))


def gpu_row_pieces(host: str, view: GpuView, *, first: bool, wide: bool) -> Pieces:
    """One GPU as a row of the GPU view; a stale one ends in "stale 12s" instead of its history and power."""
    index = (str(view.sample.index).rjust(INDEX_WIDTH), MUTED if view.stale else "bold")
    pieces = [_host_piece(host, first), SPACE, index, SPACE, *gpu_name_cell(view), *temp_cell(view)]
    if wide:
        pieces += [SPACE, *temp_spark(view, SPARK_WIDTH)]
    pieces += [SPACE, *vram_cells(view), SPACE, *util_cell(view)]
    if view.stale:
        pieces += stale_cell(view, _SPACED + SPARK_WIDTH + _SPACED + POWER_WIDTH)
    else:
        pieces += [SPACE, *util_spark(view, SPARK_WIDTH), SPACE, *power_cell(view)]
    return pieces


def gpu_row_content(host: str, view: GpuView, *, first: bool, wide: bool) -> Content:
    """The row `gpu_row_pieces` makes, as Content."""
    return Content.assemble(*gpu_row_pieces(host, view, first=first, wide=wide))


def fit_pieces(pieces: Pieces, width: int) -> Pieces:
    """`pieces` padded or cut to `width` cells, as `Content.truncate(width, pad=True)` does.

    A value wider than its column (a 1000 W limit) pushes the row past `width`: the
    end is cut, and a wide character across the edge becomes a space, as in Content.
    """
    plain = "".join([text for text, _ in pieces])
    cells = cell_len(plain)
    if cells == width:
        return pieces
    if cells < width:
        return [*pieces, (" " * (width - cells), "")]
    cut = set_cell_size(plain, width)
    fitted: Pieces = []
    start = 0
    for text, style in pieces:
        if start >= len(cut):
            break
        end = start + len(text)
        fitted.append((cut[start:end], style))
        start = end
    return fitted


def pieces_segments(pieces: Pieces, styles: Mapping[str, RichStyle | None]) -> list[Segment]:
    """The segments `Content.assemble(*pieces).render_segments(...)` gives, without building Content.

    As there, each styled piece is a segment of its own (an empty one still splits the
    text around it) and unstyled text between them is one segment.
    """
    segments: list[Segment] = []
    gap = ""
    for text, style in pieces:
        if not style:
            gap += text
            continue
        if gap:
            segments.append(Segment(gap, styles[""]))
            gap = ""
        if text:
            segments.append(Segment(text, styles[style]))
    if gap:
        segments.append(Segment(gap, styles[""]))
    return segments


def host_row_content(host: HostTelemetry, *, first: bool, width: int) -> Content:
    """A host without GPU rows (or one whose feed failed): its state on one line."""
    status_width = max(1, width - HOST_WIDTH - 1)
    return Content.assemble(
        host_cell(host.host, first), " ", host_status_content(host, width=status_width, max_lines=1)
    )


class StyleCache(dict[str, RichStyle | None]):
    """Style string -> the Rich style Content draws a span of that style in, over `base()`.

    Resolved on first use by rendering a one-character Content, so a piece gets exactly
    the colours and attributes the Content path gives it; cleared when the theme or focus
    changes (they re-resolve $variables and the base).
    """

    def __init__(self, base: Callable[[], VisualStyle]) -> None:
        super().__init__()
        self._base = base

    def __missing__(self, style: str) -> RichStyle | None:
        resolved = self[style] = Content.styled("x", style).render_segments(self._base())[0].style
        return resolved


class _Row(NamedTuple):
    key: tuple[str, int]  # (host, GPU index); -1 for the host's status row
    host: str
    first: bool


RowData = GpuView | tuple[FeedState, str]
"""What a row is drawn from: its GPU's view, or its host's state and message."""


def _rows_of(outlines: Sequence[HostOutline]) -> list[_Row]:
    rows: list[_Row] = []
    append = rows.append
    for outline in outlines:
        name = outline.host
        first = True
        for index in outline.gpu_indices:
            append(_Row((name, index), name, first))
            first = False
        if not outline.gpu_indices or outline.state not in (FeedState.LIVE, FeedState.STALE):
            append(_Row((name, -1), name, first))
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
        self._outlines: tuple[HostOutline, ...] = ()
        self._views: dict[str, dict[int, GpuView]] = {}
        """This snapshot's GPU views by host and index, for the hosts whose rows were drawn."""
        self._strips: dict[tuple[str, int], tuple[object, Strip]] = {}
        self._header: Strip | None = None
        self._base: tuple[VisualStyle, RichStyle] | None = None
        self._styles = StyleCache(lambda: self._base_styles()[0])
        self._wide = True
        self.snapshot: TelemetrySnapshot | None = None
        self.row_renders = 0

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def update_snapshot(self, snapshot: TelemetrySnapshot) -> None:
        """Show `snapshot`; repaint the rows on screen whose data changed, render nothing else.

        The rows come from the hosts' outlines (rebuilt only when an outline changed); a
        row's data, its GPU's view, is read from the snapshot only for rows on screen, so
        the snapshot builds the views of the hosts drawn, not of all 100. A row's cached
        strip is kept with the data it was drawn from and checked when the row is drawn
        (identity, then equality), so rows off screen cost nothing per tick.
        """
        self.snapshot = snapshot
        self._views = {}
        outlines, old_outlines = snapshot.outlines, self._outlines
        self._outlines = outlines
        if len(outlines) != len(old_outlines) or any(new is not old for new, old in zip(outlines, old_outlines)):
            rows, old_rows = _rows_of(outlines), self._rows
            self._rows = rows
            if len(rows) != len(old_rows) or any(old.key != new.key for old, new in zip(old_rows, rows)):
                # Hosts or GPUs came or went: cheap enough to start over.
                self._strips.clear()
                self._set_virtual_size()
                self.refresh()
                return
        rows = self._rows
        top = int(self.scroll_offset.y)
        bottom = min(len(rows), top + max(0, self.size.height - 1))  # rows on screen: [top, bottom)
        changed = [index for index in range(top, bottom) if self._cached(rows[index], self._data(rows[index])) is None]
        if changed:  # one region, one repaint; +1: the header line
            first, last = changed[0] - top + 1, changed[-1] - top + 1
            self.refresh(Region(0, first, self.size.width, last - first + 1))

    def _data(self, row: _Row) -> RowData | None:
        """What the row shows in the current snapshot; None for a GPU gone from its host
        since the outline was taken (a row scrolled into view between two ticks)."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        name, index = row.key
        if index < 0:
            outline = snapshot.outline(name)
            return None if outline is None else (outline.state, outline.message)
        views = self._views.get(name)
        if views is None:
            host = snapshot.host(name)
            views = self._views[name] = {} if host is None else {view.sample.index: view for view in host.gpus}
        return views.get(index)

    def _cached(self, row: _Row, data: RowData | None) -> Strip | None:
        """The row's strip if it was drawn from data equal to `data`."""
        cached = self._strips.get(row.key)
        if cached is None:
            return None
        drawn, strip = cached
        return strip if drawn is data or drawn == data else None

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

    def action_scroll_home(self) -> None:
        self.scroll_to(y=0, animate=False)

    def action_scroll_end(self) -> None:
        # An animated jump over 800 rows would draw (and build the hosts of) every row it passes.
        self.scroll_to(y=self.max_scroll_y, animate=False)

    def notify_style_update(self) -> None:
        # A theme change (or focus) re-resolves $variables: strips drawn with old colours go.
        super().notify_style_update()
        self._strips.clear()
        self._header = None
        self._base = None
        self._styles.clear()
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
        data = self._data(row)
        strip = self._cached(row, data)
        if strip is None:
            if data is None:  # gone since the outline: blank until the next tick redraws the rows
                return Strip.blank(self._row_width, self._base_styles()[1])
            self.row_renders += 1
            if isinstance(data, GpuView):
                pieces = gpu_row_pieces(row.host, data, first=row.first, wide=self._wide)
                segments = pieces_segments(fit_pieces(pieces, self._row_width), self._styles)
                strip = Strip(segments, self._row_width)
            else:  # rare: a host without GPU rows
                host = HostTelemetry(row.host, data[0], data[1])
                strip = self._to_strip(host_row_content(host, first=row.first, width=self._row_width))
            self._strips[row.key] = (data, strip)
        return strip

    @property
    def _row_width(self) -> int:
        return WIDE_WIDTH if self._wide else COMPACT_WIDTH

    def _to_strip(self, content: Content) -> Strip:
        width = self._row_width
        padded = content.truncate(width, pad=True)
        return Strip(padded.render_segments(self._base_styles()[0]), width)
