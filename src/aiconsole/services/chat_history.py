"""The chat history: every chat and its turns in one SQLite file, private to the user.

It is a SQLite file like the ledger (services/sqlite_file.py: WAL, a lock so threads share
one connection, a busy timeout so the TUI and a CLI share the file, all-or-nothing
migrations). Each write is one immediate transaction committed before the call returns, so
a message is on disk once `add_message` returns and a kill loses nothing said before it.
Times are stored as UTC epoch REAL, given and returned aware.

What is stored is the original text (see domain/chat_history.py); only display and export
clean it. SQLite text holds NUL characters when bound as parameters, as here. Text with a
lone surrogate (a server's JSON may say "\\ud800") cannot be UTF-8, so it is kept as a BLOB
of its "surrogatepass" bytes instead of being refused: nothing said is lost. Search reads
neither past a NUL nor inside such a BLOB, and LIKE folds case for ASCII letters only.

Chats are private: a folder created here is 0700 and the file 0600 (SQLite gives its -wal
and -shm files the database's mode). An existing folder or file keeps the mode it has.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from aiconsole.domain.chat import ReplyStats
from aiconsole.domain.chat_export import chat_markdown, export_filename
from aiconsole.domain.chat_history import ChatSummary, StoredChat, StoredMessage, title_from  # re-exported too
from aiconsole.services.sqlite_file import Migration, SqliteFile, from_ts, statements, to_ts

APPLICATION_ID = 0x61694348
""""aiCH" in the file header: a file with tables but not this mark is someone else's, refused untouched."""
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
EXPORT_MAX_SUFFIX = 1000

_SCHEMA_V1 = (
    # AUTOINCREMENT: ids are never reused, so an id the UI still holds, or one in an export's
    # file name, cannot come to mean another chat after a delete.
    """CREATE TABLE chats (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL DEFAULT '',
        vm TEXT NOT NULL,
        service TEXT NOT NULL,
        model TEXT NOT NULL,
        persona TEXT NOT NULL DEFAULT '',
        created_ts REAL NOT NULL,
        updated_ts REAL NOT NULL
    )""",
    "CREATE INDEX chats_by_updated ON chats (updated_ts, id)",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        at_ts REAL NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        route_rule TEXT NOT NULL DEFAULT '',
        route_reason TEXT NOT NULL DEFAULT '',
        stats TEXT,  -- ReplyStats as JSON; NULL when there are none
        error TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX messages_by_chat ON messages (chat_id, id)",
)

MIGRATIONS: tuple[Migration, ...] = (statements(*_SCHEMA_V1),)
"""MIGRATIONS[n] takes the schema from version n to n + 1; append, never edit."""
SCHEMA_VERSION = len(MIGRATIONS)

_SUMMARY_SELECT = (
    "SELECT c.id, c.title, c.vm, c.service, c.model, c.persona, c.created_ts, c.updated_ts, "
    "(SELECT COUNT(*) FROM messages m WHERE m.chat_id = c.id) FROM chats c"
)
_MESSAGE_COLUMNS = "role, content, at_ts, model, route_rule, route_reason, stats, error"


class ChatHistoryError(Exception):
    """The history file (or an export) cannot be used; the message names the file and the reason."""


class UnknownChat(KeyError):
    """No chat has this id (deleted, or never stored)."""

    def __init__(self, chat_id: int) -> None:
        super().__init__(chat_id)
        self.chat_id = chat_id

    def __str__(self) -> str:  # KeyError's own str() is the repr of its argument
        return f"no chat with id {self.chat_id} in the chat history"


def _text_in(value: str) -> str | bytes:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: keep it as bytes rather than refuse it
        return value.encode("utf-8", "surrogatepass")
    return value


def _text_out(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _stats_in(stats: ReplyStats | None) -> str | None:
    return None if stats is None else json.dumps(dataclasses.asdict(stats))


def _stats_out(text: str | None) -> ReplyStats | None:
    if text is None:
        return None
    known = {field.name for field in dataclasses.fields(ReplyStats)}
    data = {key: value for key, value in json.loads(text).items() if key in known}
    return ReplyStats(**data)


def _summary(row: tuple[Any, ...]) -> ChatSummary:
    chat_id, title, vm, service, model, persona, created, updated, count = row
    texts = (_text_out(value) for value in (title, vm, service, model, persona))
    return ChatSummary(chat_id, *texts, from_ts(created), from_ts(updated), count)


def _message(row: tuple[Any, ...]) -> StoredMessage:
    role, content, at, model, rule, reason, stats, error = row
    return StoredMessage(
        role, _text_out(content), from_ts(at), _text_out(model), _text_out(rule), _text_out(reason),
        _stats_out(stats), _text_out(error),
    )  # fmt: skip


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ChatHistory(SqliteFile):
    """Chats and their messages in one SQLite file."""

    error = ChatHistoryError
    what = "chat history"
    migrations = MIGRATIONS
    application_id = APPLICATION_ID
    connection_pragmas = ("foreign_keys=ON",)  # deletes cascade only with it, and SQLite does not keep it in the file

    @classmethod
    def _create_file(cls, path: Path) -> None:
        """Create the file 0600 (its new folders 0700) before SQLite would, with the umask's mode."""
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
        except FileExistsError:
            pass  # an existing file keeps its mode and content; SQLite decides if it is a database

    def new_chat(self, *, vm: str, service: str, model: str, persona: str = "", at: datetime) -> int:
        """Start an untitled chat with no messages; its id."""
        ts = to_ts(at, "at")
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO chats (vm, service, model, persona, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (_text_in(vm), _text_in(service), _text_in(model), _text_in(persona), ts, ts),
            )
            return int(cursor.lastrowid or 0)

    def add_message(self, chat_id: int, message: StoredMessage) -> None:
        """Append `message`, committed before this returns; the first user message titles an untitled chat."""
        ts = to_ts(message.at, "message.at")
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT title = '' AND NOT EXISTS "
                "(SELECT 1 FROM messages WHERE chat_id = chats.id AND role = 'user') FROM chats WHERE id = ?",
                (chat_id,),
            ).fetchone()
            if row is None:
                raise UnknownChat(chat_id)
            connection.execute(
                f"INSERT INTO messages (chat_id, {_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chat_id, message.role, _text_in(message.content), ts, _text_in(message.model),
                    _text_in(message.route_rule), _text_in(message.route_reason), _stats_in(message.stats),
                    _text_in(message.error),
                ),
            )  # fmt: skip
            if row[0] and message.role == "user" and (title := title_from(message.content)):
                connection.execute("UPDATE chats SET title = ? WHERE id = ?", (_text_in(title), chat_id))
            # max(): a message stamped earlier (a clock stepped back) does not sink the chat in the list.
            connection.execute("UPDATE chats SET updated_ts = max(updated_ts, ?) WHERE id = ?", (ts, chat_id))

    def set_title(self, chat_id: int, title: str) -> None:
        self._update_chat(chat_id, "title = ?", (_text_in(title),))

    def set_target(self, chat_id: int, *, vm: str, service: str, model: str, persona: str) -> None:
        """Where the chat's next replies come from (a resumed chat may move to another model)."""
        values = tuple(_text_in(value) for value in (vm, service, model, persona))
        self._update_chat(chat_id, "vm = ?, service = ?, model = ?, persona = ?", values)

    def _update_chat(self, chat_id: int, assignments: str, values: tuple[str | bytes, ...]) -> None:
        with self._transaction() as connection:
            cursor = connection.execute(f"UPDATE chats SET {assignments} WHERE id = ?", (*values, chat_id))
            if cursor.rowcount == 0:
                raise UnknownChat(chat_id)

    def chats(self, *, limit: int = 200, search: str = "") -> list[ChatSummary]:
        """Chats, most recently updated first; `search` keeps those whose title or any message contains it."""
        query, params = _SUMMARY_SELECT, list[str | bytes]()
        if search:
            pattern = _text_in(f"%{_escape_like(search)}%")
            query += (
                " WHERE c.title LIKE ?1 ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m "
                "WHERE m.chat_id = c.id AND m.content LIKE ?1 ESCAPE '\\')"
            )
            params.append(pattern)
        query += f" ORDER BY c.updated_ts DESC, c.id DESC LIMIT ?{len(params) + 1}"
        with self._guard() as connection:
            rows = connection.execute(query, (*params, max(0, limit))).fetchall()
        return [_summary(row) for row in rows]

    def load(self, chat_id: int) -> StoredChat:
        """The chat and all its messages, read in one snapshot. Raises `UnknownChat`."""
        with self._transaction("BEGIN") as connection:
            row = connection.execute(f"{_SUMMARY_SELECT} WHERE c.id = ?", (chat_id,)).fetchone()
            if row is None:
                raise UnknownChat(chat_id)
            rows = connection.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? ORDER BY id", (chat_id,)
            ).fetchall()
        return StoredChat(_summary(row), tuple(_message(message) for message in rows))

    def delete(self, chat_id: int) -> None:
        """Delete the chat and (by the foreign key's cascade) its messages. Raises `UnknownChat`."""
        with self._transaction() as connection:
            if connection.execute("DELETE FROM chats WHERE id = ?", (chat_id,)).rowcount == 0:
                raise UnknownChat(chat_id)

    def count(self) -> int:
        """How many chats are stored."""
        with self._guard() as connection:
            return int(connection.execute("SELECT COUNT(*) FROM chats").fetchone()[0])


def write_export(chat: StoredChat, directory: Path, tz: tzinfo) -> Path:
    """Write `chat` as Markdown into `directory` (created, private, if missing); the file's path.

    The file is new and 0600: an existing name gets -2, -3, … (O_EXCL, so neither an
    existing file nor a link planted at that name is ever written through).
    """
    data = chat_markdown(chat, tz).encode("utf-8")
    name = export_filename(chat.summary)
    stem, suffix = name.removesuffix(".md"), ".md"
    try:
        directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as error:
        raise ChatHistoryError(f"cannot export chat into {directory}: {error}") from error
    for n in range(1, EXPORT_MAX_SUFFIX + 1):
        path = directory / (name if n == 1 else f"{stem}-{n}{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except FileExistsError:
            continue
        except OSError as error:
            raise ChatHistoryError(f"cannot write chat export {path}: {error}") from error
        _write_all(fd, path, data)
        return path
    raise ChatHistoryError(f"cannot export chat into {directory}: {EXPORT_MAX_SUFFIX} files named {stem}-*.md exist")


def _write_all(fd: int, path: Path, data: bytes) -> None:
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
    except OSError as error:
        path.unlink(missing_ok=True)  # no half an export left behind under a name that looks whole
        raise ChatHistoryError(f"cannot write chat export {path}: {error}") from error
