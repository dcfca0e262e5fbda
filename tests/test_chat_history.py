"""The chat history store: original text kept byte for byte, private files, and nothing lost."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from aiconsole.domain.chat import ChatMessage, ReplyStats
from aiconsole.domain.chat_export import chat_markdown
from aiconsole.services.chat_history import (
    SCHEMA_VERSION,
    ChatHistory,
    ChatHistoryError,
    ChatSummary,
    StoredChat,
    StoredMessage,
    UnknownChat,
    write_export,
)

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def user(text: str, at: datetime = T0) -> StoredMessage:
    return StoredMessage("user", text, at)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "chats.sqlite3"


@pytest.fixture
def history(path: Path) -> Iterator[ChatHistory]:
    with ChatHistory.open(path) as opened:
        yield opened


def new(history: ChatHistory, at: datetime = T0, **target: str) -> int:
    fields = {"vm": "inference", "service": "ollama", "model": "auto", **target}
    return history.new_chat(**fields, at=at)  # type: ignore[arg-type]


# --- what is stored ----------------------------------------------------------------------

HOSTILE_TEXTS = {
    "csi split mid-sequence": "red \x1b[3" + "1mtext\x1b[0m and a cut-off \x1b[",
    "osc 52 clipboard write": "copy \x1b]52;c;cm0gLXJmIH4K\x07 done",
    "8-bit controls": "\x9b2J\x9d0;title\x9c",
    "textual markup": "[bold red]x[/] [link=file:///etc/passwd]click[/link]",
    "bidi override": "admin\u202e\u2066txt.exe\u2069\u202c",
    "nul and other controls": "before\x00after\x07\x08\x7f",
    "line endings": "crlf\r\nlf\ncr\rtab\t",
    "emoji and combining": "👩‍💻 e\u0301 🇯🇵",
    "lone surrogate": "json said \ud800 here",
}


@pytest.mark.parametrize("text", HOSTILE_TEXTS.values(), ids=HOSTILE_TEXTS.keys())
def test_original_text_round_trips_byte_for_byte(history: ChatHistory, path: Path, text: str) -> None:
    chat = new(history)
    sent = StoredMessage(
        "assistant", text, T0, model=text, route_rule=text, route_reason=text, error=text,
        stats=ReplyStats(None, None, None, text),
    )  # fmt: skip
    history.add_message(chat, sent)
    history.set_title(chat, text)
    history.close()
    with ChatHistory.open(path) as reopened:
        loaded = reopened.load(chat)
    (message,) = loaded.messages
    assert message == sent
    for field in (message.content, message.model, message.route_rule, message.error, loaded.summary.title):
        assert field.encode("utf-8", "surrogatepass") == text.encode("utf-8", "surrogatepass")


def test_nul_is_stored_inside_the_text_not_cut_there(history: ChatHistory, path: Path) -> None:
    history.add_message(new(history), user("a\x00b"))
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT typeof(content), length(CAST(content AS BLOB)) FROM messages").fetchone() == (
            "text",
            3,
        )


STATS_CASES = {
    "server counted": ReplyStats(0.42, 312, 48.125, "stop", 20, "server", 6.9),
    "client, stopped": ReplyStats(0.1, 3, 12.5, "cancelled", None, "client", 0.4),
    "nothing measured": ReplyStats(None, None, None, "error"),
}


@pytest.mark.parametrize("stats", STATS_CASES.values(), ids=STATS_CASES.keys())
def test_stats_round_trip_with_every_field(history: ChatHistory, stats: ReplyStats) -> None:
    chat = new(history)
    history.add_message(chat, StoredMessage("assistant", "ok", T0, model="llama3", stats=stats))
    assert history.load(chat).messages[0].stats == stats


def test_message_without_stats_loads_without_stats(history: ChatHistory) -> None:
    chat = new(history)
    history.add_message(chat, user("hi"))
    assert history.load(chat).messages[0].stats is None


def test_stopped_is_read_from_the_done_reason() -> None:
    assert StoredMessage("assistant", "Once", T0, stats=ReplyStats(0.1, 2, None, "cancelled")).stopped
    assert not StoredMessage("assistant", "Done.", T0, stats=ReplyStats(0.1, 2, None, "stop")).stopped
    assert not StoredMessage("assistant", "", T0, error="refused").stopped


def test_messages_refuse_naive_times_and_unknown_roles(history: ChatHistory) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        StoredMessage("user", "hi", datetime(2026, 5, 4, 10, 0))
    with pytest.raises(ValueError, match="role must be one of"):
        StoredMessage("tool", "hi", T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        history.new_chat(vm="v", service="s", model="m", at=datetime(2026, 5, 4))
    assert history.count() == 0


def test_times_come_back_aware_in_utc(history: ChatHistory) -> None:
    plus_two = timezone(timedelta(hours=2))
    chat = new(history, at=datetime(2026, 5, 4, 12, 0, 0, 123456, tzinfo=plus_two))
    history.add_message(chat, user("hi", datetime(2026, 5, 4, 12, 1, tzinfo=plus_two)))
    loaded = history.load(chat)
    assert loaded.summary.created_at == datetime(2026, 5, 4, 10, 0, 0, 123456, tzinfo=UTC)
    assert loaded.summary.created_at.tzinfo is UTC
    assert loaded.messages[0].at == minutes(1) and loaded.messages[0].at.tzinfo is UTC


# --- chats and their order ---------------------------------------------------------------


def test_new_chat_is_untitled_and_empty(history: ChatHistory) -> None:
    chat = new(history, persona="coder")
    assert history.chats() == [ChatSummary(chat, "", "inference", "ollama", "auto", "coder", T0, T0, 0)]
    assert history.load(chat) == StoredChat(history.chats()[0], ())


def test_messages_keep_the_order_they_were_added(history: ChatHistory) -> None:
    chat = new(history)
    texts = ["first", "second", "third"]
    for n, text in enumerate(texts):
        history.add_message(chat, user(text, minutes(10 - n)))  # stamps going backwards
    loaded = history.load(chat)
    assert [m.content for m in loaded.messages] == texts
    assert loaded.summary.messages == 3


def test_chats_list_newest_updated_first_and_limit(history: ChatHistory) -> None:
    a, b, c = new(history, minutes(0)), new(history, minutes(1)), new(history, minutes(2))
    history.add_message(a, user("bump a", minutes(5)))
    assert [s.id for s in history.chats()] == [a, c, b]
    assert [s.id for s in history.chats(limit=2)] == [a, c]
    assert history.chats()[0].updated_at == minutes(5) and history.chats()[0].created_at == minutes(0)


def test_an_older_message_does_not_move_a_chat_back(history: ChatHistory) -> None:
    chat = new(history, minutes(0))
    history.add_message(chat, user("late", minutes(9)))
    history.add_message(chat, user("clock stepped back", minutes(3)))
    assert history.load(chat).summary.updated_at == minutes(9)


def test_first_user_message_titles_the_chat(history: ChatHistory) -> None:
    chat = new(history)
    history.add_message(chat, StoredMessage("system", "You are terse.", T0))
    assert history.load(chat).summary.title == ""
    history.add_message(chat, user("\n   How do I   \t undo\x1b[31m a commit?  \nmore detail"))
    history.add_message(chat, user("A later question"))
    assert history.load(chat).summary.title == "How do I undo a commit?"


def test_long_title_is_cut_to_80_with_an_ellipsis(history: ChatHistory) -> None:
    chat = new(history)
    history.add_message(chat, user("word " * 40))
    title = history.load(chat).summary.title
    assert len(title) == 80 and title.endswith("…") and title.startswith("word word")


def test_operator_title_is_kept_and_target_can_change(history: ChatHistory) -> None:
    chat = new(history)
    history.set_title(chat, "Named by me")
    history.add_message(chat, user("first question"))
    history.set_target(chat, vm="training", service="vllm", model="qwen2.5:7b", persona="")
    summary = history.load(chat).summary
    assert (summary.title, summary.vm, summary.service, summary.model, summary.persona) == (
        "Named by me",
        "training",
        "vllm",
        "qwen2.5:7b",
        "",
    )
    assert summary.updated_at == T0  # changing the target is not a message


def test_history_resumes_with_every_turn_but_empty_replies() -> None:
    chat = StoredChat(
        ChatSummary(1, "t", "vm", "svc", "auto", "", T0, T0, 5),
        (
            StoredMessage("system", "Be brief.", T0),
            user("one"),
            StoredMessage("assistant", "", T0, error="connection refused"),
            user("one, again"),
            StoredMessage("assistant", "partial an", T0, error="stream cut"),
        ),
    )
    assert chat.history() == [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "one"),
        ChatMessage("user", "one, again"),
        ChatMessage("assistant", "partial an"),
    ]


# --- search ------------------------------------------------------------------------------


def titled(history: ChatHistory, title: str, *texts: str) -> int:
    chat = new(history)
    history.set_title(chat, title)
    for text in texts:
        history.add_message(chat, user(text))
    return chat


def test_search_matches_title_or_any_message_ignoring_ascii_case(history: ChatHistory) -> None:
    by_title = titled(history, "Docker networking")
    by_content = titled(history, "misc", "hello", "How do I expose a DOCKER port?")
    titled(history, "unrelated", "nothing here")
    assert {s.id for s in history.chats(search="docker")} == {by_title, by_content}
    assert history.chats(search="no such words") == []


@pytest.mark.parametrize(
    ("search", "expected_title"),
    [("100%", "100% sure"), ("a_b", "a_b"), ("C:\\tmp", "C:\\tmp"), ("%", "100% sure"), ("_", "a_b")],
)
def test_search_wildcards_are_literal(history: ChatHistory, search: str, expected_title: str) -> None:
    for title in ("100% sure", "100 percent", "a_b", "axb", "C:\\tmp", "C:tmp"):
        titled(history, title)
    assert [s.title for s in history.chats(search=search)] == [expected_title]


def test_empty_search_lists_everything(history: ChatHistory) -> None:
    titled(history, "one"), titled(history, "two")
    assert len(history.chats(search="")) == 2 == history.count()


# --- unknown ids and delete --------------------------------------------------------------


def test_unknown_chat_is_a_key_error_with_a_clear_message(history: ChatHistory) -> None:
    with pytest.raises(UnknownChat) as caught:
        history.load(42)
    assert isinstance(caught.value, KeyError) and caught.value.chat_id == 42
    assert str(caught.value) == "no chat with id 42 in the chat history"


@pytest.mark.parametrize(
    "action",
    [
        lambda h: h.add_message(42, user("orphan")),
        lambda h: h.set_title(42, "x"),
        lambda h: h.set_target(42, vm="v", service="s", model="m", persona=""),
        lambda h: h.delete(42),
    ],
    ids=["add_message", "set_title", "set_target", "delete"],
)
def test_changing_an_unknown_chat_raises_and_writes_nothing(
    history: ChatHistory, path: Path, action: Callable[[ChatHistory], object]
) -> None:
    with pytest.raises(UnknownChat):
        action(history)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


def test_delete_takes_the_messages_with_it(history: ChatHistory, path: Path) -> None:
    gone, kept = new(history), new(history)
    for chat in (gone, kept):
        history.add_message(chat, user("q"))
        history.add_message(chat, StoredMessage("assistant", "a", T0))
    history.delete(gone)
    assert history.count() == 1 and [s.id for s in history.chats()] == [kept]
    with sqlite3.connect(path) as raw:  # the cascade, seen from outside: no orphan rows
        assert raw.execute("SELECT chat_id, COUNT(*) FROM messages GROUP BY chat_id").fetchall() == [(kept, 2)]
    with pytest.raises(UnknownChat):
        history.load(gone)


def test_deleted_ids_are_never_reused(history: ChatHistory) -> None:
    first = new(history)
    history.delete(first)
    assert new(history) != first


# --- durability, sharing, files ----------------------------------------------------------


def test_reopening_keeps_everything(path: Path) -> None:
    with ChatHistory.open(path) as history:
        chat = new(history)
        history.add_message(chat, user("remember me"))
        before = history.load(chat)
    with ChatHistory.open(path) as history:
        assert history.load(chat) == before
        assert history.schema_version == SCHEMA_VERSION


def test_each_message_is_committed_when_add_message_returns(history: ChatHistory, path: Path) -> None:
    chat = new(history)
    history.add_message(chat, user("on disk now"))
    with sqlite3.connect(path) as outsider:  # another connection, while ours is still open
        assert outsider.execute("SELECT content FROM messages").fetchall() == [("on disk now",)]


def test_two_instances_on_one_file_take_turns_writing(path: Path) -> None:
    with ChatHistory.open(path) as tui, ChatHistory.open(path) as cli:
        chat = new(tui)
        for n in range(20):
            writer = tui if n % 2 == 0 else cli
            writer.add_message(chat, user(f"turn {n}", minutes(n)))
        assert [m.content for m in cli.load(chat).messages] == [f"turn {n}" for n in range(20)]
        assert tui.load(chat) == cli.load(chat)


def test_threads_may_share_one_instance(history: ChatHistory) -> None:
    chat = new(history)

    def write(worker: int) -> None:
        for n in range(25):
            history.add_message(chat, user(f"{worker}-{n}"))

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contents = [m.content for m in history.load(chat).messages]
    assert sorted(contents) == sorted(f"{w}-{n}" for w in range(4) for n in range(25))
    assert [c for c in contents if c.startswith("2-")] == [f"2-{n}" for n in range(25)]  # each thread in order


@posix_only
def test_files_and_created_folder_are_private(path: Path) -> None:
    with ChatHistory.open(path) as history:
        history.add_message(new(history), user("secret"))
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (path, wal)}
    assert modes == {"chats.sqlite3": 0o600, "chats.sqlite3-wal": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@posix_only
def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    ChatHistory.open(tmp_path / "chats.sqlite3").close()
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_a_file_that_is_not_a_database_is_refused_untouched(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    with pytest.raises(ChatHistoryError) as caught:
        ChatHistory.open(path)
    assert str(path) in str(caught.value) and "not a database" in str(caught.value)
    assert path.read_bytes() == b"these are my notes, not a database\n" * 100


def test_a_newer_schema_is_refused_untouched(path: Path) -> None:
    with ChatHistory.open(path) as history:
        history.add_message(new(history), user("from the future"))
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ChatHistoryError) as caught:
        ChatHistory.open(path)
    assert str(path) in str(caught.value) and f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT content FROM messages").fetchall() == [("from the future",)]
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)


def test_someone_elses_database_is_refused_untouched(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(ChatHistoryError, match="not an aiconsole chat history"):
        ChatHistory.open(path)
    with sqlite3.connect(path) as raw:
        assert [row[0] for row in raw.execute("SELECT name FROM sqlite_master")] == ["notes"]


# --- export to disk ----------------------------------------------------------------------


def test_export_writes_a_private_file_and_never_overwrites(history: ChatHistory, tmp_path: Path) -> None:
    chat = new(history)
    history.add_message(chat, user("Export me\x1b]52;c;AAAA\x07 please"))
    stored = history.load(chat)
    out = tmp_path / "exports"
    first, second, third = (write_export(stored, out, UTC) for _ in range(3))
    assert [p.name for p in (first, second, third)] == [
        f"chat-{chat}-export-me-please.md",
        f"chat-{chat}-export-me-please-2.md",
        f"chat-{chat}-export-me-please-3.md",
    ]
    assert first.read_text(encoding="utf-8") == chat_markdown(stored, UTC) == third.read_text(encoding="utf-8")
    assert "\x1b" not in first.read_text(encoding="utf-8")
    if os.name == "posix":
        assert {stat.S_IMODE(p.stat().st_mode) for p in (first, second, third)} == {0o600}


@posix_only
def test_export_does_not_write_through_a_planted_link(history: ChatHistory, tmp_path: Path) -> None:
    chat = new(history)
    history.set_title(chat, "planted")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "exports"
    out.mkdir()
    (out / f"chat-{chat}-planted.md").symlink_to(victim)
    written = write_export(history.load(chat), out, UTC)
    assert written.name == f"chat-{chat}-planted-2.md"
    assert victim.read_text() == "precious"
