"""One SQLite file that threads and processes share: the plumbing under the ledger and the chat history.

A subclass names its error type and what it is (for messages), lists its migrations, and
keeps only its own schema and queries. What every such file gets here:

Durability. WAL with synchronous=NORMAL: a commit is in the WAL file (in the OS's hands)
before it returns, so killing the process loses nothing committed; only an OS crash or
power loss can drop the last few commits, never corrupt the file. Full sync would cost an
fsync per write for a risk of losing a few seconds of history.

Sharing. Calls are synchronous and short; one connection is shared by threads (callers may
use `asyncio.to_thread`) and guarded by a lock. Several processes (the TUI and a CLI) may
open the same file: writes take the write lock up front (BEGIN IMMEDIATE) and wait up to
`BUSY_TIMEOUT_S` for each other.

Schema. `user_version` counts the migrations applied; they run in one transaction, so an
upgrade is all or nothing, and a file newer than this code (or, with `application_id`, one
that is someone else's) is refused untouched. Every failure names the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from aiconsole.domain.cost import require_aware

BUSY_TIMEOUT_S = 5.0

Migration = Callable[[sqlite3.Connection], None]
"""Takes the schema one version up, inside the migrating transaction."""


def statements(*sql: str) -> Migration:
    """A migration that runs `sql` statement by statement."""

    def migrate(connection: sqlite3.Connection) -> None:
        # Not executescript(): it would commit the open transaction first, and a migration
        # must be all or nothing.
        for statement in sql:
            connection.execute(statement)

    return migrate


def to_ts(moment: datetime, what: str) -> float:
    """`moment` as UTC epoch seconds, how times are stored.

    A REAL is exact to the microsecond for this century, sorts, and reads back in the
    sqlite3 shell with `datetime(column, 'unixepoch')`.
    """
    require_aware(moment, what)
    return moment.timestamp()


def from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class SqliteFile:
    """A migrated SQLite file behind one lock-guarded connection; see the module docstring."""

    error: ClassVar[type[Exception]] = Exception
    """Raised for every failure; its message names the file."""
    what: ClassVar[str] = "database"
    """What the file is, in messages: "cannot open <what> <path>: ..."."""
    migrations: ClassVar[tuple[Migration, ...]] = ()
    """migrations[n] takes the schema from version n to n + 1; append, never edit."""
    application_id: ClassVar[int | None] = None
    """Stamped in the header when set; a file with tables but another id is not ours and is refused."""
    connection_pragmas: ClassVar[tuple[str, ...]] = ()
    """Pragmas SQLite keeps per connection rather than in the file, set on every open."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open (creating it and its parent folders if needed) and migrate the file at `path`."""
        try:
            cls._create_file(path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction
            # is exactly what `_transaction` says it is.
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise cls.error(f"cannot open {cls.what} {path}: {error}") from error
        store = cls(connection, path)
        try:
            with store._guard():
                for pragma in (*cls.connection_pragmas, "journal_mode=WAL", "synchronous=NORMAL"):
                    connection.execute(f"PRAGMA {pragma}")
            store._migrate()
        except BaseException:
            connection.close()
            raise
        return store

    @classmethod
    def _create_file(cls, path: Path) -> None:
        """Make what must exist before SQLite opens `path`: here, its folders."""
        path.parent.mkdir(parents=True, exist_ok=True)

    def _migrate(self) -> None:
        latest = len(self.migrations)
        with self._transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if self.application_id is not None:
                self._refuse_foreign(connection, version)
            if version > latest:
                raise self.error(
                    f"{self.what} {self.path} has schema version {version}, newer than this aiconsole "
                    f"knows ({latest}); upgrade aiconsole, the file is left untouched"
                )
            for migrate in self.migrations[version:]:
                migrate(connection)
            if version != latest:
                connection.execute(f"PRAGMA user_version = {latest:d}")
                if self.application_id is not None:
                    connection.execute(f"PRAGMA application_id = {self.application_id:d}")

    def _refuse_foreign(self, connection: sqlite3.Connection, version: int) -> None:
        # An empty file (new, or made by _create_file) is ours to set up; one with content
        # and another mark belongs to someone else.
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        has_tables = connection.execute("SELECT EXISTS (SELECT 1 FROM sqlite_master)").fetchone()[0]
        if application_id != self.application_id and (version or has_tables):
            raise self.error(f"{self.path} is a SQLite database but not an aiconsole {self.what}; it is left untouched")

    @property
    def schema_version(self) -> int:
        with self._guard() as connection:
            return int(connection.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        """Serialise threads on the connection; report SQLite failures as `error`, naming the file."""
        with self._lock:
            try:
                yield self._connection
            except sqlite3.Error as error:
                raise self.error(f"{self.what} {self.path}: {error}") from error

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Writes take the write lock up front (IMMEDIATE), so two processes never both read
        and then fail to upgrade; a plain BEGIN gives reads one consistent snapshot.
        """
        with self._guard() as connection:
            connection.execute(begin)
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
