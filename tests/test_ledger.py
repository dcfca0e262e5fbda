"""The SQLite ledger: transitions, restarts, and surviving a SIGKILL at any moment."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aiconsole.domain.cost import PowerInterval
from aiconsole.domain.power import PowerState
from aiconsole.services.ledger import DETAIL_MAX_CHARS, SCHEMA_VERSION, Ledger, LedgerError

S = PowerState
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
CYCLE = (S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "ledger.sqlite3"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    with Ledger.open(ledger_path) as opened:
        yield opened


def shape(intervals: list[PowerInterval]) -> list[tuple[str, PowerState, datetime, datetime | None]]:
    return [(i.vm, i.state, i.start, i.end) for i in intervals]


# --- transitions -------------------------------------------------------------------------


def test_transitions_make_contiguous_intervals_with_one_open(ledger: Ledger) -> None:
    for n, state in enumerate((S.STOPPED, *CYCLE)):
        assert ledger.record_power("inference", state, minutes(n)) is True
    assert shape(ledger.intervals("inference")) == [
        ("inference", S.STOPPED, minutes(0), minutes(1)),
        ("inference", S.STARTING, minutes(1), minutes(2)),
        ("inference", S.RUNNING, minutes(2), minutes(3)),
        ("inference", S.STOPPING, minutes(3), minutes(4)),
        ("inference", S.STOPPED, minutes(4), None),
    ]


def test_repeating_the_open_state_is_a_no_op(ledger: Ledger) -> None:
    assert ledger.record_power("inference", S.RUNNING, minutes(0))
    assert ledger.record_power("inference", S.RUNNING, minutes(5)) is False
    assert shape(ledger.intervals()) == [("inference", S.RUNNING, minutes(0), None)]


@pytest.mark.parametrize("state", [S.UNKNOWN, S.ERROR])
def test_unknown_and_error_are_ignored(ledger: Ledger, state: PowerState) -> None:
    assert ledger.record_power("inference", state, minutes(0)) is False
    assert ledger.intervals() == []
    ledger.record_power("inference", S.RUNNING, minutes(1))
    assert ledger.record_power("inference", state, minutes(2)) is False
    # The VM keeps accruing at its last known state: the interval stays open.
    assert shape(ledger.intervals()) == [("inference", S.RUNNING, minutes(1), None)]


def test_vms_have_separate_intervals(ledger: Ledger) -> None:
    ledger.record_power("inference", S.RUNNING, minutes(0))
    ledger.record_power("training", S.RUNNING, minutes(1))
    ledger.record_power("inference", S.STOPPED, minutes(2))
    assert [i.state for i in ledger.intervals("training")] == [S.RUNNING]
    assert [(i.vm, i.start) for i in ledger.intervals()] == [
        ("inference", minutes(0)),
        ("training", minutes(1)),
        ("inference", minutes(2)),
    ]


def test_since_returns_overlapping_intervals_whole(ledger: Ledger) -> None:
    for n, state in enumerate(CYCLE):
        ledger.record_power("inference", state, minutes(10 * n))
    # starting [0,10) ends before 15; running [10,20) overlaps 15 and comes back whole.
    assert [(i.state, i.start) for i in ledger.intervals("inference", since=minutes(15))] == [
        (S.RUNNING, minutes(10)),
        (S.STOPPING, minutes(20)),
        (S.STOPPED, minutes(30)),
    ]
    # An interval ending exactly at `since` does not overlap it.
    assert ledger.intervals("inference", since=minutes(20))[0].state is S.STOPPING
    assert [i.state for i in ledger.intervals("inference", since=minutes(999))] == [S.STOPPED]


def test_times_round_trip_exactly_and_come_back_in_utc(ledger: Ledger) -> None:
    paris_time = datetime(2026, 10, 25, 2, 30, 12, 345678, tzinfo=ZoneInfo("Europe/Paris"), fold=1)
    ledger.record_power("inference", S.RUNNING, paris_time)
    (interval,) = ledger.intervals()
    # 02:30 the second time (CET, UTC+1). Compared in UTC: PEP 495 makes fold=1 times
    # unequal to every time in another zone.
    assert interval.start == datetime(2026, 10, 25, 1, 30, 12, 345678, tzinfo=UTC)
    assert interval.start.tzinfo is UTC


def test_a_clock_stepping_back_never_makes_an_interval_end_before_it_starts(ledger: Ledger) -> None:
    ledger.record_power("inference", S.RUNNING, minutes(10))
    ledger.record_power("inference", S.STOPPED, minutes(9))
    assert shape(ledger.intervals()) == [
        ("inference", S.RUNNING, minutes(10), minutes(10)),
        ("inference", S.STOPPED, minutes(10), None),
    ]


def test_naive_times_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record_power("inference", S.RUNNING, datetime(2026, 5, 4, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record_activity("inference", "operator", datetime(2026, 5, 4, 10))
    assert ledger.intervals() == []


def test_threads_share_one_ledger(ledger: Ledger) -> None:
    def record(vm: str) -> None:
        for n in range(100):
            assert ledger.record_power(vm, CYCLE[n % 4], minutes(n))

    threads = [threading.Thread(target=record, args=(f"vm{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(4):
        assert len(ledger.intervals(f"vm{k}")) == 100


# --- activity ----------------------------------------------------------------------------


def test_latest_activity_per_kind(ledger: Ledger) -> None:
    assert ledger.last_activity("inference") is None
    ledger.record_activity("inference", "power", minutes(0), "started")
    ledger.record_activity("inference", "operator", minutes(2), "refresh")
    ledger.record_activity("inference", "operator", minutes(1), "start")  # late write, older: ignored
    ledger.record_activity("training", "operator", minutes(9), "stop")
    last = ledger.last_activity("inference")
    assert last is not None and (last.kind, last.at, last.detail) == ("operator", minutes(2), "refresh")
    assert [(a.kind, a.detail) for a in ledger.latest_activities("inference")] == [
        ("power", "started"),
        ("operator", "refresh"),
    ]
    assert [a.vm for a in ledger.latest_activities()] == ["inference", "inference", "training"]


def test_activity_table_stays_small(ledger: Ledger, ledger_path: Path) -> None:
    for n in range(300):
        ledger.record_activity("inference", ("power", "operator", "chat")[n % 3], minutes(n), "x" * 1000)
    last = ledger.last_activity("inference")
    assert last is not None and len(last.detail) == DETAIL_MAX_CHARS
    with sqlite3.connect(ledger_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM activity").fetchone()[0] == 3


# --- the file ----------------------------------------------------------------------------


def test_open_creates_folders_schema_and_wal(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
    with sqlite3.connect(ledger_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopen_after_close_keeps_everything(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as ledger:
        ledger.record_power("inference", S.RUNNING, minutes(0))
        ledger.record_power("inference", S.STOPPED, minutes(60))
        ledger.record_activity("inference", "operator", minutes(60), "stop")
    with Ledger.open(ledger_path) as ledger:
        assert shape(ledger.intervals()) == [
            ("inference", S.RUNNING, minutes(0), minutes(60)),
            ("inference", S.STOPPED, minutes(60), None),
        ]
        assert ledger.last_activity("inference") is not None
        assert ledger.record_power("inference", S.STOPPED, minutes(61)) is False


def test_a_newer_schema_is_refused_and_left_untouched(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as ledger:
        ledger.record_power("inference", S.RUNNING, minutes(0))
    with sqlite3.connect(ledger_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer") as raised:
        Ledger.open(ledger_path)
    assert str(ledger_path) in str(raised.value)
    with sqlite3.connect(ledger_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM power_intervals").fetchone()[0] == 1


def test_a_file_that_is_not_a_database_is_reported_with_its_path(ledger_path: Path) -> None:
    ledger_path.parent.mkdir(parents=True)
    ledger_path.write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(LedgerError) as raised:
        Ledger.open(ledger_path)
    assert str(ledger_path) in str(raised.value)
    assert ledger_path.read_bytes() == b"this is not sqlite " * 100


def test_use_after_close_is_a_ledger_error(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    ledger.close()
    with pytest.raises(LedgerError):
        ledger.record_power("inference", S.RUNNING, minutes(0))


# --- restarts and kills ------------------------------------------------------------------


def test_after_a_restart_the_same_state_continues_the_open_interval(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as ledger:
        ledger.record_power("inference", S.RUNNING, minutes(0))
    with Ledger.open(ledger_path) as ledger:  # the console was down for an hour
        assert ledger.record_power("inference", S.RUNNING, minutes(60)) is False
        assert shape(ledger.intervals()) == [("inference", S.RUNNING, minutes(0), None)]


def test_after_a_restart_a_different_state_closes_at_the_observation(ledger_path: Path) -> None:
    with Ledger.open(ledger_path) as ledger:
        ledger.record_power("inference", S.RUNNING, minutes(0))
    with Ledger.open(ledger_path) as ledger:
        # The VM may have stopped any time in the hour: counting it all is the safe side.
        assert ledger.record_power("inference", S.STOPPED, minutes(60)) is True
        assert shape(ledger.intervals()) == [
            ("inference", S.RUNNING, minutes(0), minutes(60)),
            ("inference", S.STOPPED, minutes(60), None),
        ]


CHILD_PRELUDE = """
import os, sys, time
from datetime import datetime, timedelta
from pathlib import Path
from aiconsole.domain.power import PowerState
from aiconsole.services.ledger import Ledger
ledger = Ledger.open(Path(sys.argv[1]))
base = datetime.fromisoformat(sys.argv[2])
"""

CHILD_RECORDS_THEN_SLEEPS = (
    CHILD_PRELUDE
    + """
for n, state in enumerate(["stopped", "starting", "running", "stopping", "stopped", "starting", "running"]):
    ledger.record_power("inference", PowerState(state), base + timedelta(minutes=n))
ledger.record_activity("inference", "operator", base + timedelta(minutes=5), "start")
print("ready", flush=True)
time.sleep(600)
"""
)

CHILD_WRITER_LOOP = (
    CHILD_PRELUDE
    + """
cycle = [PowerState.STARTING, PowerState.RUNNING, PowerState.STOPPING, PowerState.STOPPED]
n = 0
while n < 1_000_000:
    assert ledger.record_power("inference", cycle[n % 4], base + timedelta(seconds=n))
    n += 1
    os.write(1, b"%d\\n" % n)  # one unbuffered write per returned transition
"""
)


class ChildLines:
    """Collects a child's stdout lines in a thread so its pipe never fills and blocks it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            if raw.endswith(b"\n"):  # a line cut by the kill was never fully printed
                with self._changed:
                    self.lines.append(raw.decode().strip())
                    self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 30.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.lines), timeout), self.lines[-3:]

    def until_eof(self) -> list[str]:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        return self.lines


def start_child(code: str, ledger_path: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], ChildLines]:
    stderr = (tmp_path / "child-stderr.txt").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(ledger_path), T0.isoformat()],
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    stderr.close()
    return process, ChildLines(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_survives_a_kill_between_transitions(ledger_path: Path, tmp_path: Path) -> None:
    process, output = start_child(CHILD_RECORDS_THEN_SLEEPS, ledger_path, tmp_path)
    try:
        output.wait_for(lambda lines: "ready" in lines)
    finally:
        kill(process)
    with Ledger.open(ledger_path) as ledger:
        intervals = ledger.intervals("inference")
        assert [i.state.value for i in intervals] == [
            "stopped", "starting", "running", "stopping", "stopped", "starting", "running"
        ]
        assert [i.start for i in intervals] == [minutes(n) for n in range(7)]
        assert all(i.end == j.start for i, j in zip(intervals, intervals[1:], strict=False))
        assert intervals[-1].end is None
        last = ledger.last_activity("inference")
        assert last is not None and (last.kind, last.detail) == ("operator", "start")
        # The VM really kept running while the console was dead: the interval continues.
        assert ledger.record_power("inference", S.RUNNING, minutes(90)) is False
        assert ledger.intervals("inference")[-1].start == minutes(6)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_survives_a_kill_in_the_middle_of_fast_transitions(ledger_path: Path, tmp_path: Path) -> None:
    Ledger.open(ledger_path).close()  # schema ready before two writers race
    process, output = start_child(CHILD_WRITER_LOOP, ledger_path, tmp_path)
    second_writer_states: list[PowerState] = []
    try:
        with Ledger.open(ledger_path) as second_writer:
            output.wait_for(lambda lines: len(lines) >= 1)
            for n in range(40):  # a second process writing to the same file meanwhile
                state = CYCLE[n % 4]
                assert second_writer.record_power("training", state, minutes(n))
                second_writer_states.append(state)
            output.wait_for(lambda lines: int(lines[-1]) >= 400)
            time.sleep(0.01)
    finally:
        kill(process)
    printed = int(output.until_eof()[-1])
    assert printed >= 400
    with Ledger.open(ledger_path) as ledger:
        intervals = ledger.intervals("inference")
        # Every returned transition is there; at most one more committed before its print.
        assert printed <= len(intervals) <= printed + 1
        assert all(i.state is CYCLE[n % 4] for n, i in enumerate(intervals))
        assert all(i.start == T0 + timedelta(seconds=n) for n, i in enumerate(intervals))
        assert all(i.end == j.start for i, j in zip(intervals, intervals[1:], strict=False))
        assert intervals[-1].end is None
        assert [i.state for i in ledger.intervals("training")] == second_writer_states
