"""`aiconsole runs list|tail` through `main()`, against the demo's `FakeMlflow` on loopback.

Each test writes a config of its own: static VMs whose `[[vm.service]]` of kind "mlflow"
points at a fake served by the test's event loop; `main()` runs in a worker thread (it
runs its own loop), so the test can move the fake's clock, end runs and break the server
while a tail is going. The fake's clock is virtual: points appear when the test says so.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aiconsole import commands_runs
from aiconsole.cli import main
from aiconsole.commands_runs import TailPrinter, follow
from aiconsole.demo import mlflow_api
from aiconsole.demo.httpserver import Request, Response
from aiconsole.demo.mlflow_api import EXPERIMENT, FakeMlflow
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.training import TrackingServer
from aiconsole.services.endpoints import Endpoints
from aiconsole.services.training import TrainingWatch
from providers_conftest import HOSTILE_NAME, FakeClock

NOW = 1_795_000_000.0
"""2026-11-18 11:06:40 UTC."""
TOKEN = "mlflow-cli-token-0123456789abcdef"
# An OSC that retitles, markup, a clipboard write (OSC 52), Textual markup, an 8-bit CSI
# and a right-to-left override: all must arrive inert, the markup as literal text.
HOSTILE = HOSTILE_NAME + "\x1b]52;c;cHdu ZWQ=\x07[b]x[/b]\u202egnp.exe\x7f"
HOSTILE_SHOWN = sanitize_line(HOSTILE)
HOSTILE_KEY = "loss\x1b[2J\x1b]8;;http://evil/\x07[i]k[/i]\u2066"
# Anything but \n a terminal could act on (C0, DEL, C1) and the bidi controls.
UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LINE = re.compile(r"^\s*(\d+)  (\S+)\s+(\S+)\s+\d\d:\d\d:\d\d$")


class Stream(io.StringIO):
    def __init__(self, *, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class Cli:
    """`main(argv)` in a worker thread, its stdout and stderr kept (a terminal or a pipe)."""

    def __init__(self, monkeypatch, env: dict[str, str], config: Path, *, tty: bool = False) -> None:
        self.out, self.err = Stream(tty=tty), Stream(tty=tty)
        self.monkeypatch, self.env, self.config = monkeypatch, env, config
        self.tasks: list[asyncio.Task[int]] = []

    async def __call__(self, *argv: str) -> int:
        """One command; its output replaces the last one's."""
        self.out, self.err = Stream(tty=self.out.tty), Stream(tty=self.err.tty)
        self.monkeypatch.setattr(sys, "stdout", self.out)  # here, not at set-up: pytest's capture resets them
        self.monkeypatch.setattr(sys, "stderr", self.err)
        return await asyncio.to_thread(main, [*argv, "--config", str(self.config)], self.env)

    def start(self, *argv: str) -> asyncio.Task[int]:
        task = asyncio.create_task(self(*argv))
        self.tasks.append(task)
        return task

    def points(self) -> list[tuple[int, str, str]]:
        """(step, key, value) of every point line printed so far."""
        found = [LINE.match(line) for line in self.out.getvalue().splitlines()]
        return [(int(m[1]), m[2], m[3]) for m in found if m]

    def steps(self, key: str = "train_loss") -> list[int]:
        return [step for step, k, _ in self.points() if k == key]


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def write_config(folder: Path, servers: dict[str, str], *, key_env: str | None = None) -> Path:
    """A static VM per server (`{vm: url}`), each with one mlflow service, no SSH."""
    text = ""
    for vm, url in servers.items():
        text += f'[[vm]]\nname = "{vm}"\nprovider = "static"\n'
        text += f'[[vm.service]]\nname = "mlflow"\nkind = "mlflow"\nurl = "{url}"\n'
        if key_env:
            text += f'api_key_env = "{key_env}"\n'
    path = folder / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The fake's clock, which the command reads too (ages and durations are of the fake's time)."""
    clock = FakeClock(NOW)
    monkeypatch.setattr(commands_runs, "utc_now", lambda: datetime.fromtimestamp(clock.now, UTC))
    return clock


@pytest.fixture
async def fake(clock):
    """One finished run (lora-r8, 1,200 steps) and one RUNNING (lora-r16, 20 steps so far)."""
    async with FakeMlflow(clock=clock, step_every_s=2.0, running_for_s=40.0) as server:
        yield server


@pytest.fixture
async def cli(monkeypatch, env, tmp_path, fake):
    cli = Cli(monkeypatch, env, write_config(tmp_path, {"box": fake.url}))
    yield cli
    if any(not task.done() for task in cli.tasks):  # a test failed mid-tail: end the run, so the tail ends
        fake.recover()
        fake.finish_running("KILLED")
        await asyncio.wait(cli.tasks, timeout=10)


# --- list ---------------------------------------------------------------------------------------


async def test_list_prints_running_first_with_age_duration_and_latest_metrics(cli, fake) -> None:
    assert await cli("runs", "list") == 0, cli.err.getvalue()
    header, running, finished = cli.out.getvalue().splitlines()
    assert header.split() == ["SERVER", "EXPERIMENT", "RUN", "STATUS", "STARTED", "DURATION", "LAST", "METRIC",
                              "METRICS"]  # fmt: skip
    assert running.split()[:4] == ["box/mlflow", EXPERIMENT, "lora-r16", "RUNNING"]
    assert "40s" in running and "no metric" not in running and "train_loss=" in running
    assert finished.split()[:4] == ["box/mlflow", EXPERIMENT, "lora-r8", "FINISHED"]
    assert "2h 00m" in finished  # 1,200 steps of 6 s, and 45 s to save the adapter
    assert re.search(r"eval_loss=0\.\d+ train_loss=0\.\d+ gpu_mem_gb=1\d\.\d+ \(\+2\)", finished)
    started = datetime.fromtimestamp(fake.running.start_ms / 1000, UTC).astimezone().strftime("%Y-%m-%d %H:%M")
    assert started in running
    assert cli.err.getvalue() == ""


async def test_list_status_filter_and_an_unknown_vm(cli) -> None:
    assert await cli("runs", "list", "--status", "finished") == 0
    assert [line.split()[2] for line in cli.out.getvalue().splitlines()[1:]] == ["lora-r8"]
    assert await cli("runs", "list", "nowhere") == 2
    assert "no VM named 'nowhere' (VMs: box)" in cli.err.getvalue()


async def test_list_json_is_strict_json_with_nan_and_infinities_spelled_out(cli, fake) -> None:
    run = fake.finished
    run._values["train_loss"] = [0.5] * 1199 + [math.nan]  # the seeded series, with its last value replaced
    run._values["eval_loss"] = [0.6] * 47 + [math.inf]
    run._values["gpu_mem_gb"] = [18.0] * 1199 + [-math.inf]
    assert await cli("runs", "list", "--json") == 0, cli.err.getvalue()
    payload = json.loads(cli.out.getvalue(), parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    [server] = payload["servers"]
    assert server == {"vm": "box", "service": "mlflow", "vm_running": True, "power": "running", "error": None,
                      "fetched_at": server["fetched_at"], "runs": 2}  # fmt: skip
    assert [(r["name"], r["status"]) for r in payload["runs"]] == [("lora-r16", "RUNNING"), ("lora-r8", "FINISHED")]
    live, done = payload["runs"]
    assert done["metrics"]["train_loss"] == {"value": None, "value_text": "NaN", "step": 1200,
                                             "timestamp": done["metrics"]["train_loss"]["timestamp"]}  # fmt: skip
    assert done["metrics"]["eval_loss"]["value"] is None and done["metrics"]["eval_loss"]["value_text"] == "Infinity"
    assert done["metrics"]["gpu_mem_gb"]["value_text"] == "-Infinity"
    assert done["metrics"]["learning_rate"]["value_text"] is None and done["metrics"]["learning_rate"]["value"] >= 0
    assert done["duration_s"] == 1200 * 6 + 45 and done["end_time"] and done["user"] == "operator"
    assert done["params"]["lora_r"] == "8" and done["tags"]["mlflow.runName"] == "lora-r8"
    assert (done["vm"], done["service"], done["experiment"], done["id"]) == ("box", "mlflow", EXPERIMENT, run.run_id)
    assert live["end_time"] is None and live["duration_s"] == 40.0 and live["metrics"]["train_loss"]["step"] == 20
    assert datetime.fromisoformat(live["start_time"]) == datetime.fromtimestamp(NOW - 40, UTC)


async def test_a_failing_server_is_reported_and_the_others_still_listed(monkeypatch, env, tmp_path, fake, clock):
    async with FakeMlflow(clock=clock) as broken:
        broken.fail(500, {"error_code": "INTERNAL_ERROR", "message": "database is locked\x1b[2J"})
        cli = Cli(monkeypatch, env, write_config(tmp_path, {"box": fake.url, "lab": broken.url}))
        assert await cli("runs", "list") == 1
        assert [line.split()[2] for line in cli.out.getvalue().splitlines()[1:]] == ["lora-r16", "lora-r8"]
        assert cli.err.getvalue() == (
            "aiconsole: lab/mlflow: MLflow experiments/search: HTTP 500: "
            "INTERNAL_ERROR database is locked\n"
        )
        assert await cli("runs", "list", "--json") == 1
        servers = {s["vm"]: s for s in json.loads(cli.out.getvalue())["servers"]}
        assert (
            servers["lab"]["error"].startswith("lab/mlflow: MLflow experiments/search")
            and servers["lab"]["runs"] is None
        )
        assert {r["vm"] for r in json.loads(cli.out.getvalue())["runs"]} == {"box"}


async def test_no_mlflow_service_is_a_clear_failure(monkeypatch, env, tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[vm]]\nname = "box"\nprovider = "static"\n')
    cli = Cli(monkeypatch, env, config)
    assert await cli("runs", "list") == 1
    assert cli.err.getvalue() == 'aiconsole: the config has no mlflow service (a [[vm.service]] with kind = "mlflow")\n'
    assert await cli("runs", "tail", "abc") == 1


def test_a_stopped_vms_server_is_not_asked(capsys, tmp_path) -> None:
    """The demo's training VM is stopped: its MLflow is named, not asked."""
    code = main(
        ["runs", "list", "--demo", "--json"], environ={"AICONSOLE_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    )
    out, err = capsys.readouterr()
    assert code == 0 and err == "training/mlflow: VM stopped, not asked\n"
    payload = json.loads(out)
    assert payload["runs"] == [] and payload["servers"][0]["vm_running"] is False
    assert payload["servers"][0]["power"] == "stopped"


@pytest.mark.parametrize("tty", [True, False])
async def test_hostile_names_keys_and_params_are_inert(monkeypatch, env, tmp_path, fake, tty) -> None:
    monkeypatch.setitem(mlflow_api.METRICS, HOSTILE_KEY, 1)
    hostile = fake.add_run(HOSTILE, start_s=NOW - 20.0)  # 10 steps, RUNNING
    hostile.params["note"] = HOSTILE
    hostile.tags["mlflow.note.content"] = HOSTILE
    fake.add_experiment(HOSTILE)
    cli = Cli(monkeypatch, env, write_config(tmp_path, {"box": fake.url}), tty=tty)
    assert await cli("runs", "list") == 0, cli.err.getvalue()
    table = cli.out.getvalue()
    assert not UNSAFE.search(table) and HOSTILE_SHOWN in table and "[b]x[/b]" in table
    assert sanitize_line(HOSTILE_KEY, 40) + "=" in table

    assert await cli("runs", "list", "--json") == 0
    text = cli.out.getvalue()
    assert not UNSAFE.search(text)  # escaped as \\u001b...: inert on a terminal
    run = next(r for r in json.loads(text)["runs"] if r["id"] == hostile.run_id)
    assert run["name"] == HOSTILE and run["params"]["note"] == HOSTILE and HOSTILE_KEY in run["metrics"]

    fake.finish_running()
    assert await cli("runs", "tail", hostile.run_id, "-n", "2", "--interval", "0.05") == 0
    out, err = cli.out.getvalue(), cli.err.getvalue()
    assert not UNSAFE.search(out) and not UNSAFE.search(err)
    assert f"run {HOSTILE_SHOWN} ended: FINISHED" in err
    key_shown = sanitize_line(HOSTILE_KEY)
    assert [line for line in out.splitlines() if key_shown in line][-1].split()[0] == "10"


# --- tail ---------------------------------------------------------------------------------------


async def test_tail_prints_the_last_points_then_new_ones_and_exits_0_when_the_run_finishes(cli, fake, clock):
    tail = cli.start("runs", "tail", fake.running.run_id, "--metric", "train_loss", "-n", "5", "--interval", "0.05")
    await until(lambda: cli.steps() == [16, 17, 18, 19, 20], "the last 5 points")
    assert "tailing run lora-r16 (RUNNING) on box/mlflow" in cli.err.getvalue()
    clock.now += 3 * 2.0
    await until(lambda: cli.steps()[-1:] == [23], "3 new points")
    fake.finish_running()
    assert await tail == 0
    assert cli.steps() == list(range(16, 24))
    assert {key for _, key, _ in cli.points()} == {"train_loss"}
    assert cli.err.getvalue().splitlines()[-1] == "run lora-r16 ended: FINISHED"
    value = next(v for s, _, v in cli.points() if s == 23)
    assert float(value) == fake.running._values["train_loss"][22]  # printed exactly


async def test_tail_of_every_metric_prints_each_point_once(cli, fake, clock) -> None:
    tail = cli.start("runs", "tail", fake.running.run_id, "-n", "3", "--interval", "0.05")
    await until(lambda: len(cli.points()) == 3 * 3, "the last points of each metric")  # no eval point yet (every 25)
    clock.now += 30 * 2.0
    await until(lambda: cli.steps()[-1:] == [50], "30 new steps")
    fake.finish_running("FAILED")
    assert await tail == 1  # a FAILED run
    counts = Counter((step, key) for step, key, _ in cli.points())
    assert max(counts.values()) == 1
    assert [s for s, k, _ in cli.points() if k == "eval_loss"] == [25, 50]
    assert cli.err.getvalue().splitlines()[-1] == "run lora-r16 ended: FAILED"


async def test_tail_rides_out_a_server_answering_503_without_losing_or_doubling_a_point(cli, fake, clock) -> None:
    tail = cli.start("runs", "tail", fake.running.run_id, "-n", "2", "--interval", "0.05")
    await until(lambda: cli.steps() == [19, 20], "the first points")
    fake.fail(503)
    clock.now += 5 * 2.0  # five steps logged while the server cannot be read
    await until(lambda: cli.err.getvalue().count("MLflow unreachable, retrying") >= 3, "three failed polls")
    fake.recover()
    await until(lambda: cli.steps()[-1:] == [25], "the points logged meanwhile")
    clock.now += 2 * 2.0
    await until(lambda: cli.steps()[-1:] == [27], "the points after")
    fake.finish_running()
    assert await tail == 0
    assert cli.steps() == list(range(19, 28))
    counts = Counter((step, key) for step, key, _ in cli.points())
    assert max(counts.values()) == 1
    err = cli.err.getvalue()
    assert "HTTP 503" in err and "MLflow answering again" in err


async def test_a_tail_started_while_the_server_fails_waits_for_it(cli, fake) -> None:
    fake.fail(503)
    tail = cli.start("runs", "tail", fake.running.run_id, "--metric", "train_loss", "-n", "1", "--interval", "0.05")
    await until(lambda: cli.err.getvalue().count("MLflow unreachable, retrying") >= 2, "two failed look-ups")
    fake.recover()
    await until(lambda: cli.steps() == [20], "the last point")
    fake.finish_running()
    assert await tail == 0


async def test_an_unknown_run_exits_1_with_a_clear_message(cli) -> None:
    assert await cli("runs", "tail", "0" * 32, "--interval", "0.05") == 1
    assert cli.err.getvalue() == f"aiconsole: no run {'0' * 32} on box/mlflow\n" and cli.out.getvalue() == ""


async def test_the_token_is_sent_and_never_shown(monkeypatch, env, tmp_path, clock) -> None:
    async with GuardedMlflow(TOKEN, clock=clock, running_for_s=40.0) as guarded:
        config = write_config(tmp_path, {"box": guarded.url}, key_env="MLFLOW_TOKEN")
        cli = Cli(monkeypatch, env | {"MLFLOW_TOKEN": TOKEN}, config)
        assert await cli("runs", "list", "--json") == 0, cli.err.getvalue()
        assert guarded.seen and set(guarded.seen) == {f"Bearer {TOKEN}"}
        guarded.finish_running()
        assert await cli("runs", "tail", guarded.running.run_id, "--interval", "0.05") == 0
        wrong = "wrong-" + TOKEN
        cli.env = env | {"MLFLOW_TOKEN": wrong}
        assert await cli("runs", "list") == 1
        assert "refused the credentials (HTTP 401)" in cli.err.getvalue()
        assert await cli("runs", "tail", guarded.running.run_id) == 1
    everything = cli.out.getvalue() + cli.err.getvalue()
    assert TOKEN not in everything and "********" in everything  # the server echoed the wrong one


class GuardedMlflow(FakeMlflow):
    """MLflow behind a bearer token; a wrong one is quoted back in the error, as some proxies do."""

    def __init__(self, token: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.seen: list[str] = []

    async def serve(self, request: Request) -> Response:
        given = request.headers.get("authorization", "")
        self.seen.append(given)
        if given != f"Bearer {self.token}":
            return Response(401, {"error_code": "UNAUTHENTICATED", "message": f"bad credentials: {given}"})
        return await super().serve(request)


# --- a point must not be lost when a poll fails half-way ---------------------------------------


async def test_a_poll_failing_half_way_loses_no_point(fake, clock) -> None:
    """runs/get and one history answer, the second history fails: the next poll brings the
    first metric's new points too (a poll is all or nothing)."""
    endpoints = Endpoints()
    endpoints.add("box", "mlflow", fake.url)
    server = TrackingServer("box", "mlflow")
    watch = TrainingWatch([server], endpoints)
    out, err = Stream(), Stream()
    printer = TailPrinter(out, last=1)
    shows = 0
    real_show = printer.show

    def show(update, err) -> None:
        nonlocal shows
        real_show(update, err)
        shows += 1
        if shows == 1:  # two steps logged; the next poll reads runs/get and one history, then fails
            clock.now += 2 * 2.0
            fake.faults.delay_next(0, times=2)
            fake.faults.fail_next(503)
        else:
            fake.finish_running()

    printer.show = show
    try:
        code = await follow(
            watch.follow(server, fake.running.run_id, ["train_loss", "learning_rate"]), printer, 0.01, err
        )
    finally:
        await watch.aclose()
    assert code == 0
    lines = [line.split()[:2] for line in out.getvalue().splitlines()]
    assert sorted(lines) == sorted(
        [[str(step), key] for step in (20, 21, 22) for key in ("train_loss", "learning_rate")]
    )
