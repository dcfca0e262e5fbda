"""The ledger: a small SQLite database of power intervals and latest activity per VM.

It is what cost and idle time are computed from, so it must survive the console
being killed at any moment. Each observed transition is written in one transaction
committed before `record_power` returns: whatever was observed and returned is on
disk, and a kill mid-transaction leaves the previous state intact.

Crash semantics. A killed process leaves its open interval open. After a restart,
if the next observation has the same state, the interval simply continues — the VM
really was in that state meanwhile (and, if running, billing). If it differs, the
open interval closes at the new observation's time: the gap is counted at the old
state, an overestimate when the VM had stopped, the safe side for a budget.
Unknown/error observations are ignored for the same reason (see domain/cost.py).

Storage. Times are UTC epoch seconds (REAL): exact to the microsecond for this
century, sortable, and readable with `datetime(start_ts, 'unixepoch')` in the
sqlite3 shell. Times in and out are aware datetimes; out they are in UTC.

Durability. WAL with synchronous=NORMAL: a commit is in the WAL file (in the OS's
hands) before it returns, so killing the process loses nothing committed; only an
OS crash or power loss can drop the last few commits, never corrupt the file. Full
sync on every transition would cost an fsync per observation for a risk that costs
at most a few seconds of billing history.

Synchronous and short calls; the connection is shared by threads (callers may use
`asyncio.to_thread`) and guarded by a lock. Several processes (the TUI and a CLI
`status`) may open the same file: writes take the lock up front (BEGIN IMMEDIATE)
and wait up to `BUSY_TIMEOUT_S` for each other.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from aiconsole.domain.cost import PowerInterval, require_aware
from aiconsole.domain.idle import ActivitySignal
from aiconsole.domain.power import PowerState

BUSY_TIMEOUT_S = 5.0
DETAIL_MAX_CHARS = 200
"""Activity detail is a short label; longer text is cut so a row stays small."""


_SCHEMA_V1 = (
    """CREATE TABLE power_intervals (
        id INTEGER PRIMARY KEY,
        vm TEXT NOT NULL,
        state TEXT NOT NULL,
        start_ts REAL NOT NULL,
        end_ts REAL  -- NULL while the interval is open
    )""",
    "CREATE INDEX power_intervals_by_vm ON power_intervals (vm, start_ts)",
    "CREATE INDEX power_intervals_by_end ON power_intervals (end_ts)",
    # One open interval per VM, enforced by the database, not only by our code.
    "CREATE UNIQUE INDEX power_intervals_one_open ON power_intervals (vm) WHERE end_ts IS NULL",
    # Only the latest activity per VM and kind: the table never grows past vms x kinds.
    """CREATE TABLE activity (
        vm TEXT NOT NULL,
        kind TEXT NOT NULL,
        at_ts REAL NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (vm, kind)
    ) WITHOUT ROWID""",
)


def _create_v1(connection: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would commit the open transaction first,
    # and a migration must be all or nothing.
    for statement in _SCHEMA_V1:
        connection.execute(statement)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1,)
"""MIGRATIONS[n] takes the schema from version n to n + 1; append, never edit."""
SCHEMA_VERSION = len(MIGRATIONS)


class LedgerError(Exception):
    """The ledger file cannot be used; the message names the file and the reason."""


def _to_ts(moment: datetime, what: str) -> float:
    require_aware(moment, what)
    return moment.timestamp()


def _from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Ledger:
    """Power intervals and latest activity, per VM, in one SQLite file."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating it and its parent folders if needed) and migrate the ledger at `path`."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction
            # is exactly what `_write` says it is.
            connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise LedgerError(f"cannot open ledger {path}: {error}") from error
        ledger = cls(connection, path)
        try:
            with ledger._guard():
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
            ledger._migrate()
        except LedgerError:
            connection.close()
            raise
        return ledger

    def _migrate(self) -> None:
        with self._write() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.path} has schema version {version}, newer than this "
                    f"aiconsole knows ({SCHEMA_VERSION}); upgrade aiconsole, the file is left untouched"
                )
            for migrate in MIGRATIONS[version:]:
                migrate(connection)
            if version != SCHEMA_VERSION:
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    @property
    def schema_version(self) -> int:
        with self._guard():
            return int(self._connection.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        """Serialise threads on the connection; report SQLite failures as LedgerError."""
        with self._lock:
            try:
                yield self._connection
            except sqlite3.Error as error:
                raise LedgerError(f"ledger {self.path}: {error}") from error

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: committed when the block ends, rolled back if it raises."""
        with self._guard() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def record_power(self, vm: str, state: PowerState, at: datetime) -> bool:
        """Record that `vm` was observed in `state` at `at`; True when a transition was written.

        Unknown/error are ignored and a repeat of the open interval's state is a no-op.
        An observation older than the open interval's start (a clock stepped back)
        closes it at its start rather than making it end before it began.
        """
        ts = _to_ts(at, "at")
        if not state.is_known:
            return False
        with self._write() as connection:
            row = connection.execute(
                "SELECT id, state, start_ts FROM power_intervals WHERE vm = ? AND end_ts IS NULL",
                (vm,),
            ).fetchone()
            if row is not None:
                open_id, open_state, open_start = row
                if open_state == state.value:
                    return False
                ts = max(ts, open_start)
                connection.execute("UPDATE power_intervals SET end_ts = ? WHERE id = ?", (ts, open_id))
            connection.execute(
                "INSERT INTO power_intervals (vm, state, start_ts, end_ts) VALUES (?, ?, ?, NULL)",
                (vm, state.value, ts),
            )
        return True

    def intervals(self, vm: str | None = None, since: datetime | None = None) -> list[PowerInterval]:
        """Intervals overlapping [since, ∞) (all when since is None), of one VM or all, in start order.

        An interval that began before `since` is returned whole, so a run crossing
        `since` keeps its real start.
        """
        clauses, params = ["1"], []
        if vm is not None:
            clauses.append("vm = ?")
            params.append(vm)
        if since is not None:
            clauses.append("(end_ts IS NULL OR end_ts > ?)")
            params.append(_to_ts(since, "since"))
        query = (
            "SELECT vm, state, start_ts, end_ts FROM power_intervals "
            f"WHERE {' AND '.join(clauses)} ORDER BY start_ts, id"
        )
        with self._guard() as connection:
            rows = connection.execute(query, params).fetchall()
        return [
            PowerInterval(vm, PowerState(state), _from_ts(start), None if end is None else _from_ts(end))
            for vm, state, start, end in rows
        ]

    def record_activity(self, vm: str, kind: str, at: datetime, detail: str = "") -> None:
        """Keep `at` as the latest `kind` activity on `vm`, unless a later one is already kept."""
        ts = _to_ts(at, "at")
        with self._write() as connection:
            connection.execute(
                "INSERT INTO activity (vm, kind, at_ts, detail) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (vm, kind) DO UPDATE SET at_ts = excluded.at_ts, detail = excluded.detail "
                "WHERE excluded.at_ts >= activity.at_ts",
                (vm, str(kind), ts, detail[:DETAIL_MAX_CHARS]),
            )

    def latest_activities(self, vm: str | None = None) -> list[ActivitySignal]:
        """The latest activity per kind (of one VM or all), oldest first."""
        query = "SELECT vm, kind, at_ts, detail FROM activity"
        params: tuple[str, ...] = ()
        if vm is not None:
            query += " WHERE vm = ?"
            params = (vm,)
        with self._guard() as connection:
            rows = connection.execute(query + " ORDER BY at_ts, vm, kind", params).fetchall()
        return [ActivitySignal(vm, kind, _from_ts(at), detail) for vm, kind, at, detail in rows]

    def last_activity(self, vm: str) -> ActivitySignal | None:
        """The latest activity of any kind on `vm`, or None if none was ever recorded."""
        activities = self.latest_activities(vm)
        return activities[-1] if activities else None

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
