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

Storage. Times are UTC epoch seconds (REAL, see services/sqlite_file.py); times in
and out are aware datetimes, out in UTC.

Durability and sharing are the SQLite file's (services/sqlite_file.py): WAL with
synchronous=NORMAL, so killing the process loses nothing committed and only an OS crash
or power loss can drop the last few commits — at most a few seconds of billing history,
not worth an fsync per observation; a lock for threads, BEGIN IMMEDIATE and a busy
timeout for the TUI and a CLI `status` on the same file.
"""

from __future__ import annotations

from datetime import datetime

from aiconsole.domain.cost import PowerInterval
from aiconsole.domain.events import Event
from aiconsole.domain.idle import ActivitySignal
from aiconsole.domain.power import PowerState
from aiconsole.services.ledger_policy import PolicyTables
from aiconsole.services.sqlite_file import Migration, SqliteFile, from_ts, statements, to_ts

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

_SCHEMA_V2 = (
    # The event journal: appended to, never updated; read newest first.
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at_ts REAL NOT NULL,
        kind TEXT NOT NULL,
        vm TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        hourly_usd REAL NOT NULL DEFAULT 0,
        cost_today_usd REAL
    )""",
    "CREATE INDEX events_by_time ON events (at_ts)",
)

_SCHEMA_V3 = (
    # Activity leases (domain/idle.py): busy until `until_ts` while its source renews it, so
    # that a `watch` and a console sharing this file see each other's chat streams and runs.
    "ALTER TABLE activity ADD COLUMN until_ts REAL",
    "ALTER TABLE activity ADD COLUMN unknown INTEGER NOT NULL DEFAULT 0",
    # The enforcement lock: the one process (console or watch) that stops VMs by policy.
    """CREATE TABLE enforcer (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        role TEXT NOT NULL,
        since_ts REAL NOT NULL,
        renewed_ts REAL NOT NULL,
        wanted_by TEXT NOT NULL DEFAULT ''
    )""",
    # Snoozes of the idle stop, so that one given at a console holds a `watch` that enforces.
    "CREATE TABLE snoozes (vm TEXT PRIMARY KEY, until_ts REAL NOT NULL) WITHOUT ROWID",
    # The highest budget level notified per period ("day 2026-11-23"): once per period, across
    # restarts and whichever process enforces.
    "CREATE TABLE notified (period TEXT PRIMARY KEY, level TEXT NOT NULL) WITHOUT ROWID",
)

MIGRATIONS: tuple[Migration, ...] = (statements(*_SCHEMA_V1), statements(*_SCHEMA_V2), statements(*_SCHEMA_V3))
"""MIGRATIONS[n] takes the schema from version n to n + 1; append, never edit."""
SCHEMA_VERSION = len(MIGRATIONS)


class LedgerError(Exception):
    """The ledger file cannot be used; the message names the file and the reason."""


class Ledger(PolicyTables, SqliteFile):
    """Power intervals, latest activity per VM, the enforcement lock and the event journal, in one SQLite file."""

    error = LedgerError
    what = "ledger"
    migrations = MIGRATIONS

    def record_power(self, vm: str, state: PowerState, at: datetime) -> bool:
        """Record that `vm` was observed in `state` at `at`; True when a transition was written.

        Unknown/error are ignored and a repeat of the open interval's state is a no-op.
        An observation older than the open interval's start (a clock stepped back)
        closes it at its start rather than making it end before it began.
        """
        ts = to_ts(at, "at")
        if not state.is_known:
            return False
        with self._transaction() as connection:
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
            params.append(to_ts(since, "since"))
        query = (
            "SELECT vm, state, start_ts, end_ts FROM power_intervals "
            f"WHERE {' AND '.join(clauses)} ORDER BY start_ts, id"
        )
        with self._guard() as connection:
            rows = connection.execute(query, params).fetchall()
        return [
            PowerInterval(vm, PowerState(state), from_ts(start), None if end is None else from_ts(end))
            for vm, state, start, end in rows
        ]

    def record_activity(
        self, vm: str, kind: str, at: datetime, detail: str = "", *, until: datetime | None = None,
        unknown: bool = False,
    ) -> None:  # fmt: skip
        """Keep this as the latest `kind` activity on `vm`, unless a later one is already kept."""
        ts = to_ts(at, "at")
        until_ts = None if until is None else to_ts(until, "until")
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO activity (vm, kind, at_ts, detail, until_ts, unknown) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (vm, kind) DO UPDATE SET at_ts = excluded.at_ts, detail = excluded.detail, "
                "until_ts = excluded.until_ts, unknown = excluded.unknown "
                "WHERE excluded.at_ts >= activity.at_ts",
                (vm, str(kind), ts, detail[:DETAIL_MAX_CHARS], until_ts, int(unknown)),
            )

    def latest_activities(self, vm: str | None = None) -> list[ActivitySignal]:
        """The latest activity per kind (of one VM or all), oldest first."""
        query = "SELECT vm, kind, at_ts, detail, until_ts, unknown FROM activity"
        params: tuple[str, ...] = ()
        if vm is not None:
            query += " WHERE vm = ?"
            params = (vm,)
        with self._guard() as connection:
            rows = connection.execute(query + " ORDER BY at_ts, vm, kind", params).fetchall()
        return [
            ActivitySignal(vm, kind, from_ts(at), detail, None if until is None else from_ts(until), bool(unknown))
            for vm, kind, at, detail, until, unknown in rows
        ]

    def last_activity(self, vm: str) -> ActivitySignal | None:
        """The latest activity of any kind on `vm`, or None if none was ever recorded."""
        activities = self.latest_activities(vm)
        return activities[-1] if activities else None

    # -- the event journal ---------------------------------------------------------------

    def record_event(self, event: Event) -> None:
        """Append `event`, committed before this returns (an automatic stop is journaled first)."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO events (at_ts, kind, vm, actor, reason, hourly_usd, cost_today_usd) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (to_ts(event.at, "at"), str(event.kind), event.vm, str(event.actor), event.reason,
                 event.hourly_usd, event.cost_today_usd),
            )  # fmt: skip

    def events(self, *, since: datetime | None = None, vm: str | None = None, limit: int = 1000) -> list[Event]:
        """The newest `limit` events (since `since`, of one VM or all), newest first."""
        clauses, params = ["1"], []
        if since is not None:
            clauses.append("at_ts >= ?")
            params.append(to_ts(since, "since"))
        if vm is not None:
            clauses.append("vm = ?")
            params.append(vm)
        query = (
            "SELECT at_ts, kind, vm, actor, reason, hourly_usd, cost_today_usd FROM events "
            f"WHERE {' AND '.join(clauses)} ORDER BY at_ts DESC, id DESC LIMIT ?"
        )
        with self._guard() as connection:
            rows = connection.execute(query, [*params, max(0, limit)]).fetchall()
        return [Event(from_ts(at), kind, vm, reason, actor, hourly, cost) for at, kind, vm, actor, reason, hourly, cost in rows]
