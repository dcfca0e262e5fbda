"""The money policy's tables in the ledger: the enforcement lock, snoozes, levels notified.

A mixin of `Ledger` (services/ledger.py owns the schema and its migrations): what the
console and `aiconsole watch` must agree on, kept in the file they share, so that a
snooze given at the console holds the watch that enforces, and a budget level is
notified once per period whoever enforces and however often either restarts.
"""

from __future__ import annotations

from datetime import datetime

from aiconsole.domain.enforcement import DEFAULT_LEASE_S, Claim, LockHolder, claim
from aiconsole.services.sqlite_file import from_ts, to_ts


class PolicyTables:
    """Methods for `Ledger`; they use its `_transaction` and `_guard` (services/sqlite_file.py)."""

    # -- the enforcement lock (domain/enforcement.py) ------------------------------------------

    def claim_enforcer(self, me: str, role: str, now: datetime, lease_s: float = DEFAULT_LEASE_S) -> Claim:
        """Take, renew, give up or ask for the lock, decided and written in one transaction:
        two processes claiming at once are serialised by SQLite, never both holding."""
        with self._transaction() as connection:
            current = _enforcer_row(connection)
            result = claim(current, me, role, now, lease_s)
            if result.row is None:
                connection.execute("DELETE FROM enforcer")
            elif result.row != current:
                row = result.row
                connection.execute(
                    "INSERT OR REPLACE INTO enforcer (id, holder, role, since_ts, renewed_ts, wanted_by) "
                    "VALUES (1, ?, ?, ?, ?, ?)",
                    (row.holder, row.role, to_ts(row.since, "since"), to_ts(row.renewed, "renewed"), row.wanted_by),
                )
        return result

    def release_enforcer(self, me: str) -> None:
        """Give the lock up if `me` holds it (on a clean exit: the other takes over at once)."""
        with self._transaction() as connection:
            connection.execute("DELETE FROM enforcer WHERE holder = ?", (me,))

    def enforcer(self) -> LockHolder | None:
        """Who holds the lock (maybe lapsed: see `LockHolder.lapsed`), or None."""
        with self._guard() as connection:
            return _enforcer_row(connection)

    # -- snoozes ---------------------------------------------------------------------------------

    def set_snooze(self, vm: str, until: datetime) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO snoozes (vm, until_ts) VALUES (?, ?)", (vm, to_ts(until, "until"))
            )

    def snoozes(self) -> dict[str, datetime]:
        """Every VM's snooze (past ones too: the policy compares with its own clock)."""
        with self._guard() as connection:
            rows = connection.execute("SELECT vm, until_ts FROM snoozes").fetchall()
        return {vm: from_ts(until) for vm, until in rows}

    # -- levels notified -------------------------------------------------------------------------

    def notified_level(self, period: str) -> str | None:
        """The highest level notified in `period` ("day 2026-11-23"), or None."""
        with self._guard() as connection:
            row = connection.execute("SELECT level FROM notified WHERE period = ?", (period,)).fetchone()
        return None if row is None else row[0]

    def set_notified_level(self, period: str, level: str) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT OR REPLACE INTO notified (period, level) VALUES (?, ?)", (period, str(level)))


def _enforcer_row(connection) -> LockHolder | None:
    row = connection.execute("SELECT holder, role, since_ts, renewed_ts, wanted_by FROM enforcer").fetchone()
    if row is None:
        return None
    holder, role, since, renewed, wanted_by = row
    return LockHolder(holder, role, from_ts(since), from_ts(renewed), wanted_by)
