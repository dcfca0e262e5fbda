"""The command line, end to end: `aiconsole.cli.main(argv, environ)` in-process, and
`python -m aiconsole` in a subprocess (a pseudo-terminal for the console itself).

Every run talks to real HTTP peers on loopback: the demo fleet's fakes, or a
`FakeTensorDock` this module serves from a thread, which a config of our own points at.
Each test gets its own data folder (AICONSOLE_DATA_DIR), so ledgers never mix.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import stat
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.threaded import ThreadedFake

from aiconsole.cli import main
from aiconsole.demo.tensordock_api import FakeTensorDock

KEY = "td-cli-secret-0123456789abcdef"
KEY_ENV = "CLI_TEST_TD_KEY"
INSTANCE = "5e1d9c2a-cli-test"
STOPPED_INSTANCE = "8a7b6c5d-cli-stopped"
HOSTILE_NAME = "\x1b]0;pwned\x07\x1b[31m[bold red]x[/]"
HOSTILE_NAME_SHOWN = "[bold red]x[/]"
# Anything but \n that a terminal could act on: C0 (tab too: the table never has one), DEL, C1.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
VM_KEYS = {"name", "provider", "power", "hourly_usd", "cost_today_usd", "cost_month_usd", "idle_seconds"}
BUDGET_KEYS = {"daily_usd", "monthly_usd", "spent_today_usd", "spent_month_usd"}
BAD_VALUE_CONFIG = """\
[budget]
daily_usd = 5.0

[[vm]]
name = "inference"
provider = "tensordock"
hourly_usd = -0.35
[vm.tensordock]
instance_id = "abc"
"""
BAD_FIELD = "vm[0] (inference).hourly_usd = -0.35"


# --- running the command line ----------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str, environ: dict[str, str]) -> tuple[int, str, str]:
    capsys.readouterr()  # drop anything printed before
    code = main(list(argv), environ=environ)
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_env(data_dir: Path, **extra: str) -> dict[str, str]:
    # os.environ already points HOME and XDG at a temporary folder (tests/conftest.py).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICONSOLE_", "PYTEST_"))}
    return env | {"AICONSOLE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"} | extra


def aiconsole(*argv: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m aiconsole ...` with no terminal: stdin is /dev/null, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "aiconsole", *argv],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def in_terminal(
    *argv: str, env: dict[str, str], timeout: float = 30, type_when: tuple[str, bytes] | None = None
) -> tuple[int, str]:
    """`python -m aiconsole ...` on a pseudo-terminal (200x50); its exit status and all it wrote.
    `type_when=(text, keys)`: once the screen (escape sequences dropped) shows `text`, type `keys`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiconsole", *argv],
        stdin=slave, stdout=slave, stderr=slave, env=env | {"TERM": "xterm-256color"}, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"aiconsole {' '.join(argv)} still running after {timeout}s: {b''.join(chunks)[-2000:]!r}")
            if not select.select([master], [], [], 0.2)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end (it exited)
                break
            if not data:
                break
            chunks.append(data)
            if type_when and type_when[0] in plain(b"".join(chunks).decode("utf-8", "replace")):
                os.write(master, type_when[1])
                type_when = None
    finally:
        os.close(master)
    return proc.wait(timeout=10), b"".join(chunks).decode("utf-8", "replace")


def plain(terminal_output: str) -> str:
    """Terminal output without escape sequences, whitespace (and Rich's wrapping) folded."""
    text = re.sub(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])", "", terminal_output)
    return " ".join(text.split())


def write_config(folder: Path, text: str, name: str = "config.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- a TensorDock fake of our own, served from a thread --------------------------------


@pytest.fixture
def tensordock() -> Iterator[FakeTensorDock]:
    with ThreadedFake(FakeTensorDock(KEY, start_seconds=0.3, stop_seconds=0.3)) as fake:
        yield fake


def tensordock_config(fake: FakeTensorDock, *vms: tuple[str, str, str]) -> str:
    """A config with one TensorDock VM per (name, instance id, key variable)."""
    blocks = [
        f'[[vm]]\nname = "{name}"\nprovider = "tensordock"\nhourly_usd = 0.5\n'
        f'[vm.tensordock]\ninstance_id = "{instance}"\napi_key_env = "{key_env}"\napi_url = "{fake.url}"\n'
        for name, instance, key_env in vms
    ]
    return "[budget]\ndaily_usd = 5.0\nmonthly_usd = 50.0\ntimezone = \"UTC\"\n\n" + "\n".join(blocks)


def power_requests(fake: FakeTensorDock) -> list[tuple[str, str]]:
    return [(method, path) for method, path in fake.requests if method == "POST"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment given to in-process `main()`: nothing but our own folders."""
    return {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}


# --- status on the demo fleet ----------------------------------------------------------


def _overlap_hours(runs: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    seconds = sum(max(0.0, (min(b, end) - max(a, start)).total_seconds()) for a, b in runs)
    return seconds / 3600


def expected_demo_costs(at: datetime) -> dict[str, tuple[float, float]]:
    """(today, month) in USD per VM, from the history `DemoFleet.seed_ledger` writes.

    The demo's days start at midnight UTC (its config says so); the seed is written a
    moment before `at`, which the tolerance of the comparisons absorbs.
    """
    runs = {
        "inference": [(at - timedelta(hours=5), at - timedelta(hours=3)), (at - timedelta(minutes=22), at)],
        "training": [
            (at - timedelta(hours=27), at - timedelta(hours=24)),
            (at - timedelta(hours=4, minutes=30), at - timedelta(hours=3)),
        ],
    }
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    return {vm: (0.35 * _overlap_hours(r, day, at), 0.35 * _overlap_hours(r, month, at)) for vm, r in runs.items()}


def test_status_json_on_the_demo_fleet(capsys, env) -> None:
    code, out, err = cli(capsys, "status", "--json", "--demo", environ=env)
    assert code == 0, err
    report = json.loads(out)
    vms = {vm["name"]: vm for vm in report["vms"]}
    assert list(vms) == ["inference", "training", "homelab", "brain"]
    for vm in vms.values():
        assert VM_KEYS <= vm.keys(), vm
    assert [(v["provider"], v["power"]) for v in vms.values()] == [
        ("tensordock", "running"), ("tensordock", "stopped"), ("proxmox", "running"), ("static", "running"),
    ]  # fmt: skip
    assert vms["inference"]["hourly_usd"] == vms["training"]["hourly_usd"] == 0.35
    assert vms["homelab"]["hourly_usd"] == vms["brain"]["hourly_usd"] == 0.0

    expected = expected_demo_costs(datetime.fromisoformat(report["at"]))
    for name, (today, month) in expected.items():
        assert vms[name]["cost_today_usd"] == pytest.approx(today, abs=0.002), name
        assert vms[name]["cost_month_usd"] == pytest.approx(month, abs=0.002), name
    # The current run alone: 22 min at $0.35/h, or what of it fell today (UTC) just after midnight.
    at = datetime.fromisoformat(report["at"])
    since_midnight_h = (at - at.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 3600
    assert vms["inference"]["cost_today_usd"] >= 0.35 * min(22 / 60, since_midnight_h) - 0.002
    for free in ("homelab", "brain"):
        assert vms[free]["cost_today_usd"] == vms[free]["cost_month_usd"] == 0.0

    # Idle since the last activity the seed recorded; a stopped VM has no idle timer.
    assert vms["inference"]["idle_seconds"] == pytest.approx(22 * 60, abs=5)
    assert vms["homelab"]["idle_seconds"] == pytest.approx(41 * 60, abs=5)
    assert vms["training"]["idle_seconds"] is None

    budget = report["budget"]
    assert BUDGET_KEYS <= budget.keys()
    assert (budget["daily_usd"], budget["monthly_usd"]) == (5.0, 50.0)
    assert budget["spent_today_usd"] == pytest.approx(sum(v["cost_today_usd"] for v in vms.values()), abs=0.0002)
    assert budget["spent_month_usd"] == pytest.approx(sum(v["cost_month_usd"] for v in vms.values()), abs=0.0002)
    assert budget["spent_month_usd"] >= budget["spent_today_usd"] > 0


TABLE_ROWS = {
    "inference": r"inference\s+tensordock\s+running\s+0\.35\s+\$\d+\.\d\d",
    "training": r"training\s+tensordock\s+stopped\s+0\.35\s",
    "homelab": r"homelab\s+proxmox\s+running\s+0\.00\s+\$0\.00\s+\$0\.00",
    "brain": r"brain\s+static\s+running\s+0\.00\s+\$0\.00\s+\$0\.00",
}
BUDGET_LINE = r"budget: today \$\d+\.\d\d of \$5\.00 \(\d+%, ok\) · month \$\d+\.\d\d of \$50\.00 \(\d+%, ok\)"


def assert_demo_table(out: str) -> None:
    lines = out.splitlines()
    assert lines[0].split() == ["VM", "PROVIDER", "POWER", "$/H", "TODAY", "MONTH", "IDLE", "STOP", "IN"]
    for name, row in TABLE_ROWS.items():
        assert any(re.match(row, line) for line in lines), (name, out)
    assert re.fullmatch(BUDGET_LINE, lines[-1]), out
    assert not CONTROL.search(out)


def test_status_table_on_the_demo_fleet(capsys, env) -> None:
    code, out, err = cli(capsys, "status", "--demo", environ=env)
    assert code == 0 and err == ""
    assert_demo_table(out)


def test_options_before_the_command_work_too(tmp_path: Path) -> None:
    done = aiconsole("--demo", "status", env=subprocess_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert_demo_table(done.stdout)


def test_a_demo_command_leaves_no_files_behind(capsys, env) -> None:
    code, _, _ = cli(capsys, "status", "--demo", environ=env)
    assert code == 0
    demo_dir = Path(env["AICONSOLE_DATA_DIR"]) / "demo"
    assert not demo_dir.exists() or list(demo_dir.iterdir()) == []


# --- bad, broken and missing configs ---------------------------------------------------

COMMANDS = {
    "status": ["status"],
    "status --json": ["status", "--json"],
    "config check": ["config", "check"],
    "vm start": ["vm", "start", "inference"],
    "vm stop": ["vm", "stop", "inference", "--yes"],
}


@pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))
def test_a_bad_value_exits_2_naming_file_field_and_value(capsys, env, tmp_path, command) -> None:
    path = write_config(tmp_path, BAD_VALUE_CONFIG)
    code, out, err = cli(capsys, *command, "--config", str(path), environ=env)
    assert code == 2 and out == ""
    assert str(path) in err and BAD_FIELD in err and "greater than or equal to 0" in err
    assert not (Path(env["AICONSOLE_DATA_DIR"]) / "ledger.sqlite3").exists()  # stopped before opening anything


def test_the_console_with_a_bad_value_exits_2_naming_file_field_and_value(tmp_path) -> None:
    # The TUI validates just after its first frame, so it needs a terminal to get that far;
    # a pseudo-terminal stands in. It must end by itself, with the CLI's message.
    path = write_config(tmp_path, BAD_VALUE_CONFIG)
    code, output = in_terminal("--config", str(path), env=subprocess_env(tmp_path / "data"))
    shown = plain(output)
    assert code == 2, shown[-2000:]
    assert f"aiconsole: {path}: invalid config" in shown and BAD_FIELD in shown, shown[-2000:]
    assert "\x1b[?1049l" in output or "\x1b[?1049h" not in output  # left the alternate screen


def test_the_demo_console_answers_a_key_in_a_terminal(tmp_path) -> None:
    """The TUI runs on the console's own loop (services/event_loop.py); a key still gets through."""
    code, output = in_terminal("--demo", env=subprocess_env(tmp_path / "data"), type_when=("homelab", b"q"))
    assert code == 0, plain(output)[-2000:]
    assert "homelab" in plain(output)


@pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))
def test_a_toml_syntax_error_exits_2_naming_line_and_column(capsys, env, tmp_path, command) -> None:
    path = write_config(tmp_path, '[budget]\ndaily_usd = 5.0\n\n[[vm]]\nname = "unclosed\nprovider = "static"\n')
    code, out, err = cli(capsys, *command, "--config", str(path), environ=env)
    assert code == 2 and out == ""
    assert str(path) in err and re.search(r"line 5, column \d+", err), err


@pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))
def test_a_missing_config_exits_2_and_suggests_init(capsys, env, tmp_path, command) -> None:
    path = tmp_path / "nowhere" / "config.toml"
    code, out, err = cli(capsys, *command, "--config", str(path), environ=env)
    assert code == 2 and out == ""
    assert str(path) in err and "aiconsole init" in err
    assert not path.exists()


def test_the_console_with_no_config_exits_2_and_suggests_init(capsys, env) -> None:
    # The default location (the user config dir from XDG_CONFIG_HOME): read before any frame.
    code, out, err = cli(capsys, environ=env)
    assert code == 2 and out == ""
    assert str(Path(env["XDG_CONFIG_HOME"]) / "aiconsole" / "config.toml") in err and "aiconsole init" in err


# --- init ------------------------------------------------------------------------------


def test_init_writes_a_private_starter_and_never_overwrites(capsys, env, tmp_path) -> None:
    path = tmp_path / "new" / "config.toml"
    code, out, err = cli(capsys, "init", "--config", str(path), environ=env)
    assert code == 0 and err == "" and str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    starter = path.read_bytes()
    assert b"[[vm]]" in starter

    path.write_bytes(starter + b"\n# my edit\n")
    before = path.stat().st_mtime_ns
    code, out, err = cli(capsys, "init", "--config", str(path), environ=env)
    assert code != 0 and out == "" and "already exists" in err
    assert path.read_bytes() == starter + b"\n# my edit\n" and path.stat().st_mtime_ns == before

    # The starter is a valid config: `config check` accepts it (warning about the unset key).
    code, out, err = cli(capsys, "config", "check", "--config", str(path), environ=env)
    assert code == 0 and out.startswith("ok: ") and "TENSORDOCK_API_KEY" in err


def test_aiconsole_config_names_the_file_for_every_command(capsys, env, tmp_path) -> None:
    path = tmp_path / "from-env.toml"
    env = env | {"AICONSOLE_CONFIG": str(path)}
    code, out, _ = cli(capsys, "init", environ=env)
    assert code == 0 and path.exists() and str(path) in out
    default = Path(env["XDG_CONFIG_HOME"]) / "aiconsole" / "config.toml"
    assert not default.exists()

    path.write_text(BAD_VALUE_CONFIG)
    for command in (["config", "check"], ["status"]):
        code, _, err = cli(capsys, *command, environ=env)
        assert code == 2 and str(path) in err and BAD_FIELD in err
    # --config wins over AICONSOLE_CONFIG.
    other = write_config(tmp_path, "[budget]\ndaily_usd = 2.0\n", "other.toml")
    code, out, _ = cli(capsys, "config", "check", "--config", str(other), environ=env)
    assert code == 0 and str(other) in out and "$2.00/day" in out


# --- vm start / stop -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_power_runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess[str]]:
    """`vm start training` and `vm stop inference --yes` on the demo, run side by side:
    the demo's VMs take ~4 s to start and ~3 s to stop, and these wait for real."""
    runs = {
        "start": ["vm", "start", "training", "--demo"],
        "stop": ["vm", "stop", "inference", "--demo", "--yes"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "aiconsole", *argv],
            env=subprocess_env(tmp_path_factory.mktemp(name)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in runs.items()
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        done[name] = subprocess.CompletedProcess(runs[name], proc.returncode, out, err)
    return done


def assert_in_order(text: str, *parts: str) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} not after position {at} in:\n{text}"
        at = found + len(part)


def test_vm_start_waits_and_prints_each_transition(demo_power_runs) -> None:
    done = demo_power_runs["start"]
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("starting training ($0.35/h): stopped\n"), done.stdout
    assert_in_order(done.stdout, ": stopped\n", "→ starting\n", "training is running.\n")
    assert done.stdout.endswith("training is running.\n")


def test_vm_stop_yes_waits_and_prints_each_transition(demo_power_runs) -> None:
    done = demo_power_runs["stop"]
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("stopping inference ($0.35/h): running\n"), done.stdout
    assert_in_order(done.stdout, ": running\n", "→ stopping\n", "inference is stopped.\n")


def test_vm_stop_without_a_terminal_or_yes_refuses_and_stops_nothing(tensordock, tmp_path) -> None:
    tensordock.add_instance(INSTANCE, "gpu", "Running")
    path = write_config(tmp_path, tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV)))
    done = aiconsole("vm", "stop", "gpu", "--config", str(path), env=subprocess_env(tmp_path, **{KEY_ENV: KEY}))
    assert done.returncode == 2 and done.stdout == ""
    assert "not stopping gpu without --yes" in done.stderr
    assert power_requests(tensordock) == [] and tensordock.instances[INSTANCE].status == "Running"
    assert ("GET", f"/api/v2/instances/{INSTANCE}") in tensordock.requests  # it did ask the real API


def test_vm_stop_yes_on_our_own_api_stops_it(capsys, env, tensordock, tmp_path) -> None:
    # The positive twin of the refusal above, against the same fake: it can stop.
    tensordock.add_instance(INSTANCE, "gpu", "Running")
    path = write_config(tmp_path, tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV)))
    code, out, err = cli(capsys, "vm", "stop", "gpu", "--yes", "--config", str(path), environ=env | {KEY_ENV: KEY})
    assert code == 0, err
    assert out.endswith("gpu is stopped.\n")
    assert ("POST", f"/api/v2/instances/{INSTANCE}/stop") in power_requests(tensordock)
    assert tensordock.instances[INSTANCE].status in ("Stopped", "StoppedDisassociated", "stopping")


@pytest.mark.parametrize(
    "argv",
    [
        ["--read-only", "vm", "start", "cold"],
        ["vm", "start", "cold", "--read-only"],
        ["vm", "stop", "gpu", "--yes", "--read-only"],
        ["--read-only", "vm", "stop", "gpu", "--yes"],
    ],
    ids=["start, option first", "start", "stop", "stop, option first"],
)
def test_read_only_refuses_start_and_stop(capsys, env, tensordock, tmp_path, argv) -> None:
    tensordock.add_instance(INSTANCE, "gpu", "Running")
    tensordock.add_instance(STOPPED_INSTANCE, "cold", "Stopped")
    config = tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV), ("cold", STOPPED_INSTANCE, KEY_ENV))
    path = write_config(tmp_path, config)
    code, out, err = cli(capsys, *argv, "--config", str(path), environ=env | {KEY_ENV: KEY})
    assert code == 2 and out == ""
    assert "read-only" in err and argv[argv.index("vm") + 2] in err
    assert power_requests(tensordock) == []


def test_vm_start_on_a_static_host_fails_clearly(capsys, env) -> None:
    code, out, err = cli(capsys, "vm", "start", "brain", "--demo", environ=env)
    assert code not in (0, None) and out == ""
    assert "brain" in err and "always on" in err


def test_vm_start_on_an_unknown_vm_exits_2_naming_it(capsys, env) -> None:
    code, out, err = cli(capsys, "vm", "start", "nosuch", "--demo", environ=env)
    assert code == 2 and out == ""
    assert "'nosuch'" in err


# --- untrusted text from the provider, and secrets -------------------------------------

HOSTILE_DETAIL = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\x9b31m[bold red]boom[/] token {key} rejected\r\x08"


def all_output(*outputs: str) -> str:
    return "\n".join(outputs)


def test_hostile_provider_text_reaches_no_terminal(capsys, env, tensordock, tmp_path) -> None:
    tensordock.add_instance(INSTANCE, HOSTILE_NAME, "Running")
    path = write_config(tmp_path, tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV)))
    environ = env | {KEY_ENV: KEY}

    code, out_json, err_json = cli(capsys, "status", "--json", "--config", str(path), environ=environ)
    assert code == 0, err_json
    (vm,) = json.loads(out_json)["vms"]
    assert vm["power"] == "running" and vm["error"] is None
    assert vm["label"] == HOSTILE_NAME_SHOWN  # sequences gone, markup kept as plain text

    # An error whose detail carries sequences, markup and our own key echoed back.
    tensordock.faults.fail_next(401, body={"errors": [{"detail": HOSTILE_DETAIL.format(key=KEY)}]})
    code, out_text, err_text = cli(capsys, "status", "--config", str(path), environ=environ)
    assert code == 0, err_text
    assert "! gpu: TensorDock rejected the API key (HTTP 401): [bold red]boom[/] token ******** rejected" in out_text

    everything = all_output(out_json, err_json, out_text, err_text)
    assert not CONTROL.search(everything), repr(everything)
    assert KEY not in everything


def test_a_wrong_key_is_reported_without_showing_it(capsys, env, tensordock, tmp_path) -> None:
    tensordock.add_instance(INSTANCE, "gpu", "Running")
    path = write_config(tmp_path, tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV)))
    wrong = "td-wrong-key-9876543210fedcba"
    outputs = []
    for extra in ([], ["--json"]):
        code, out, err = cli(capsys, "status", *extra, "--config", str(path), environ=env | {KEY_ENV: wrong})
        assert code == 0, err
        outputs += [out, err]
    text, report = outputs[0], json.loads(outputs[2])
    assert "! gpu: TensorDock rejected the API key (HTTP 401)" in text
    assert report["vms"][0]["power"] == "unknown" and "HTTP 401" in report["vms"][0]["error"]
    assert wrong not in all_output(*outputs) and KEY not in all_output(*outputs)
    assert len(tensordock.requests) >= 2  # it did reach the API, and was turned away


def test_a_missing_secret_is_shown_on_its_vm_not_a_crash(capsys, env, tensordock, tmp_path) -> None:
    tensordock.add_instance(INSTANCE, "gpu", "Running")
    config = tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV), ("nokey", INSTANCE, "SOME_UNSET_VAR"))
    path = write_config(tmp_path, config)
    environ = env | {KEY_ENV: KEY}

    code, out, err = cli(capsys, "status", "--config", str(path), environ=environ)
    assert code == 0, err
    assert re.search(r"^nokey\s+tensordock\s+unknown\s", out, re.MULTILINE), out
    assert re.search(r"^! nokey: .*SOME_UNSET_VAR", out, re.MULTILINE), out
    assert re.search(r"^gpu\s+tensordock\s+running\s", out, re.MULTILINE), out  # the other VM still works

    code, out, err = cli(capsys, "status", "--json", "--config", str(path), environ=environ)
    assert code == 0, err
    vms = {vm["name"]: vm for vm in json.loads(out)["vms"]}
    assert vms["nokey"]["power"] == "unknown" and "SOME_UNSET_VAR" in vms["nokey"]["error"]
    assert vms["gpu"]["power"] == "running" and vms["gpu"]["error"] is None
    # Only the VM with a key asked the API.
    assert {path for _, path in tensordock.requests} == {f"/api/v2/instances/{INSTANCE}"}
    assert len(tensordock.requests) == 2
