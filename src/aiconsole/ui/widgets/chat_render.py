"""Rows (`Strip`s) for the chat transcript: a reply's Markdown blocks and plain text, at one width.

A `RowRenderer` is built for one width and one theme (the transcript builds a new one when
either changes) and turns sanitised text into rows once; the transcript caches them.

- Markdown goes through Rich's Markdown on one shared parser, styled from the transcript's
  component classes (theme variables), code highlighted with a Pygments theme for dark or light.
  Rich's empty first and last lines are trimmed: the gaps between blocks are the transcript's.
- Plain text is wrapped as `Text(...)`, never parsed as markup.
- The unfinished end of a streaming reply (`TailRows`) is plain text too, wrapped as it grows:
  its complete lines once, the line still arriving each paint but frozen in FREEZE_CHARS
  stretches, so even a reply that is one huge line costs the same per paint.

Hyperlinks are off (DESIGN.md: links in chat Markdown are not opened). A reply is untrusted: a
link whose text says one address could point at another, and a terminal hyperlink or click
meta on a segment would put it one click away. So a link shows as "text (url)", an image as its
alt text and address, and any link or meta left on a segment is cleared before it reaches the screen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from markdown_it import MarkdownIt
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import ImageItem, Markdown, MarkdownElement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from rich.theme import Theme
from textual.strip import Strip

from aiconsole.domain.chat_blocks import BlockSplitter, freeze_point

__all__ = ["CODE_THEMES", "FREEZE_CHARS", "MARKDOWN_STYLES", "STYLE_PREFIX", "RowRenderer", "TailRows"]

FREEZE_CHARS = 2_000
CODE_THEMES = {True: "monokai", False: "default"}  # Pygments themes for dark and light app themes
STYLE_PREFIX = "chat-transcript--"
"""The transcript's component classes: `STYLE_PREFIX + name` for each name in MARKDOWN_STYLES."""

# Rich's Markdown styles, from the widget's component classes (theme variables).
MARKDOWN_STYLES = {
    "md-heading": ("markdown.h1", "markdown.h2", "markdown.h3", "markdown.h4", "markdown.h5", "markdown.h6"),
    "md-code": ("markdown.code",),
    "md-bullet": ("markdown.item.bullet", "markdown.item.number", "markdown.list"),
    "md-quote": ("markdown.block_quote",),
    "md-rule": ("markdown.hr", "markdown.h1.border", "markdown.table.border"),
    "md-link": ("markdown.link",),
    "md-url": ("markdown.link_url",),
    "md-table-header": ("markdown.table.header",),
}
# One parser for all blocks (building one costs more than parsing a paragraph); raw HTML is
# shown as the text it is (Rich drops the HTML it does not know).
_PARSER = MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table")


class _Image(ImageItem):
    """An image shows its alt text and its address, never a link."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text.assemble("🌆 ", self.text or "", f" ({self.destination})" if self.destination else "", end="")


class _ReplyMarkdown(Markdown):
    """Rich's Markdown on the shared parser, hyperlinks off (a link shows "text (url)")."""

    elements: ClassVar[dict[str, type[MarkdownElement]]] = {**Markdown.elements, "image": _Image}

    def __init__(self, markup: str, code_theme: str) -> None:  # Rich's own builds a parser per call
        self.markup, self.parsed = markup, _PARSER.parse(markup)
        self.code_theme = self.inline_code_theme = code_theme
        self.justify, self.style, self.hyperlinks, self.inline_code_lexer = None, "none", False, None


def _inert(segments: list[Segment]) -> list[Segment]:
    """No link or click meta reaches the screen (belt and braces: hyperlinks are off)."""
    return [
        Segment(text, style.clear_meta_and_links(), control) if style is not None and (style.link or style._meta) else
        Segment(text, style, control)
        for text, style, control in segments
    ]  # fmt: skip


class RowRenderer:
    """Rows at one width in one theme: everything here is computed once, not per block."""

    __slots__ = ("_base", "_code_theme", "_console", "_markdown_theme", "_options", "_styles", "_width", "blank")

    def __init__(self, console: Console, width: int, base: Style, styles: Mapping[str, Style], *, dark: bool) -> None:
        """`base`: the view's own style; `styles`: by component class (see STYLE_PREFIX)."""
        self._console, self._width, self._base, self._styles = console, width, base, styles
        self._code_theme = CODE_THEMES[dark]
        self._markdown_theme = Theme({
            key: styles[STYLE_PREFIX + name] for name, keys in MARKDOWN_STYLES.items() for key in keys
        })  # fmt: skip
        self._options = console.options.update(width=max(1, width), height=None, highlight=False)
        self.blank = Strip.blank(width, base)
        """A row with nothing on it, on the view's background."""

    def markdown_rows(self, source: str) -> list[Strip]:
        """A Markdown block (sanitised) as rows, without Rich's empty first and last lines."""
        console = self._console
        with console.use_theme(self._markdown_theme):
            markdown = _ReplyMarkdown(source, self._code_theme)
            lines = console.render_lines(markdown, self._options, style=self._base, pad=False)
        while lines and self.empty(lines[-1]):
            lines.pop()  # Rich opens tables, lists and quotes with empty lines: the gap is ours
        start = next((i for i, line in enumerate(lines) if not self.empty(line)), len(lines))
        return [Strip(_inert(line)).adjust_cell_length(self._width, self._base) for line in lines[start:]]

    def empty(self, line: list[Segment]) -> bool:
        """Nothing to see: spaces on the view's own background (a code block's padding is not)."""
        plain = (None, self._base.bgcolor)
        return all(not seg.text.strip() and (seg.style is None or seg.style.bgcolor in plain) for seg in line)

    def wrap(self, text: str, style_name: str) -> list[Strip]:
        """Plain text (never markup) wrapped to the width, in component class `style_name` ("": none)."""
        line = Text(text, style=self._styles.get(style_name) or Style(), overflow="fold", end="")
        lines = self._console.render_lines(line, self._options, style=self._base)
        return [Strip(segments, self._width) for segments in lines]


@dataclass
class TailRows:
    """What follows a streaming reply's finished blocks: a gap, its unfinished block as plain
    text, or a dim "…" while nothing came."""

    source: object = None
    """The splitter's `tail_lines` whose rows are in `lines` (a new list: a new block; None:
    wrap everything again, as after a width or theme change)."""
    wrapped: int = 0
    frozen: int = 0
    """Characters of the line still arriving already wrapped into `lines`."""
    lines: list[Strip] = field(default_factory=list)
    partial: list[Strip] = field(default_factory=list)
    gap: list[Strip] = field(default_factory=list)
    waiting: list[Strip] = field(default_factory=list)

    def rows(self) -> tuple[list[Strip], ...]:
        return self.gap, self.lines, self.partial, self.waiting

    def update(self, renderer: RowRenderer, splitter: BlockSplitter, *, blocks: int) -> None:
        """Rows of the unfinished block: complete lines wrapped once, the last line each paint.
        `blocks`: the reply's finished blocks so far."""
        lines = splitter.tail_lines
        if lines is not self.source:  # a new block: its rows afresh
            self.source, self.wrapped, self.frozen, self.lines = lines, 0, 0, []
        for line in lines[self.wrapped :]:
            self.lines += renderer.wrap(line[self.frozen :], "")
            self.frozen = 0
        self.wrapped = len(lines)
        partial = splitter.partial
        if (cut := freeze_point(partial, self.frozen, FREEZE_CHARS)) is not None:
            self.lines += renderer.wrap(partial[self.frozen : cut], "")
            self.frozen = cut
        self.partial = renderer.wrap(partial[self.frozen :], "") if len(partial) > self.frozen else []
        shown = self.lines or self.partial
        self.gap = [renderer.blank] if blocks and shown else []
        self.waiting = [] if blocks or shown else renderer.wrap("…", STYLE_PREFIX + "waiting")
