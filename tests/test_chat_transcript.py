"""ChatTranscript: hostile replies stay inert, Markdown blocks render once when finished, the view
follows the end until scrolled up, the reader's `push` never renders, history is not re-rendered."""

from __future__ import annotations

import time

from rich.style import Style
from textual.app import App, ComposeResult

from aiconsole.ui.widgets.chat_transcript import PAINT_INTERVAL_S, ChatTranscript

HOSTILE = [
    "Start \x1b[3",  # an SGR cut in two
    "1mred\x1b[0m ",
    "\x1b]52;c;",  # OSC 52 (write the clipboard), its body in a chunk of its own
    "aGk=",
    "\x07",
    "[bold red]markup[/] ",
    "\u202eevil ",  # right-to-left override
    "see [x](https://evil.example) and \x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\\n\n",
    "done",
]
CONTROL = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\n\t"} | set(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class TranscriptApp(App):
    def compose(self) -> ComposeResult:
        yield ChatTranscript()


def rows(transcript: ChatTranscript) -> list[str]:
    return [transcript.line_at(row).text.rstrip() for row in range(transcript.line_count)]


def all_text(transcript: ChatTranscript) -> str:
    return "\n".join(rows(transcript))


async def settle(pilot, transcript: ChatTranscript) -> None:
    """Until every block is rendered and the pushed pieces are painted."""
    for _ in range(100):
        await pilot.pause(PAINT_INTERVAL_S)
        painted = not transcript.is_streaming or transcript.painted_pieces == transcript.pieces_received
        if not transcript.pending_blocks and painted:
            return
    raise AssertionError("the transcript did not settle")


async def test_hostile_pieces_end_up_inert_on_screen() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("model")
        for piece in HOSTILE:
            transcript.push(piece)
            await pilot.pause(PAINT_INTERVAL_S * 1.5)  # a paint between pieces: the SGR is split across two
        assert transcript.reply_text == "".join(HOSTILE)  # the original, for the history
        transcript.end_reply("3 tokens")
        await settle(pilot, transcript)
        text = all_text(transcript)
        assert "Start red [bold red]markup[/] evil" in text
        assert "x (https://evil.example)" in text and "click" in text  # the URL shown, not a link
        assert "52;c" not in text and "aGk=" not in text and "\x1b" not in text
        assert transcript.last_reply_text == "".join(HOSTILE)
        for row in range(transcript.line_count):
            for segment in transcript.line_at(row):
                assert not CONTROL & set(segment.text), repr(segment.text)
                style = segment.style or Style()
                assert style.link is None and not style.meta, segment


async def test_a_code_block_shows_as_plain_text_until_its_fence_closes_then_highlighted() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("model")
        transcript.push("Here:\n\n```python\ndef f(x):\n    return x + 1\n")
        await settle(pilot, transcript)
        assert "```python" in rows(transcript)  # the unfinished block: plain text, as sent
        code_row = rows(transcript).index("def f(x):")
        assert len(_colours(transcript, code_row)) <= 1
        renders = transcript.block_renders
        transcript.push("```")
        await settle(pilot, transcript)
        assert transcript.block_renders == renders  # its closing line is not complete yet
        transcript.push("\nAfter.")
        await settle(pilot, transcript)
        assert transcript.block_renders == renders + 1
        shown = rows(transcript)
        assert "```python" not in shown and "```" not in shown
        code_row = next(i for i, row in enumerate(shown) if "def f(x):" in row)
        assert len(_colours(transcript, code_row)) >= 3  # keyword, name, punctuation: highlighted
        assert transcript.last_code_block() == "def f(x):\n    return x + 1"


def _colours(transcript: ChatTranscript, row: int) -> set:
    return {segment.style.color for segment in transcript.line_at(row) if segment.style and segment.text.strip()}


async def test_the_view_follows_the_end_until_scrolled_up_and_again_at_the_bottom() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(40, 10)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("model")
        for index in range(30):
            transcript.push(f"line {index}\n\n")
            await pilot.pause(PAINT_INTERVAL_S * 1.2)
            assert transcript.scroll_offset.y == transcript.max_scroll_y
        assert transcript.max_scroll_y > 20 and transcript.show_vertical_scrollbar
        transcript.scroll_to(y=3, animate=False)
        await pilot.pause()
        for index in range(30, 40):
            transcript.push(f"line {index}\n\n")
        await settle(pilot, transcript)
        assert transcript.scroll_offset.y == 3  # scrolled up: no jump
        transcript.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        transcript.push("line 40\n\nline 41\n\n")
        await settle(pilot, transcript)
        assert transcript.scroll_offset.y == transcript.max_scroll_y  # back at the bottom: follows again
        assert transcript.render_line(transcript.size.height - 1).text.strip() == "line 41"


async def test_waiting_line_then_text_then_stopped_footer() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("llama3.1:8b · auto: quick")
        await settle(pilot, transcript)
        assert rows(transcript)[-2:] == ["llama3.1:8b · auto: quick", "…"]
        transcript.push("Partial answer")
        await settle(pilot, transcript)
        assert rows(transcript)[-2:] == ["llama3.1:8b · auto: quick", "Partial answer"]  # the "…" gave way
        transcript.end_reply("2 tokens · $0.0001", stopped=True)
        await settle(pilot, transcript)
        assert rows(transcript)[-2:] == ["Partial answer", "■ stopped · 2 tokens · $0.0001"]
        warning = transcript.get_component_rich_style("chat-transcript--stopped", partial=True).color
        last = transcript.line_at(transcript.line_count - 1)
        assert warning is not None and any(s.style and s.style.color == warning for s in last if s.text.strip())


async def test_an_error_shows_in_the_error_colour() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("model")
        transcript.end_reply("", error="model 'x' not found\x1b[2J")
        await settle(pilot, transcript)
        assert rows(transcript)[-1] == "✗ model 'x' not found"
        error = transcript.get_component_rich_style("chat-transcript--error", partial=True).color
        assert any(s.style and s.style.color == error for s in transcript.line_at(transcript.line_count - 1))


async def test_push_only_appends_painting_happens_on_the_timer() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("model")
        await settle(pilot, transcript)
        renders, paints = transcript.block_renders, transcript.paints
        started = time.perf_counter()
        for index in range(1000):
            transcript.push(f"word {index}\n\n")
        pushing = time.perf_counter() - started
        assert (transcript.block_renders, transcript.paints, transcript.painted_pieces) == (renders, paints, 0)
        assert transcript.pieces_received == 1000 and pushing < 0.05
        await settle(pilot, transcript)
        assert transcript.paints > paints and transcript.painted_pieces == 1000


async def test_earlier_turns_are_not_rendered_again_while_a_reply_streams() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        for turn in range(40):
            transcript.add_turn("user", f"question {turn}")
            transcript.add_turn("assistant", f"## Answer {turn}\n\nSome *text*.\n\n```\ncode {turn}\n```", footer="1 s")
        await settle(pilot, transcript)
        before = transcript.block_renders
        transcript.begin_reply("model")
        for index in range(20):
            transcript.push(f"Paragraph {index}.\n\n")
            await pilot.pause(PAINT_INTERVAL_S / 2)
        transcript.end_reply("done")
        await settle(pilot, transcript)
        assert transcript.block_renders - before == 1 + 20 + 1  # header, 20 paragraphs, footer
        assert "Answer 39" in all_text(transcript) and rows(transcript)[-1] == "done"


async def test_history_renders_the_screen_first_and_the_rest_in_the_background() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        for turn in range(40):
            transcript.add_turn("assistant", "\n\n".join(f"Paragraph {turn}.{n}" for n in range(10)))
        transcript.paint()
        assert transcript.scroll_offset.y == transcript.max_scroll_y
        assert transcript.render_line(transcript.size.height - 1).text.strip() == "Paragraph 39.9"
        await settle(pilot, transcript)
        assert transcript.line_at(1).text.strip() == "Paragraph 0.0"


async def test_a_width_change_renders_again_for_the_new_width() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.add_turn("assistant", "word " * 60)
        await settle(pilot, transcript)
        wide = rows(transcript)
        await pilot.resize_terminal(40, 24)
        await settle(pilot, transcript)
        narrow = rows(transcript)
        assert len(narrow) > len(wide) and all(len(row) <= 39 for row in narrow)
        assert " ".join(" ".join(narrow[1:]).split()) == " ".join(" ".join(wide[1:]).split())


async def test_a_saturated_process_draws_blocks_on_screen_as_drafts_then_renders_them() -> None:
    """A max-speed stream keeps the process busy: blocks on screen are drawn as plain text (cheap)
    until the reader lets go, then rendered as Markdown."""
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("model")
        await settle(pilot, transcript)
        transcript._timer.pause()  # paints by hand, with the business the timer would have measured
        transcript.push("## Title\n\nSome **bold** text.\n\n")
        transcript._busy = 1.0
        transcript.paint()
        assert "## Title" in rows(transcript) and "Some **bold** text." in rows(transcript)
        assert transcript.pending_blocks == 2  # drafts still to render
        transcript._busy = 0.0
        transcript.paint()
        assert "Title" in rows(transcript) and "Some bold text." in rows(transcript)
        assert transcript.pending_blocks == 0


async def test_images_show_their_address_and_html_is_text() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.add_turn("assistant", "![a cat](https://img.example/cat.png)\n\n<script>alert(1)</script>")
        await settle(pilot, transcript)
        text = all_text(transcript)
        assert "a cat (https://img.example/cat.png)" in text and "<script>alert(1)</script>" in text


async def test_a_theme_change_renders_again_in_the_new_colours() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.add_turn("assistant", "## Heading\n\n```python\nx = 1\n```")
        await settle(pilot, transcript)
        code_row = rows(transcript).index(" x = 1")
        renders, before = transcript.block_renders, _colours(transcript, code_row)
        app.theme = "textual-light"
        await settle(pilot, transcript)
        assert transcript.block_renders == renders + 3 and _colours(transcript, code_row) != before


async def test_a_push_after_the_reply_ended_is_harmless() -> None:
    app = TranscriptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(ChatTranscript)
        transcript.begin_reply("model")
        transcript.push("kept")
        transcript.end_reply("", stopped=True)
        transcript.push("late")
        await settle(pilot, transcript)
        assert rows(transcript)[-2:] == ["kept", "■ stopped"] and transcript.last_reply_text == "kept"
