"""The chat conversation: one line-API view holding every turn as cached rows (`Strip`s).

Why this shape (DESIGN.md, performance facts): a Markdown widget per reply, re-rendered as
it grows, costs more with every token and every earlier reply. Here the network reader only
`push`es pieces into a list (O(1): it never waits for painting), and a 10 Hz timer paints:

- the pieces that came since the last paint are sanitised and split into Markdown blocks
  (`DisplayStream`; `reply_text` keeps the original);
- each finished block is rendered ONCE to rows (Rich's Markdown, hyperlinks off: a link
  shows as "text (url)", and no link or click meta reaches the screen);
- the unfinished rest is plain text: its complete lines wrapped once and cached, only the
  line still arriving wrapped again each paint (frozen in 2,000-character stretches, so even
  a reply that is one huge line costs the same per paint);
- the view follows the end while it is at the bottom; scrolled up, it stays put.
So a paint costs the same however long the reply and however many replies came before.

Rendering is lazy, newest first. A block waits, with an estimated height, until it is on
screen or there is time: each paint renders the blocks on screen, then others within a
budget that shrinks as the process gets busy (the reader goes first). A max-speed stream
that saturates the process is painted every 0.3 s, its blocks on screen drawn as plain text
for the moment. The same path serves a resumed chat (`add_turn` x 40 renders the screenful
at the bottom at once, the rest over the next ticks) and a width or theme change (every
block again from its sanitised source, those on screen first; the view keeps its top block).

Live figures (tokens/s, TTFT) are the pane's: it reads `pieces_received` for its status line.
Untrusted text is never parsed as markup: `Text(...)` for plain text, Markdown for replies.
Turning text into rows is `chat_render`'s (a `RowRenderer` per width and theme); this module
decides what is rendered when, and where each row goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from aiconsole.domain.chat_blocks import BlockSplitter, DisplayStream, RowIndex, code_blocks, estimate_rows
from aiconsole.domain.sanitize import sanitize, sanitize_line
from aiconsole.ui.widgets.chat_render import MARKDOWN_STYLES, STYLE_PREFIX, RowRenderer, TailRows

__all__ = ["PAINT_INTERVAL_S", "ChatTranscript"]

PAINT_INTERVAL_S = 0.1
"""At most 10 paints a second: a paint costs the same however many pieces came since the last."""
BUSY_LIMIT = 0.6
"""While a reply streams, blocks off screen are rendered only while the process used less than
this share of a core between the last two ticks (at most STREAM_BUDGET_S a paint)."""
STREAM_BUDGET_S = 0.03
IDLE_BUDGET_S = 0.05
"""Rendering per paint when nothing streams: short enough that keys are answered between slices."""
SATURATED = 0.85
"""This busy, the process is saturated by a max-speed stream: it paints every SATURATED_INTERVAL_S."""
SATURATED_INTERVAL_S = 0.3
BURST_RATE = 5_000
"""Pieces a second: a stream this fast is drawn in drafts (blocks on screen as plain text, rendered
when it calms down), as when saturated: no model streams this fast; a buffered burst does."""
MAX_MARKDOWN_CHARS = 30_000
"""A bigger block is shown as plain text: parsing and highlighting it would stall the screen."""
ROLE_LABELS = {"user": "you", "assistant": "assistant", "system": "system"}


@dataclass(slots=True)
class _Block:
    """A stretch of the transcript rendered at once: a Markdown block, or plain text in a style."""

    source: str
    """Sanitised: rendered again from here on a width or theme change."""
    style: str = ""
    """Component class of plain text; "" for Markdown."""
    gap: bool = False
    """A blank row before it."""
    rows: list[Strip] | None = None
    """None until rendered."""
    draft: bool = False
    """`rows` are its plain text, drawn while a max-speed stream saturates the process."""


@dataclass
class _Live:
    """The reply streaming now."""

    pieces: list[str] = field(default_factory=list)
    """As pushed: the original text."""
    consumed: int = 0
    taken_at: float = field(default_factory=time.perf_counter)
    rate: float = 0.0
    """Pieces a second pushed between the last two paints."""
    stream: DisplayStream = field(default_factory=DisplayStream)
    blocks: int = 0
    """Its finished blocks so far."""
    tail: TailRows = field(default_factory=TailRows)


class ChatTranscript(ScrollView, can_focus=True):
    """A whole conversation: `add_turn`, `begin_reply` / `push` / `end_reply`, `clear`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "chat-transcript--user", "chat-transcript--header", "chat-transcript--user-header",
        "chat-transcript--footer", "chat-transcript--stopped", "chat-transcript--error",
        "chat-transcript--waiting", *(STYLE_PREFIX + name for name in MARKDOWN_STYLES),
    }  # fmt: skip
    DEFAULT_CSS = """
    ChatTranscript {
        height: 1fr;
        background: $surface;
        overflow-x: hidden;
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
        & > .chat-transcript--user { color: $foreground; }
        & > .chat-transcript--user-header { color: $text-accent; text-style: bold; }
        & > .chat-transcript--header { color: $text-primary; text-style: bold; }
        & > .chat-transcript--footer { color: $foreground-muted; }
        & > .chat-transcript--waiting { color: $foreground-muted; }
        & > .chat-transcript--stopped { color: $text-warning; text-style: bold; }
        & > .chat-transcript--error { color: $text-error; }
        & > .chat-transcript--md-heading { color: $text-primary; text-style: bold; }
        & > .chat-transcript--md-code { color: $text-accent; }
        & > .chat-transcript--md-bullet { color: $text-secondary; text-style: bold; }
        & > .chat-transcript--md-quote { color: $foreground-muted; text-style: italic; }
        & > .chat-transcript--md-rule { color: $foreground-muted; }
        & > .chat-transcript--md-link { color: $text-primary; text-style: underline; }
        & > .chat-transcript--md-url { color: $foreground-muted; }
        & > .chat-transcript--md-table-header { color: $text-primary; text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._blocks: list[_Block] = []
        self._index = RowIndex()
        self._queue: list[int] = []
        """Blocks to render, oldest first, taken from the end (some may be rendered already)."""
        self._unrendered = 0
        self._live: _Live | None = None
        self._pieces: list[str] = []
        """The live reply's pieces (a list nobody reads between replies: a late push is harmless)."""
        self._pushed = 0
        self._last_reply = ""
        self._width = 0
        self._looks: tuple | None = None
        self._renderer: RowRenderer  # from `_restyle`, at mount and on each width or theme change
        self._clocks = (time.process_time(), time.perf_counter())
        self._busy = 0.0
        """Share of a core the process used between the last two ticks."""
        self._painted_at = 0.0
        self._timer: Timer | None = None
        self._dirty = False
        self.block_renders = 0
        """Blocks rendered (as Markdown or styled text) since mount: for tests and benchmarks."""
        self.paints = 0
        self.painted_pieces = 0
        """Pieces of the live reply on screen as of the last paint (for benchmarks' lag)."""

    # -- what the pane calls ------------------------------------------------------------

    def add_turn(self, role: str, text: str, *, header: str = "", footer: str = "", stopped: bool = False) -> None:
        """A finished turn: the user's prompt (plain text) or a stored reply (Markdown)."""
        if self._live is not None:
            raise RuntimeError("add_turn during a live reply: end_reply first")
        self._add_header(header or ROLE_LABELS.get(role, role), user=role == "user")
        if role == "assistant":
            self._last_reply = text
            splitter = BlockSplitter()
            for number, block in enumerate([*splitter.feed(sanitize(text)), *splitter.finish()]):
                self._add(_Block(block, gap=number > 0))
        else:
            self._add(_Block(sanitize(text), "chat-transcript--user"))
        self._add_footer(footer, stopped=stopped, error="")
        self._wake()

    def begin_reply(self, header: str) -> None:
        """A reply starts streaming: shown with a dim "…" until text comes."""
        if self._live is not None:
            self.end_reply("", stopped=True)
        self._add_header(header or ROLE_LABELS["assistant"], user=False)
        self._live = _Live()
        self._pieces, self._pushed, self.painted_pieces = self._live.pieces, 0, 0
        self._wake()

    def push(self, piece: str) -> None:
        """The reader's call for each piece: appends and counts; never renders or refreshes."""
        self._pieces.append(piece)
        self._pushed += 1

    def end_reply(self, footer: str, *, stopped: bool = False, error: str = "") -> None:
        """The reply ended: the rest is rendered as Markdown, then its footer (plain text;
        "stopped" in the warning colour, an error in the error colour)."""
        live = self._live
        if live is None:
            return
        self._take_pieces(live)
        self._add_blocks(live, live.stream.finish())
        self._last_reply = "".join(live.pieces)
        self._live, self._pieces = None, []
        self._add_footer(footer, stopped=stopped, error=error)
        self._wake()
        self.paint()

    def clear(self) -> None:
        self._blocks, self._queue, self._unrendered = [], [], 0
        self._index.reset(())
        self._live, self._pieces, self._last_reply = None, [], ""
        self._wake()
        self.paint()

    @property
    def is_streaming(self) -> bool:
        return self._live is not None

    @property
    def pieces_received(self) -> int:
        """Pieces pushed into the live reply (for the pane's live tokens/s)."""
        return self._pushed

    @property
    def reply_text(self) -> str:
        """The live reply so far, as pushed (not sanitised); "" when none streams."""
        return "".join(self._live.pieces) if self._live is not None else ""

    @property
    def last_reply_text(self) -> str:
        """The latest reply, live or finished, as sent (for copying)."""
        return self.reply_text if self._live is not None else self._last_reply

    def last_code_block(self) -> str | None:
        blocks = code_blocks(self.last_reply_text)
        return blocks[-1] if blocks else None

    @property
    def line_count(self) -> int:
        return self._index.total + sum(len(rows) for rows in self._live_rows())

    @property
    def pending_blocks(self) -> int:
        """Blocks not rendered yet (off screen, or drafts)."""
        return self._unrendered

    # -- building the block list -------------------------------------------------------

    def _add_header(self, text: str, *, user: bool) -> None:
        style = "chat-transcript--user-header" if user else "chat-transcript--header"
        self._add(_Block(sanitize_line(text), style, gap=bool(self._blocks)))

    def _add_footer(self, footer: str, *, stopped: bool, error: str) -> None:
        if error:
            self._add(_Block("✗ " + sanitize_line(error), "chat-transcript--error"))
        if stopped:
            text = "■ stopped" + (" · " + sanitize_line(footer) if footer else "")
            self._add(_Block(text, "chat-transcript--stopped"))
        elif footer:
            self._add(_Block(sanitize_line(footer), "chat-transcript--footer"))

    def _add_blocks(self, live: _Live, blocks: list[str]) -> None:
        for block in blocks:
            self._add(_Block(block, gap=live.blocks > 0))
            live.blocks += 1

    def _add(self, block: _Block) -> None:
        self._queue.append(len(self._blocks))
        self._unrendered += 1
        self._blocks.append(block)
        self._index.append(self._estimate(block))

    def _estimate(self, block: _Block) -> int:
        fenced = not block.style and block.source.lstrip().startswith(("```", "~~~"))  # padded above and below
        return estimate_rows(block.source, self._width) + block.gap + 2 * fenced

    def _wake(self) -> None:
        self._dirty = True
        if self._timer is not None:
            self._timer.resume()

    # -- painting ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._restyle()
        self._timer = self.set_interval(PAINT_INTERVAL_S, self._tick, pause=not (self._live or self._unrendered))

    def _tick(self) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        (last_cpu, last_wall), self._clocks = self._clocks, (cpu, wall)
        self._busy = (cpu - last_cpu) / max(1e-3, wall - last_wall)
        if self._live is not None and self._busy > SATURATED and wall - self._painted_at < SATURATED_INTERVAL_S:
            return
        self._painted_at = wall
        self.paint()
        if self._live is None and not self._unrendered and self._timer is not None:
            self._timer.pause()

    def paint(self) -> None:
        """One paint: new pieces in, the blocks on screen rendered, others within the budget."""
        live = self._live
        if not self._width or not (self._dirty or self._unrendered or (live and self._pushed != live.consumed)):
            return
        self.paints += 1
        anchored = self._at_bottom()
        height_before = self.line_count
        if live is not None:
            live.rate = (self._pushed - live.consumed) / max(1e-3, time.perf_counter() - live.taken_at)
            self._take_pieces(live)
            live.tail.update(self._renderer, live.stream.splitter, blocks=live.blocks)
        self._dirty = False
        shift = self._render_on_screen(anchored, draft=self._bursting(live))
        shift += self._render_queued(time.perf_counter() + self._budget(), anchored)
        height = self.line_count
        self._set_virtual_height(height)
        if anchored and not self.is_vertical_scrollbar_grabbed:
            self.scroll_to(y=max(0, height - self.scrollable_content_region.height), animate=False, force=True)
        elif shift:
            self.scroll_to(y=self.scroll_offset.y + shift, animate=False, force=True)
        if height != height_before or anchored or shift or live is not None:
            self.refresh()

    def _set_virtual_height(self, height: int) -> None:
        """`virtual_size = ...` without the layout of the whole screen that comes with it
        (measured: most of a frame's cost): only this view's scrollbar depends on it, and
        `_scroll_update` updates that (and lays out again when it appears or goes)."""
        size = Size(self._width, height)
        if size != self.virtual_size:
            self.set_reactive(ScrollView.virtual_size, size)
            self._scroll_update(size)

    def _bursting(self, live: _Live | None) -> bool:
        return live is not None and (self._busy > SATURATED or live.rate > BURST_RATE)

    def _budget(self) -> float:
        """Seconds for blocks off screen in this paint (see BUSY_LIMIT)."""
        if self._live is None:
            return IDLE_BUDGET_S
        return min(STREAM_BUDGET_S, max(0.0, (BUSY_LIMIT - self._busy) * PAINT_INTERVAL_S))

    def _at_bottom(self) -> bool:
        return not self.size or self.scroll_offset.y >= self.max_scroll_y

    def _take_pieces(self, live: _Live) -> None:
        """The pieces pushed since the last paint: sanitised, split, finished blocks added."""
        count = self._pushed
        live.taken_at = time.perf_counter()
        if count != live.consumed:
            text = "".join(live.pieces[live.consumed : count])
            live.consumed = self.painted_pieces = count
            self._add_blocks(live, live.stream.feed(text))

    def _live_rows(self) -> tuple[list[Strip], ...]:
        """What follows the finished blocks while a reply streams."""
        return self._live.tail.rows() if self._live is not None else ()

    def _render_on_screen(self, anchored: bool, *, draft: bool) -> int:
        """Render the blocks on screen that are not (after following the end, when anchored);
        `draft`: as plain text for now (a tenth of the cost). Returns the rows added above."""
        shift, view, blocks = 0, self.scrollable_content_region.height, self._blocks
        for _ in range(len(blocks)):  # each round renders one block at least
            top = max(0, self.line_count - view) if anchored else self.scroll_offset.y + shift
            due = [i for i in self._index.overlapping(top, top + view)
                   if blocks[i].rows is None or (blocks[i].draft and not draft)]  # fmt: skip
            if not due:
                break
            for index in reversed(due):
                shift += self._render_block(index, top, draft=draft)
        return 0 if anchored else shift

    def _render_queued(self, deadline: float, anchored: bool) -> int:
        """Render waiting blocks, newest first, until `deadline`; returns the rows added above the view."""
        shift, top = 0, self.scroll_offset.y
        while self._unrendered and self._queue and time.perf_counter() < deadline:
            index = self._queue.pop()
            if self._blocks[index].rows is None or self._blocks[index].draft:
                shift += self._render_block(index, top + shift)
        return 0 if anchored else shift

    def _render_block(self, index: int, top: int, *, draft: bool = False) -> int:
        """Render block `index`; returns the rows it added if it starts above row `top`, else 0."""
        block = self._blocks[index]
        draft = draft and not block.style  # plain text is its own draft
        if draft:
            rows = [self._renderer.blank] * block.gap + self._renderer.wrap(block.source, "")
        else:
            rows = self._render(block)
            self._unrendered -= 1
        block.rows, block.draft = rows, draft
        delta = self._index.set_height(index, len(rows))
        return delta if self._index.starts[index] < top else 0

    def _render(self, block: _Block) -> list[Strip]:
        self.block_renders += 1
        if block.style or len(block.source) > MAX_MARKDOWN_CHARS:
            rows = self._renderer.wrap(block.source, block.style)
        else:
            rows = self._renderer.markdown_rows(block.source)
        return [self._renderer.blank] * block.gap + rows

    # -- width and theme ------------------------------------------------------------------

    def _restyle(self) -> bool:
        """Styles from the component classes (theme variables); True when they or the width changed."""
        looks = (self.rich_style, self.app.current_theme.name, self._width)
        if looks == self._looks:
            return False
        self._looks = looks
        # Whole styles, not partial ones: a partial style drops a colour's alpha, and the muted
        # colours ($foreground-muted) are the foreground at part opacity over the background.
        styles = {name: self.get_component_rich_style(name) for name in self.COMPONENT_CLASSES}
        self._renderer = RowRenderer(self.app.console, self._width, looks[0], styles, dark=self.app.current_theme.dark)
        return True

    def on_resize(self) -> None:
        self._width = self.scrollable_content_region.width
        if self._restyle():
            self._rerender_all()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self._looks is not None and self._restyle():  # a theme change (focus and hover change nothing here)
            self._rerender_all()

    def _rerender_all(self) -> None:
        """Every block again from its source: estimates now, those on screen at once, the rest later."""
        anchored = self._at_bottom()
        keep = self._index.find(int(self.scroll_offset.y)) if self._index.total else 0
        for block in self._blocks:
            block.rows, block.draft = None, False
        self._index.reset(self._estimate(block) for block in self._blocks)
        self._queue, self._unrendered = list(range(len(self._blocks))), len(self._blocks)
        if self._live is not None:
            self._live.tail.source = None  # its rows are wrapped again
        self._set_virtual_height(self.line_count)
        if not anchored and self._blocks:
            self.scroll_to(y=self._index.starts[keep], animate=False, force=True)
        self._wake()
        self.paint()

    # -- drawing -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        return self.line_at(int(self.scroll_offset.y) + y)

    def line_at(self, row: int) -> Strip:
        """Row `row` of the whole transcript (blank where a block is not rendered yet)."""
        if row < self._index.total:
            index = self._index.find(row)
            rows = self._blocks[index].rows
            offset = row - self._index.starts[index]
            return rows[offset] if rows is not None and offset < len(rows) else self._renderer.blank
        row -= self._index.total
        for rows in self._live_rows():
            if row < len(rows):
                return rows[row]
            row -= len(rows)
        return self._renderer.blank
