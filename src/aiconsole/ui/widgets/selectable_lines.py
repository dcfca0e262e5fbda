"""A scrolling list of lines grouped into items, one of them selected: the Models tab's board.

Why not an OptionList or a DataTable: the board mixes items of one line (a model) and
of several (a loaded model's second line, a pull with its layers), and its lines change
a few times a second while pulls run. Here the owner hands in all lines and items at
once (`show`), and only the lines that changed on screen are repainted (a line API
view: nothing is drawn for lines out of view). The selection follows its item's key,
so it stays on the same model when lines above it come or go.

Keys: `model-next`/`model-previous` (down/up, j/k) move the selection; page up/down,
home and end move it by a page or to the ends. A click selects the item clicked.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from textual import events
from textual.content import Content, Span
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from aiconsole.ui.bindings import binding

MUTED = "$foreground-muted"
CURSOR_FOREGROUND = "$block-cursor-foreground"
SELECTED = f"{CURSOR_FOREGROUND} on $block-cursor-background"
SELECTED_BLURRED = "on $block-cursor-blurred-background"


@dataclass(frozen=True, slots=True)
class Item:
    """Lines `start` to `end` (exclusive) of the list, selected together."""

    key: Hashable
    start: int
    end: int


def unmuted(content: Content) -> Content:
    """`content` with its muted spans in the cursor's foreground colour instead."""
    spans = [
        Span(span.start, span.end, span.style.replace(MUTED, CURSOR_FOREGROUND))
        if isinstance(span.style, str) and MUTED in span.style
        else span
        for span in content.spans
    ]
    return Content(content.plain, spans)


def same_content(a: Content, b: Content) -> bool:
    """Same text AND styles (`Content.__eq__` compares the text only)."""
    return a is b or (a.plain == b.plain and a.spans == b.spans)


class SelectableLines(ScrollView, can_focus=True):
    """Lines and items from `show(lines, items)`; `selected` is the selected item's key."""

    DEFAULT_CSS = """
    SelectableLines {
        height: 1fr;
        background: $surface;
        /* Room for the scrollbar always: lines laid out for the width stay whole when it comes. */
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
    }
    """

    BINDINGS = [
        binding("model-next", "move(1)", show=False),
        binding("model-previous", "move(-1)", show=False),
    ]

    class Selected(Message):
        """The selection moved to another item (the owner may offer other keys)."""

    class Resized(Message):
        """The width changed: the owner lays its lines out again."""

    def __init__(self, placeholder: Content | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: list[Content] = []
        self._items: list[Item] = []
        self._cursor = 0  # index into _items
        self._strips: dict[int, Strip] = {}
        self._placeholder = placeholder or Content("")
        self.line_renders = 0
        """Lines rendered since mount: what a repaint costs."""

    # -- what it shows -------------------------------------------------------------------

    @property
    def lines(self) -> list[Content]:
        return self._lines

    @property
    def line_width(self) -> int:
        """The width lines are drawn in (the scrollbar's column is not theirs)."""
        return self.scrollable_content_region.width

    @property
    def selected(self) -> Hashable | None:
        return self._items[self._cursor].key if self._items else None

    def show(self, lines: Sequence[Content], items: Sequence[Item]) -> None:
        """Take new lines; repaint the lines on screen that changed, and the selection if it moved."""
        key = self.selected
        old_lines, old_span = self._lines, self._span()
        self._lines, self._items = list(lines), list(items)
        keys = [item.key for item in self._items]
        self._cursor = keys.index(key) if key in keys else min(self._cursor, max(0, len(keys) - 1))
        new_span = self._span()
        if len(old_lines) != len(self._lines):
            self._strips.clear()
            self.virtual_size = Size(self.line_width, len(self._lines))
            self.refresh()
        else:
            changed = {i for i, (old, new) in enumerate(zip(old_lines, self._lines)) if not same_content(old, new)}
            if old_span != new_span:
                changed.update(range(*old_span), range(*new_span))
            self._repaint(changed)
        if new_span != old_span or key != self.selected:
            self._scroll_to_selected()
        if key != self.selected:
            self.post_message(self.Selected())

    def select(self, key: Hashable) -> bool:
        """Select the item with `key`; False if there is none."""
        keys = [item.key for item in self._items]
        if key not in keys:
            return False
        self._move_to(keys.index(key))
        return True

    def _span(self) -> tuple[int, int]:
        if not self._items:
            return (0, 0)
        item = self._items[self._cursor]
        return (item.start, item.end)

    def _repaint(self, indices: set[int]) -> None:
        for index in indices:
            self._strips.pop(index, None)
        top = int(self.scroll_offset.y)
        shown = sorted(i - top for i in indices if top <= i < top + self.size.height)
        if shown:  # one region from the first changed line on screen to the last
            self.refresh(Region(0, shown[0], self.line_width, shown[-1] - shown[0] + 1))

    # -- moving the selection ----------------------------------------------------------

    def _move_to(self, index: int) -> None:
        if not self._items:
            return
        index = max(0, min(len(self._items) - 1, index))
        if index == self._cursor:
            return
        old = self._span()
        self._cursor = index
        self._repaint(set(range(*old)) | set(range(*self._span())))
        self._scroll_to_selected()
        self.post_message(self.Selected())

    def _scroll_to_selected(self) -> None:
        start, end = self._span()
        if end > start:
            self.scroll_to_region(Region(0, start, 1, end - start), animate=False, immediate=True)

    def action_move(self, step: int) -> None:
        self._move_to(self._cursor + step)

    def _item_at_line(self, line: int) -> int | None:
        for index, item in enumerate(self._items):
            if item.start <= line < item.end or item.start > line:
                return index
        return len(self._items) - 1 if self._items else None

    def action_page_down(self) -> None:
        target = self._item_at_line(self._span()[0] + max(1, self.size.height - 1))
        if target is not None:
            self._move_to(target)

    def action_page_up(self) -> None:
        line = max(0, self._span()[0] - max(1, self.size.height - 1))
        target = self._item_at_line(line)
        if target is not None:
            self._move_to(target)

    def action_scroll_home(self) -> None:
        self._move_to(0)

    def action_scroll_end(self) -> None:
        self._move_to(len(self._items) - 1)

    def on_click(self, event: events.Click) -> None:
        line = int(self.scroll_offset.y) + event.y
        for index, item in enumerate(self._items):
            if item.start <= line < item.end:
                self._move_to(index)
                return

    # -- drawing -----------------------------------------------------------------------

    def on_resize(self) -> None:
        self._strips.clear()
        self.virtual_size = Size(self.line_width, len(self._lines))
        self.post_message(self.Resized())

    def notify_style_update(self) -> None:
        # A theme change re-resolves $variables; focus changes the selection's look.
        super().notify_style_update()
        self._strips.clear()
        self.refresh()

    def on_focus(self) -> None:
        self._repaint(set(range(*self._span())))

    def on_blur(self) -> None:
        self._repaint(set(range(*self._span())))

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.line_width
        if index >= len(self._lines):
            if index == 0:
                return self._strip(self._placeholder, width, "")
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(index)
        if strip is None or strip.cell_length != width:
            start, end = self._span()
            style = (SELECTED if self.has_focus else SELECTED_BLURRED) if start <= index < end else ""
            strip = self._strips[index] = self._strip(self._lines[index], width, style)
        return strip

    def _strip(self, content: Content, width: int, style: str) -> Strip:
        self.line_renders += 1
        line = content.truncate(width, pad=True)
        if style == SELECTED:  # muted text would fade into the cursor's colour: it takes the cursor's
            line = unmuted(line)
        if style:  # under the line's own colours: bars and warnings keep theirs
            line = line.stylize_before(style)
        return Strip(line.render_segments(self.visual_style), width)
