"""Exactly one enforcer: the lock's rules (domain/enforcement.py), the lock in the ledger shared
by two processes' handles, and activity leases that one process writes and the other reads."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiconsole.config import settings_from_toml_text
from aiconsole.domain.enforcement import ClaimOutcome, LockHolder, Role, claim, holder_id
from aiconsole.domain.power import PowerState
from aiconsole.services.fleet import FleetMonitor
from aiconsole.services.ledger import MIGRATIONS, Ledger

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CONSOLE = holder_id(Role.CONSOLE, pid=10, host="laptop")
WATCH = holder_id(Role.WATCH, pid=20, host="jumphost")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- the rules ---------------------------------------------------------------------------


def test_a_free_lock_is_taken_and_renewed_by_its_holder() -> None:
    first = claim(None, CONSOLE, Role.CONSOLE, T0)
    assert first.outcome is ClaimOutcome.TAKEN and first.holding
    again = claim(first.row, CONSOLE, Role.CONSOLE, at(5))
    assert again.outcome is ClaimOutcome.KEPT and again.row.renewed == at(5) and again.row.since == T0


def test_an_equal_rank_waits_and_takes_over_only_after_the_lease_lapses() -> None:
    held = LockHolder(CONSOLE, Role.CONSOLE, T0, T0)
    other = holder_id(Role.CONSOLE, pid=11, host="laptop")
    assert claim(held, other, Role.CONSOLE, at(30), lease_s=30).outcome is ClaimOutcome.WAITING
    late = claim(held, other, Role.CONSOLE, at(30.5), lease_s=30)
    assert late.outcome is ClaimOutcome.TAKEN and late.row.holder == other


def test_watch_asks_the_console_which_yields_then_watch_takes_it() -> None:
    console_row = claim(None, CONSOLE, Role.CONSOLE, T0).row
    asked = claim(console_row, WATCH, Role.WATCH, at(1))
    assert asked.outcome is ClaimOutcome.ASKED and not asked.holding
    assert asked.row.holder == CONSOLE and asked.row.wanted_by == WATCH
    yielded = claim(asked.row, CONSOLE, Role.CONSOLE, at(5))
    assert yielded.outcome is ClaimOutcome.YIELDED and yielded.row is None and not yielded.holding
    taken = claim(yielded.row, WATCH, Role.WATCH, at(6))
    assert taken.outcome is ClaimOutcome.TAKEN
    # The console now waits: it never asks watch to yield.
    assert claim(taken.row, CONSOLE, Role.CONSOLE, at(7)).outcome is ClaimOutcome.WAITING


def test_the_holder_that_froze_past_its_lease_keeps_it_when_nobody_took_it() -> None:
    held = LockHolder(CONSOLE, Role.CONSOLE, T0, T0)
    assert claim(held, CONSOLE, Role.CONSOLE, at(300)).outcome is ClaimOutcome.KEPT


def test_the_holder_text_names_the_process_and_its_last_renewal() -> None:
    row = LockHolder(WATCH, Role.WATCH, T0, at(56))
    assert row.text(at(60), UTC) == "watch pid 20 on jumphost enforces (since 09:00, seen 4s ago)"


# --- the lock in the ledger ------------------------------------------------------------------


def test_two_handles_on_one_file_never_both_hold(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as console, Ledger.open(path) as watch:
        assert console.claim_enforcer(CONSOLE, Role.CONSOLE, T0).holding
        assert watch.claim_enforcer(WATCH, Role.WATCH, at(1)).outcome is ClaimOutcome.ASKED
        assert console.enforcer().wanted_by == WATCH
        assert console.claim_enforcer(CONSOLE, Role.CONSOLE, at(5)).outcome is ClaimOutcome.YIELDED
        assert console.enforcer() is None
        assert watch.claim_enforcer(WATCH, Role.WATCH, at(6)).holding
        assert not console.claim_enforcer(CONSOLE, Role.CONSOLE, at(7)).holding
        assert console.enforcer().holder == WATCH
        watch.release_enforcer(WATCH)  # a clean exit: the console takes over at once
        assert console.claim_enforcer(CONSOLE, Role.CONSOLE, at(8)).outcome is ClaimOutcome.TAKEN


def test_claims_racing_from_threads_leave_exactly_one_holder(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    handles = [Ledger.open(path) for _ in range(6)]
    names = [holder_id(Role.CONSOLE, pid=100 + n, host="box") for n in range(6)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(handles))

    def race(n: int) -> None:
        barrier.wait()
        results[names[n]] = handles[n].claim_enforcer(names[n], Role.CONSOLE, T0).holding

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, holding in results.items() if holding]
    assert len(winners) == 1 and handles[0].enforcer().holder == winners[0]
    for handle in handles:
        handle.close()


def test_a_version_2_ledger_gains_leases_and_the_lock_and_keeps_its_activity(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    raw = sqlite3.connect(path)
    MIGRATIONS[0](raw)
    MIGRATIONS[1](raw)
    raw.execute("INSERT INTO activity (vm, kind, at_ts, detail) VALUES ('gpu', 'chat', ?, 'chat stream')",
                (T0.timestamp(),))  # fmt: skip
    raw.execute("PRAGMA user_version = 2")
    raw.commit()
    raw.close()
    with Ledger.open(path) as ledger:
        (old,) = ledger.latest_activities("gpu")
        assert (old.detail, old.until, old.unknown) == ("chat stream", None, False)
        ledger.record_activity("gpu", "ssh", at(1), "SSH down", until=at(61), unknown=True)
        ssh = next(s for s in ledger.latest_activities("gpu") if s.kind == "ssh")
        assert (ssh.until, ssh.unknown) == (at(61), True)
        assert ledger.claim_enforcer(WATCH, Role.WATCH, T0).holding


# --- leases across processes -----------------------------------------------------------------

CONFIG = '[[vm]]\nname = "gpu"\nprovider = "static"\n'


def _monitor(path: Path, clock: list[datetime]) -> FleetMonitor:
    settings = settings_from_toml_text(CONFIG, "t.toml")
    return FleetMonitor(settings, Ledger.open(path), lambda vm: None, tz=UTC, clock=lambda: clock[0])


def _observe_running(monitor: FleetMonitor, when: datetime) -> None:
    monitor.ledger.record_power("gpu", PowerState.RUNNING, when)
    monitor._load_history(monitor._states["gpu"])
    from aiconsole.domain.vm_view import PowerObservation

    monitor._states["gpu"].observation = PowerObservation(PowerState.RUNNING, when)


def test_a_chat_lease_written_by_the_console_holds_the_watch_and_lapses_after(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    clock = [T0]
    console, watch = _monitor(path, clock), _monitor(path, clock)
    _observe_running(console, T0)
    _observe_running(watch, T0)
    clock[0] = at(40 * 60)
    console.note_activity("gpu", "chat", "chat stream", lease_s=30)
    watch.sync_activity()
    vm = watch.snapshot().vms[0]
    assert vm.idle.busy_reasons == ("chat stream",)
    # The console renews every 10 s: the ledger's copy never lapses while it does.
    for second in range(10, 300, 10):
        clock[0] = at(40 * 60 + second)
        console.note_activity("gpu", "chat", "chat stream", lease_s=30)
        watch.sync_activity()
        assert watch.snapshot().vms[0].idle.busy_reasons == ("chat stream",), second
    # The console dies mid-stream. Its last write was at +280 s (a lease is written when half
    # spent), so the watch counts idle from that lease's end, +310 s.
    clock[0] = at(40 * 60 + 370)
    watch.sync_activity()
    idle = watch.snapshot().vms[0].idle
    assert idle.busy_reasons == () and idle.idle_seconds == 60
    console.ledger.close()
    watch.ledger.close()


def test_a_lease_is_written_only_when_half_spent_and_a_change_at_once(tmp_path: Path) -> None:
    clock = [T0]
    monitor = _monitor(tmp_path / "ledger.sqlite3", clock)
    writes: list[tuple] = []
    original = monitor.ledger.record_activity
    monitor.ledger.record_activity = lambda *a, **kw: (
        writes.append((a[2], a[3], kw.get("unknown"))),
        original(*a, **kw),
    )[1]
    for second in range(0, 61, 5):
        clock[0] = at(second)
        monitor.note_activity("gpu", "ssh", "1 SSH session", lease_s=20)
    assert [w[0] for w in writes] == [at(0), at(15), at(30), at(45), at(60)]
    clock[0] = at(61)
    monitor.note_activity("gpu", "ssh", "2 SSH sessions", lease_s=20)
    clock[0] = at(62)
    monitor.note_activity("gpu", "ssh", "SSH sessions unknown: timeout", lease_s=20, unknown=True)
    assert writes[-2:] == [(at(61), "2 SSH sessions", False), (at(62), "SSH sessions unknown: timeout", True)]
    monitor.ledger.close()
