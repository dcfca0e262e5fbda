"""BlockSplitter: Markdown blocks found as a reply streams, the same in any chunking, at a cost
that does not grow with the unfinished block; code_blocks for "copy the last code block"."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from aiconsole.domain.chat_blocks import (
    _UNSAFE,
    BlockSplitter,
    DisplayStream,
    RowIndex,
    code_blocks,
    estimate_rows,
    freeze_point,
)
from aiconsole.domain.sanitize import sanitize

REPLY = """\
## Fitting a model

A 70B model at q4 needs about **40 GB**.
It also needs room for the KV cache.

| GPU | VRAM |
|-----|------|
| 4090 | 24 GB |

```python
def fits(weights, free):

    return weights <= free
```
Text right after a fence.

~~~~
a tilde fence, with a ``` inside
~~~
still inside (the closing run is too short)
~~~~~

1. one
2. two

   ```bash
   ollama ps
   ```

> quoted

Last paragraph, no newline at the end"""

EXPECTED = [
    "## Fitting a model",
    "A 70B model at q4 needs about **40 GB**.\nIt also needs room for the KV cache.",
    "| GPU | VRAM |\n|-----|------|\n| 4090 | 24 GB |",
    "```python\ndef fits(weights, free):\n\n    return weights <= free\n```",
    "Text right after a fence.",
    "~~~~\na tilde fence, with a ``` inside\n~~~\nstill inside (the closing run is too short)\n~~~~~",
    "1. one\n2. two",
    "   ```bash\n   ollama ps\n   ```",
    "> quoted",
    "Last paragraph, no newline at the end",
]


def split(text: str, cuts: list[int]) -> tuple[list[str], list[list[str]]]:
    """All blocks of `text` fed in chunks cut at `cuts`, and what each feed returned."""
    splitter = BlockSplitter()
    bounds = [0, *cuts, len(text)]
    per_feed = [splitter.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return [block for blocks in per_feed for block in blocks] + splitter.finish(), per_feed


def test_blocks_of_a_reply_in_one_piece() -> None:
    assert split(REPLY, [])[0] == EXPECTED


def test_any_chunking_gives_the_same_blocks() -> None:
    rng = random.Random(20261122)
    for _ in range(400):
        cuts = sorted(rng.sample(range(1, len(REPLY)), rng.randint(1, 60)))
        assert split(REPLY, cuts)[0] == EXPECTED, cuts


def test_every_single_character_fed_alone() -> None:
    assert split(REPLY, list(range(1, len(REPLY))))[0] == EXPECTED


def test_random_texts_in_random_chunks_match_one_piece() -> None:
    """Texts made of the awkward parts (fences of both kinds and lengths, blank lines with
    spaces, \\r\\n), cut anywhere: the blocks never depend on the chunking."""
    parts = ["```", "````", "~~~", "```py", "``` x`y", "    ```", "\n", "\n\n", " \n", "\r\n", "text", "  ", "`", "~"]
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 40)))
        whole = split(text, [])[0]
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12)))) if len(text) > 1 else []
        assert split(text, cuts)[0] == whole, (text, cuts)


def test_a_block_is_returned_by_the_feed_that_completes_it() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("First para") == []
    assert splitter.tail == "First para"
    assert splitter.feed("graph.\n") == []  # a newline alone does not end a paragraph
    assert splitter.tail_lines == ["First paragraph."] and splitter.partial == ""
    assert splitter.feed("\n") == ["First paragraph."]
    assert splitter.tail == ""


def test_a_code_block_is_finished_only_when_its_closing_fence_line_is_complete() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("```python\nx = 1\n\ny = 2\n") == []  # the blank line is inside the fence
    assert splitter.in_fence
    assert splitter.feed("``") == []
    assert splitter.feed("`") == []  # the fence's characters are there, its line is not complete
    assert splitter.feed(" \n") == ["```python\nx = 1\n\ny = 2\n``` "]
    assert not splitter.in_fence and splitter.tail == ""


def test_closing_fences_that_do_not_close() -> None:
    splitter = BlockSplitter()
    splitter.feed("````\n```\n~~~~\n    ````\n```` x\n")
    assert splitter.in_fence  # shorter, other char, indented 4, text after: none closes
    assert splitter.feed("   `````\n") == ["````\n```\n~~~~\n    ````\n```` x\n   `````"]


def test_not_fences() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("``` a`b\nstill a paragraph\n\n") == ["``` a`b\nstill a paragraph"]
    assert splitter.feed("    ```\nindented code\n\n") == ["    ```\nindented code"]
    assert splitter.feed("``\n\n") == ["``"]


def test_blank_lines_between_blocks_vanish() -> None:
    assert split("\n\n \n\t\na\n\n\n\nb\n\n", [])[0] == ["a", "b"]


def test_finish_closes_an_unfinished_fence_and_resets() -> None:
    splitter = BlockSplitter()
    splitter.feed("```\ncode")
    assert splitter.finish() == ["```\ncode"]
    assert not splitter.in_fence
    assert splitter.feed("new\n\n") == ["new"]
    assert splitter.finish() == []


def test_tail_lines_is_a_new_list_for_each_block() -> None:
    """The chat view caches the rows of the unfinished block's lines: a new list says 'new block'."""
    splitter = BlockSplitter()
    splitter.feed("a\nb\n")
    first = splitter.tail_lines
    splitter.feed("c\n")
    assert splitter.tail_lines is first and list(first) == ["a", "b", "c"]
    splitter.feed("\nd\n")
    assert splitter.tail_lines is not first and list(splitter.tail_lines) == ["d"]


@pytest.mark.parametrize("fenced", [True, False], ids=["one huge code block", "one huge line"])
def test_feeding_cost_does_not_grow_with_the_unfinished_block(fenced: bool) -> None:
    """10,000 tokens into one unfinished block: the last 1,000 feeds cost what the first 1,000 did.
    (A rescan of the tail per feed would make the last ones ~10x slower.)"""
    token = "x = 1  # tokens\n" if fenced else "word "
    splitter = BlockSplitter()
    splitter.feed("```python\n" if fenced else "")

    def thousand() -> float:
        started = time.perf_counter()
        for index in range(1000):
            splitter.feed(token)
            if index % 30 == 0:  # the view reads the line still arriving once a paint (~30 tokens)
                splitter.partial  # noqa: B018
        return time.perf_counter() - started

    first = min(thousand() for _ in range(2))
    for _ in range(6):
        thousand()
    last = min(thousand() for _ in range(2))
    assert splitter.in_fence == fenced
    assert last < first * 3 + 0.002, (first, last)


def test_code_blocks() -> None:
    text = "intro\n```python\na = 1\n\nb = 2\n```\ntext\n   ~~~\n   indented\n  two\n   ~~~\n```\nunclosed"
    assert code_blocks(text) == ["a = 1\n\nb = 2", "indented\ntwo", "unclosed"]
    assert code_blocks("no code") == []
    assert code_blocks(REPLY)[-1] == "ollama ps"


# --- helpers of the chat view ---------------------------------------------------------------------

HOSTILE_PARTS = [
    "text ",
    "more words\n",
    "\n\n",
    "```py\n",
    "```\n",
    "\x1b[31m",
    "\x1b[",
    "1m",
    "\x1b]52;c;aGk=\x07",
    "\x1b]8;;https://x.example\x1b\\",
    "\x1b",
    "\\",
    "\x07",
    "\x9b2J",
    "\x9d0;t\x9c",
    "\u202e",
    "\r",
    "\x00",
    "[bold]m[/] ",
    "é€ ",
    "\t",
]


def display_blocks(text: str, cuts: list[int]) -> list[str]:
    stream = DisplayStream()
    bounds = [0, *cuts, len(text)]
    blocks = [block for a, b in itertools.pairwise(bounds) for block in stream.feed(text[a:b])]
    return blocks + stream.finish()


def test_the_display_stream_is_the_sanitised_text_split_in_any_chunking() -> None:
    """Its fast path for clean chunks never lets through what `sanitize` takes out of the whole."""
    rng = random.Random(11)
    for _ in range(500):
        text = "".join(rng.choice(HOSTILE_PARTS) for _ in range(rng.randint(1, 30)))
        splitter = BlockSplitter()
        expected = splitter.feed(sanitize(text)) + splitter.finish()
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 15)))) if len(text) > 1 else []
        assert display_blocks(text, cuts) == expected, (text, cuts)


def test_every_character_sanitize_takes_out_is_one_the_fast_path_checks_for() -> None:
    missed = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and sanitize(chr(c)) != chr(c)
              and not _UNSAFE.search(chr(c))]  # fmt: skip
    assert missed == []


def test_row_index() -> None:
    index = RowIndex()
    for height in (1, 3, 2):
        index.append(height)
    assert (index.starts, index.total) == ([0, 1, 4], 6)
    assert [index.find(row) for row in range(6)] == [0, 1, 1, 1, 2, 2]
    assert list(index.overlapping(2, 5)) == [1, 2] and list(index.overlapping(0, 1)) == [0]
    assert index.set_height(1, 5) == 2
    assert (index.starts, index.total, index.height(1)) == ([0, 1, 6], 8, 5)
    assert index.set_height(2, 0) == -2 and index.find(5) == 1
    index.reset([2, 2])
    assert (index.starts, index.total, len(index)) == ([0, 2], 4, 2)


def test_estimate_rows_and_freeze_point() -> None:
    assert estimate_rows("a" * 80 + "\n\nb", 40) == 3 + 1 + 1
    assert freeze_point("word " * 10, 0, 100) is None
    line = "word " * 1000  # 5,000 characters
    cut = freeze_point(line, 0, 2000)
    assert cut is not None and line[cut - 1] == " " and len(line) - cut <= 2000
    assert freeze_point(line, cut, 2000) is None
    assert freeze_point("x" * 5000, 0, 2000) == 4500  # no space: a hard cut
