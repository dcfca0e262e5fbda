"""The event journal: stored in the ledger's database (migrated from version 1 without loss),
written by the monitor before each start and stop, read by `aiconsole events`."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.test_cli import INSTANCE, cli, power_requests
from tests.test_stop_guard import env, gpu_config, mlflow, tensordock  # noqa: F401 - fixtures

from aiconsole.domain.events import Actor, Event, EventKind
from aiconsole.domain.power import PowerState
from aiconsole.services.ledger import MIGRATIONS, Ledger

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_events_round_trip_newest_first_with_filters(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        for minutes, vm, kind in [(0, "inference", "start"), (5, "training", "start"), (9, "inference", "stop")]:
            ledger.record_event(Event(T0 + timedelta(minutes=minutes), kind, vm, f"{kind} {vm}", "operator", 0.35, 0.1))
        assert [(e.vm, e.kind) for e in ledger.events()] == [
            ("inference", "stop"), ("training", "start"), ("inference", "start"),
        ]  # fmt: skip
        assert [e.kind for e in ledger.events(vm="inference")] == ["stop", "start"]
        assert [e.vm for e in ledger.events(since=T0 + timedelta(minutes=5))] == ["inference", "training"]
        assert len(ledger.events(limit=1)) == 1
        first = ledger.events()[-1]
        assert first == Event(T0, "start", "inference", "start inference", "operator", 0.35, 0.1)
    with Ledger.open(tmp_path / "ledger.sqlite3") as again:
        assert len(again.events()) == 3, "kept across a restart"


def test_a_version_1_ledger_gains_the_journal_and_keeps_its_intervals(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    raw = sqlite3.connect(path)
    MIGRATIONS[0](raw)
    raw.execute("INSERT INTO power_intervals (vm, state, start_ts, end_ts) VALUES ('gpu', 'running', ?, NULL)",
                (T0.timestamp(),))  # fmt: skip
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with Ledger.open(path) as ledger:
        assert [(i.vm, i.state) for i in ledger.intervals()] == [("gpu", PowerState.RUNNING)]
        ledger.record_event(Event(T0, EventKind.STOP, "gpu", "test", Actor.WATCH))
        assert ledger.events()[0].actor == "watch"


def test_an_event_reason_is_sanitised() -> None:
    event = Event(T0, "stop", "gpu", "\x1b]52;c;cHduZWQ=\x07\x1b[31m[b]bad[/b]\u202e", "operator")
    assert event.reason == "[b]bad[/b]"
    assert "\x1b" not in event.line(UTC)
    with pytest.raises(ValueError):
        Event(datetime(2026, 11, 23), "stop", "gpu", "naive time")


def test_cli_stops_are_journaled_refusals_and_forced_stops_with_their_reasons(capsys, env, tensordock, gpu_config) -> None:  # noqa: F811  # fmt: skip
    code, _, _ = cli(capsys, "vm", "stop", "gpu", "--yes", "--config", str(gpu_config), environ=env)
    assert code == 1
    code, _, err = cli(capsys, "vm", "stop", "gpu", "--force", "--config", str(gpu_config), environ=env)
    assert code == 0, err
    assert ("POST", f"/api/v2/instances/{INSTANCE}/stop") in power_requests(tensordock)

    code, out, _ = cli(capsys, "events", "--json", "--config", str(gpu_config), environ=env)
    assert code == 0
    events = json.loads(out)
    assert [(e["kind"], e["vm"], e["actor"]) for e in events] == [
        ("stop-refused", "gpu", "operator"), ("forced-stop", "gpu", "operator"),
    ]  # fmt: skip
    refused, forced = events
    assert "MLflow run lora-r16 is RUNNING on gpu" in refused["reason"] and "--force" in refused["reason"]
    assert forced["reason"].startswith("aiconsole vm stop (--force) over: MLflow run lora-r16 is RUNNING")
    assert forced["hourly_usd"] == 0.5 and isinstance(forced["cost_today_usd"], float)

    code, out, _ = cli(capsys, "events", "gpu", "--config", str(gpu_config), environ=env)
    assert code == 0
    lines = out.splitlines()
    assert (
        len(lines) == 2 and " stop-refused gpu (operator): " in lines[0] and " forced-stop gpu (operator): " in lines[1]
    )
    assert lines[1].endswith(" today")
    code, _, err = cli(capsys, "events", "nosuchvm", "--config", str(gpu_config), environ=env)
    assert code == 2 and "no VM named 'nosuchvm'" in err


def test_a_plain_stop_and_start_are_journaled(capsys, env, tensordock, mlflow, gpu_config) -> None:  # noqa: F811
    mlflow.finish_running()
    assert cli(capsys, "vm", "stop", "gpu", "--yes", "--config", str(gpu_config), environ=env)[0] == 0
    assert cli(capsys, "vm", "start", "gpu", "--config", str(gpu_config), environ=env)[0] == 0
    code, out, _ = cli(capsys, "events", "--json", "--config", str(gpu_config), environ=env)
    assert code == 0
    assert [(e["kind"], e["reason"]) for e in json.loads(out)] == [
        ("stop", "aiconsole vm stop"), ("start", "aiconsole vm start"),
    ]  # fmt: skip
