"""Markdown blocks of a streamed reply, found as the text arrives. Pure: no Textual, no Rich.

Why. Rendering a reply as Markdown on every token costs more with every token (the whole
text is parsed again). The chat view renders each *finished* block once and shows only the
unfinished rest as plain text, so it needs to know, as text streams in, where blocks end:

- at a blank line (only spaces/tabs) outside a fenced code block;
- a fenced code block (``` or ~~~, three or more, an info string after it; a backtick
  fence's info holds no backtick) ends when its closing fence line is complete: the same
  character, at least as long, at most 3 spaces of indent, nothing after it but spaces.
  Lines after the closing fence start a new block, blank line or not.

A block is only decided on complete lines, so feeding a text in any chunking gives the same
blocks. Each feed costs O(len(text fed)), however long the unfinished block: the line still
arriving is kept as a list of parts (joined once, when its newline comes), and only new text
is searched for newlines, so a 10,000-token reply that is one huge code block is never rescanned.

Blocks come back without the blank lines that separate them (and without a final newline).
A fence indented 4 spaces or more (deeper in a nested list) is not a fence here, as in
CommonMark at top level: a blank line inside such a code block splits it.

Also here, pure helpers of the chat view: `DisplayStream` (the sanitised display copy of a
reply, split into blocks), `RowIndex` (where each block starts, in rows, while heights
change), `estimate_rows` and `freeze_point`.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

from aiconsole.domain.sanitize import StreamSanitizer

__all__ = ["BlockSplitter", "DisplayStream", "RowIndex", "code_blocks", "estimate_rows", "freeze_point"]

_OPENING = re.compile(r"( {0,3})(?:(`{3,})([^`]*)|(~{3,})(.*))")
"""An opening fence: indent, then a backtick run with an info string free of backticks, or a tilde run."""


def _opening_fence(line: str) -> tuple[str, int, int] | None:
    """(fence char, fence length, indent) when `line` opens a fenced code block."""
    if "```" not in line and "~~~" not in line:  # the common case, at C speed
        return None
    match = _OPENING.fullmatch(line)
    if match is None:
        return None
    run = match[2] or match[4]
    return run[0], len(run), len(match[1])


def _closes(line: str, char: str, length: int) -> bool:
    """True when `line` closes a fence of `length` x `char` (more is fine, indent <= 3)."""
    body = line.lstrip(" ")
    if len(line) - len(body) > 3:
        return False
    run = body.rstrip(" \t\r")
    return len(run) >= length and not run.strip(char)


class BlockSplitter:
    """Splits streamed Markdown into blocks; see the module's docstring.

    splitter = BlockSplitter()
    for piece in stream:
        for block in splitter.feed(piece):   # blocks that became finished
            render(block)
    render_plain(splitter.tail)               # the unfinished rest, while streaming
    for block in splitter.finish():           # the end: what is left, as blocks
        render(block)
    """

    __slots__ = ("_fence", "_lines", "_partial", "_parts")

    def __init__(self) -> None:
        self._lines: list[str] = []
        """Complete lines of the unfinished block (replaced by a new list when a block ends)."""
        self._parts: list[str] = []
        """Pieces of the line still arriving (no newline yet)."""
        self._partial: str | None = ""
        """`_parts` joined, or None when pieces came since it was joined."""
        self._fence: tuple[str, int, int] | None = None
        """(char, length, indent) of the open fence, when inside a fenced code block."""

    # -- what is unfinished --------------------------------------------------------------

    @property
    def tail_lines(self) -> Sequence[str]:
        """Complete lines of the unfinished block, without newlines. The same list object
        grows until the block ends; a new one starts with the next block."""
        return self._lines

    @property
    def partial(self) -> str:
        """The line still arriving (after the last newline)."""
        if self._partial is None:
            joined = "".join(self._parts)
            self._parts[:] = [joined] if joined else []
            self._partial = joined
        return self._partial

    @property
    def tail(self) -> str:
        """All of the unfinished block: its complete lines and the line still arriving."""
        lines = "\n".join(self._lines)
        return f"{lines}\n{self.partial}" if self._lines else self.partial

    @property
    def in_fence(self) -> bool:
        """Inside a fenced code block that has not closed yet."""
        return self._fence is not None

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, text: str) -> list[str]:
        """Take more text; returns the blocks it finished (often none)."""
        finished: list[str] = []
        start = 0
        while (newline := text.find("\n", start)) >= 0:
            piece = text[start:newline]
            if self._parts:
                self._parts.append(piece)
                line = "".join(self._parts)
                self._parts.clear()
            else:
                line = piece
            self._partial = ""
            self._take_line(line, finished)
            start = newline + 1
        if start < len(text):
            self._parts.append(text[start:] if start else text)
            self._partial = None
        return finished

    def finish(self) -> list[str]:
        """The stream ended: the line still arriving counts as complete; returns the last blocks.
        An unclosed fence ends here (Markdown shows it as code to the end)."""
        finished: list[str] = []
        if self._parts:
            line = "".join(self._parts)
            self._parts.clear()
            self._take_line(line, finished)
        self._partial = ""
        if self._lines:
            finished.append(self._take_block())
        self._fence = None
        return finished

    def _take_line(self, line: str, finished: list[str]) -> None:
        if self._fence is not None:
            self._lines.append(line)
            char, length, _ = self._fence
            if _closes(line, char, length):
                self._fence = None
                finished.append(self._take_block())
            return
        if not line.strip():  # a blank line ends the block (blank lines between blocks vanish)
            if self._lines:
                finished.append(self._take_block())
            return
        self._fence = _opening_fence(line)
        self._lines.append(line)

    def _take_block(self) -> str:
        block = "\n".join(self._lines)
        self._lines = []  # a new list: holders of `tail_lines` see that the block changed
        return block


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks in `text`, in order (for "copy the last code
    block"). The fence's own indent is taken off its lines; an unclosed fence runs to the end."""
    blocks: list[str] = []
    fence: tuple[str, int, int] | None = None
    body: list[str] = []
    for line in text.split("\n"):
        if fence is None:
            fence = _opening_fence(line)
            body = []
            continue
        char, length, indent = fence
        if _closes(line, char, length):
            blocks.append("\n".join(body))
            fence = None
        else:
            body.append(_dedent(line.rstrip("\r"), indent))
    if fence is not None:
        blocks.append("\n".join(body))
    return blocks


def _dedent(line: str, indent: int) -> str:
    """`line` less up to `indent` leading spaces (as CommonMark does for an indented fence's lines)."""
    if not indent:
        return line
    body = line.lstrip(" ")
    return line[min(indent, len(line) - len(body)) :]


# --- for the chat view --------------------------------------------------------------------------

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""What `sanitize` can take out (tests/test_chat_blocks.py checks it against `sanitize`)."""


class DisplayStream:
    """The display copy of a streamed reply: sanitised as `StreamSanitizer` does (a sequence
    split across chunks is caught), then split into blocks (`splitter`: its tail and partial).

    Faster for the common chunk with nothing to take out: the sanitiser's regex costs ~0.5 us
    a token, about what the whole network client costs on a busy loop. Such a chunk passes
    unchanged when the sanitiser holds nothing back, which is known without asking it: after
    a chunk with no unsafe character that it returned unchanged, it holds nothing (a held
    sequence start would have taken some of that chunk; a new one needs an unsafe character).
    """

    __slots__ = ("_held", "_sanitizer", "splitter")

    def __init__(self) -> None:
        self._sanitizer = StreamSanitizer()
        self._held = False
        self.splitter = BlockSplitter()

    def feed(self, text: str) -> list[str]:
        """More of the reply, as sent; returns the (sanitised) blocks it finished."""
        return self.splitter.feed(self._shown(text))

    def finish(self) -> list[str]:
        return self.splitter.feed(self._sanitizer.flush()) + self.splitter.finish()

    def _shown(self, text: str) -> str:
        if not self._held and not _UNSAFE.search(text):
            return text
        shown = self._sanitizer.feed(text)
        self._held = shown != text or _UNSAFE.search(text) is not None
        return shown


class RowIndex:
    """Where each block of a view starts, in rows, while heights change (an estimate until the
    block is rendered). `find` is O(log n); appending O(1); a height change moves the starts
    of the blocks after it (they are few: the blocks that change are mostly the newest)."""

    __slots__ = ("starts", "total")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.total = 0

    def __len__(self) -> int:
        return len(self.starts)

    def append(self, height: int) -> None:
        self.starts.append(self.total)
        self.total += height

    def height(self, index: int) -> int:
        end = self.starts[index + 1] if index + 1 < len(self.starts) else self.total
        return end - self.starts[index]

    def set_height(self, index: int, height: int) -> int:
        """Returns the change (rows added, or removed if negative)."""
        delta = height - self.height(index)
        if delta:
            starts = self.starts
            for later in range(index + 1, len(starts)):
                starts[later] += delta
            self.total += delta
        return delta

    def find(self, row: int) -> int:
        """The block holding `row` (0 <= row < total)."""
        return bisect_right(self.starts, row) - 1

    def overlapping(self, top: int, bottom: int) -> range:
        """The blocks with rows in [top, bottom)."""
        return range(max(0, bisect_right(self.starts, top) - 1), bisect_left(self.starts, bottom))

    def reset(self, heights: Iterable[int]) -> None:
        self.starts, self.total = [], 0
        for height in heights:
            self.append(height)


def estimate_rows(text: str, width: int) -> int:
    """Rows `text` takes wrapped at `width`, roughly (a block's height before it is rendered)."""
    width = max(1, width)
    return sum(len(line) // width + 1 for line in text.split("\n"))


def freeze_point(line: str, frozen: int, stretch: int) -> int | None:
    """Where to cut a line still arriving that is longer than `stretch` past `frozen`, so that
    the view wraps again each paint only the part after the cut (a word boundary when there is
    one in the stretch); None while it is short enough."""
    if len(line) - frozen <= stretch:
        return None
    end = len(line) - stretch // 4
    return line.rfind(" ", frozen, end) + 1 or end
