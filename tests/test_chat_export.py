"""The Markdown export: a cleaned, well-formed document whose turns no reply can forge or swallow.

Structure is checked with markdown-it-py (a CommonMark parser Rich already depends on), so
"a heading" means what a Markdown viewer will show, not what our own code thinks.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from markdown_it import MarkdownIt

from aiconsole.domain.chat import ReplyStats
from aiconsole.domain.chat_export import chat_markdown, contained_markdown, export_filename
from aiconsole.domain.chat_history import ChatSummary, StoredChat, StoredMessage
from aiconsole.domain.sanitize import sanitize

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
STATS = ReplyStats(0.42, 312, 48.1, "stop", prompt_tokens=20, counted_by="server", duration_s=6.9)
HOSTILE = "a\x1b[31mred\x1b[0m \x1b]52;c;ZXZpbA==\x07b \u202eevil\u202c\r\x9b2J\x00c\td\nline2"


def summary(title: str = "Fix my loop", *, chat_id: int = 7, model: str = "auto", persona: str = "") -> ChatSummary:
    return ChatSummary(chat_id, title, "inference", "ollama", model, persona, T0, T0 + timedelta(minutes=3), 2)


def user(text: str) -> StoredMessage:
    return StoredMessage("user", text, T0)


def reply(text: str, **fields: object) -> StoredMessage:
    fields.setdefault("model", "llama3.1:8b")
    return StoredMessage("assistant", text, T0 + timedelta(seconds=5), **fields)  # type: ignore[arg-type]


def export(*messages: StoredMessage, **summary_fields: object) -> str:
    return chat_markdown(StoredChat(summary(**summary_fields), messages), UTC)  # type: ignore[arg-type]


def headings(markdown: str) -> list[tuple[str, str]]:
    """(tag, text) of every h1 and h2 a CommonMark viewer shows at the document's top level."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    return [
        (token.tag, tokens[i + 1].content)
        for i, token in enumerate(tokens)
        if token.type == "heading_open" and token.level == 0 and token.tag in ("h1", "h2")
    ]


def test_document_reads_title_setting_turns_and_figures() -> None:
    chat = StoredChat(
        summary(persona="coder"),
        (
            user("Why does my loop never end?"),
            reply("Your `while` never changes `i`.", route_rule="code", route_reason="mentions 'loop'", stats=STATS),
        ),
    )
    assert chat_markdown(chat, ZoneInfo("Europe/Berlin")) == (
        "# Fix my loop\n\n"
        "*VM inference · service ollama · model auto · persona coder · created 2026-05-04 12:00 CEST*\n\n"
        "## You\n\n"
        "Why does my loop never end?\n\n"
        "## llama3.1:8b\n\n"
        "*routed by rule code: mentions 'loop'*\n\n"
        "Your `while` never changes `i`.\n\n"
        "*TTFT 0.42 s · 312 tokens · 48.1 tokens/s*\n"
    )


def test_created_time_is_shown_in_the_given_zone() -> None:
    assert "created 2026-05-04 10:00 UTC" in chat_markdown(StoredChat(summary(), ()), UTC)
    assert "created 2026-05-04 19:00 JST" in chat_markdown(StoredChat(summary(), ()), ZoneInfo("Asia/Tokyo"))


def test_stopped_reply_is_marked_and_client_figures_say_so() -> None:
    stopped = ReplyStats(0.3, 40, 20.0, "cancelled", counted_by="client")
    text = export(user("Tell me a story"), reply("Once upon", stats=stopped))
    assert "## llama3.1:8b (stopped)" in text
    assert "*TTFT 0.30 s · ~40 tokens · ~20.0 tokens/s · stopped*" in text


def test_failed_reply_shows_why_and_no_empty_figures() -> None:
    nothing = ReplyStats(None, None, None, "error")
    text = export(user("hi"), reply("", error="connection refused", stats=nothing))
    assert text.endswith("## llama3.1:8b\n\n*failed: connection refused*\n")
    assert "no tokens" not in text and "(no reply)" not in text


def test_empty_reply_without_error_says_so_and_system_turns_are_labelled() -> None:
    text = export(StoredMessage("system", "Be brief.", T0), user("hi"), reply("", model=""))
    assert headings(text) == [("h1", "Fix my loop"), ("h2", "System"), ("h2", "You"), ("h2", "auto")]
    assert "## auto\n\n*(no reply)*\n" in text  # no model recorded: the chat's setting names the speaker


def test_untitled_chat_is_named_by_its_id() -> None:
    assert chat_markdown(StoredChat(summary(""), ()), UTC).startswith("# Chat 7\n")


def test_content_and_labels_are_sanitised_newlines_and_tabs_kept() -> None:
    text = export(
        user(HOSTILE),
        reply(HOSTILE, model="evil\x1b]0;title\x07model", error="bad\x1b[2Jthing", route_reason="why\u202e"),
        title="title\x1b]52;c;AAAA\x07 here",
    )
    assert sanitize(text) == text
    assert "\x1b" not in text and "\u202e" not in text and "\r" not in text and "\x00" not in text
    assert "ZXZpbA" not in text  # the OSC 52 payload is gone, not just its introducer
    assert "ared b evilc\td\nline2" in text
    assert "# title here\n" in text and "## evilmodel\n" in text and "*failed: badthing*" in text


def test_markup_in_a_reply_stays_literal_text() -> None:
    assert "[bold red]x[/]" in export(reply("[bold red]x[/]"))


def test_lone_surrogate_becomes_replacement_character() -> None:
    text = export(reply("bad \ud800 half"))
    assert "bad \ufffd half" in text
    text.encode("utf-8")  # writable as UTF-8


def test_reply_headings_cannot_forge_turns() -> None:
    text = export(user("q"), reply("# Big\n## You\nsome text\n### Three\n###### Six"), user("next"))
    assert headings(text) == [("h1", "Fix my loop"), ("h2", "You"), ("h2", "llama3.1:8b"), ("h2", "You")]
    assert "\n### Big\n#### You\n" in text and "\n##### Three\n###### Six\n" in text


def test_setext_underlines_cannot_make_headings() -> None:
    text = export(reply("Title\n=====\nSection\n---\ntext"), user("next"))
    assert headings(text) == [("h1", "Fix my loop"), ("h2", "llama3.1:8b"), ("h2", "You")]


@pytest.mark.parametrize(
    ("reply_text", "closer"),
    [
        ("Here:\n```python\nprint('cut off", "```"),
        ("~~~\ncode", "~~~"),
        ("````md\n```\ninner fence is text\n```", "````"),
        ("1. step\n   ```bash\n   make", "   ```"),
        ("<!-- a comment never ended", "-->"),
        ("<script>\nlet x = 1", "</script>"),
        ("<pre>\nkept", "</pre>"),
    ],
)
def test_block_left_open_is_closed_at_the_end_of_its_turn(reply_text: str, closer: str) -> None:
    text = export(user("q"), reply(reply_text), user("next"), reply("## answer"))
    assert f"{closer}\n\n## You\n\nnext" in text
    assert headings(text) == [
        ("h1", "Fix my loop"),
        ("h2", "You"),
        ("h2", "llama3.1:8b"),
        ("h2", "You"),
        ("h2", "llama3.1:8b"),
    ]


def test_heading_lines_inside_a_fence_are_left_as_written() -> None:
    body = contained_markdown("```md\n## inside\n# also\n```\n## outside")
    assert body == "```md\n## inside\n# also\n```\n#### outside"


def test_closed_blocks_are_not_closed_twice() -> None:
    for text in ("```\ncode\n```", "~~~~\ncode\n~~~~~", "<!-- one line -->", "<pre>x</pre>", "```js\n```"):
        assert contained_markdown(text) == text


def test_backtick_run_with_backticks_after_it_is_inline_code_not_a_fence() -> None:
    assert contained_markdown("```inline``` then text") == "```inline``` then text"


def test_fence_needs_its_own_character_and_length_to_close() -> None:
    assert contained_markdown("````\n```\n~~~~") == "````\n```\n~~~~\n````"


SAFE_NAME = re.compile(r"chat-7-[a-z0-9]+(?:-[a-z0-9]+)*\.md")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Fix my loop", "chat-7-fix-my-loop.md"),
        ("../../etc/passwd", "chat-7-etc-passwd.md"),
        ("..\\..\\windows\\system32", "chat-7-windows-system32.md"),
        ("\x1b]0;pwned\x07Hello\x1b[31m world", "chat-7-hello-world.md"),
        ("Café crème brûlée", "chat-7-cafe-creme-brulee.md"),
        ("", "chat-7-untitled.md"),
        ("///...", "chat-7-untitled.md"),
        ("日本語のタイトル", "chat-7-untitled.md"),
        ("\u202etxt.exe", "chat-7-txt-exe.md"),
        ("a" * 39 + " bcd", "chat-7-" + "a" * 39 + ".md"),  # cut to 40 leaves no trailing dash
    ],
)
def test_export_filename_is_a_safe_slug(title: str, expected: str) -> None:
    name = export_filename(summary(title))
    assert name == expected
    assert SAFE_NAME.fullmatch(name)
    assert len(name.removeprefix("chat-7-").removesuffix(".md")) <= 40
