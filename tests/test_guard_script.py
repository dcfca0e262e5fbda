"""The real guard script, run by sh and dash against a fake nvidia-smi, who and power-off (issue 7).

The fakes are tiny shell scripts in a temp dir; the power-off fake records each call in a file,
so "called once" and "not called" are observed, not inferred from the log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aiconsole.services.guard_files import SCRIPT_FILE, read_guard_file


def _shells() -> list[str]:
    found: dict[str, str] = {}
    # dash proves "no bashisms"; bash is /bin/sh on RHEL-family VMs. sh is often dash: run it once.
    for name in ("dash", "sh", "bash"):
        path = shutil.which(name)
        if path:
            found.setdefault(os.path.realpath(path), name)
    return sorted(found.values())


@dataclass
class Guard:
    """One VM's worth of guard state in a temp dir."""

    root: Path
    shell: str
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.script = self.root / "aiconsole-guard.sh"
        self.script.write_text(read_guard_file(SCRIPT_FILE))
        self.calls = self.root / "poweroff.calls"
        self.log = self.root / "guard.log"
        self.heartbeat = self.root / "state" / "heartbeat"
        self.installed = self.root / "state" / "installed"
        self.heartbeat.parent.mkdir()
        self.fake("poweroff", f'echo "$*" >> "{self.calls}"')
        self.gpu("0\n3\n")
        self.who("")
        self.env = {
            "PATH": os.environ["PATH"],
            "AICONSOLE_GUARD_HEARTBEAT": str(self.heartbeat),
            "AICONSOLE_GUARD_INSTALLED": str(self.installed),
            "AICONSOLE_GUARD_MAX_SILENCE_S": "1800",
            "AICONSOLE_GUARD_POWEROFF": f"{self.root / 'poweroff'} --now",
            "AICONSOLE_GUARD_NVIDIA_SMI": str(self.root / "nvidia-smi"),
            "AICONSOLE_GUARD_WHO": str(self.root / "who"),
            "AICONSOLE_GUARD_LOG": str(self.log),
        }

    def fake(self, name: str, body: str) -> None:
        path = self.root / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def printing(self, name: str, output: str, rc: int) -> None:
        """A fake that prints `output` exactly (kept in a file: no quoting to get wrong) and exits `rc`."""
        (self.root / f"{name}.out").write_text(output)
        self.fake(name, f'cat "{self.root / name}.out"\nexit {rc}')

    def gpu(self, output: str, rc: int = 0) -> None:
        self.printing("nvidia-smi", output, rc)

    def who(self, output: str, rc: int = 0) -> None:
        self.printing("who", output, rc)

    @staticmethod
    def age(path: Path, seconds: float) -> None:
        path.touch()
        then = time.time() - seconds
        os.utime(path, (then, then))

    def run(self, **env: str) -> tuple[str, int]:
        """The decision line and how many times power-off was called."""
        result = subprocess.run(
            [self.shell, str(self.script)],
            env={**self.env, **env},
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert len(lines) == 1, lines  # one decision line per run
        calls = self.calls.read_text().splitlines() if self.calls.exists() else []
        return lines[0], len(calls)


@pytest.fixture(params=_shells())
def guard(request: pytest.FixtureRequest, tmp_path: Path) -> Guard:
    g = Guard(tmp_path, request.param)
    g.age(g.installed, 86400)
    return g


def test_silent_idle_and_no_session_powers_off_once(guard: Guard) -> None:
    guard.age(guard.heartbeat, 1903)
    line, calls = guard.run()
    # A second may tick between utime and the run, hence 190[0-9].
    assert re.fullmatch(r"poweroff: no heartbeat for 190[0-9]s, GPU idle \(0%, 3%\), no session", line)
    assert calls == 1
    assert guard.calls.read_text() == "--now\n"  # the command's arguments reach it
    assert line in guard.log.read_text()


def test_fresh_heartbeat_keeps(guard: Guard) -> None:
    guard.age(guard.heartbeat, 42)
    line, calls = guard.run()
    assert line.startswith("keep: heartbeat 4") and line.endswith("s ago")
    assert calls == 0


def test_one_busy_gpu_of_two_keeps(guard: Guard) -> None:
    guard.gpu("3\n87\n")
    line, calls = guard.run()
    assert (line, calls) == ("keep: GPU busy (87%)", 0)


def test_utilisation_at_the_busy_level_is_idle(guard: Guard) -> None:
    guard.gpu(" 10\r\n 10\r\n")
    line, calls = guard.run()
    assert "GPU idle (10%, 10%)" in line and calls == 1


@pytest.mark.parametrize(
    ("who_output", "expected"),
    [
        ("alice    pts/0  2026-01-01 10:00 (10.0.0.2)\n", "keep: 1 session open"),
        ("alice pts/0\nbob pts/1\n", "keep: 2 sessions open"),
    ],
)
def test_an_open_session_keeps(guard: Guard, who_output: str, expected: str) -> None:
    guard.who(who_output)
    assert guard.run() == (expected, 0)


def test_who_failing_keeps(guard: Guard) -> None:
    guard.who("", rc=1)
    assert guard.run() == ("keep: sessions unreadable (who failed)", 0)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "keep: GPU unreadable ("),
        ("exit1", "keep: GPU unreadable (nvidia-smi failed)"),
        ("garbage", "keep: GPU unreadable (unexpected output)"),
        ("not-supported", "keep: GPU unreadable (unexpected output)"),
        ("empty", "keep: GPU unreadable (no GPU listed)"),
    ],
)
def test_unreadable_gpu_keeps(guard: Guard, setup: str, expected: str) -> None:
    env = {}
    if setup == "missing":
        env["AICONSOLE_GUARD_NVIDIA_SMI"] = str(guard.root / "no-such-nvidia-smi")
    elif setup == "exit1":
        guard.gpu("0\n", rc=1)
    elif setup == "garbage":
        guard.gpu("NVIDIA-SMI has failed because it couldn't communicate with the driver\n")
    elif setup == "not-supported":
        guard.gpu("0\n[N/A]\n")
    else:
        guard.gpu("")
    line, calls = guard.run(**env)
    assert line.startswith(expected) and calls == 0
    assert "unreadable" in guard.log.read_text()


def test_missing_gpu_is_idle_only_when_not_required(guard: Guard) -> None:
    missing = str(guard.root / "no-such-nvidia-smi")
    line, calls = guard.run(AICONSOLE_GUARD_NVIDIA_SMI=missing, AICONSOLE_GUARD_REQUIRE_GPU="0")
    assert line.startswith("poweroff: no heartbeat for ") and line.endswith(", no GPU, no session")
    assert calls == 1


def test_a_failing_gpu_keeps_even_when_not_required(guard: Guard) -> None:
    guard.gpu("", rc=9)
    line, calls = guard.run(AICONSOLE_GUARD_REQUIRE_GPU="0")
    assert (line, calls) == ("keep: GPU unreadable (nvidia-smi failed)", 0)


def test_no_heartbeat_but_installed_recently_keeps(guard: Guard) -> None:
    guard.age(guard.installed, 120)
    line, calls = guard.run()
    assert line.startswith("keep: no heartbeat yet, installed 12") and calls == 0


def test_no_heartbeat_since_an_old_install_powers_off(guard: Guard) -> None:
    guard.age(guard.installed, 7200)
    line, calls = guard.run()
    assert line.startswith("poweroff: no heartbeat for 720") and "(none since install)" in line
    assert calls == 1


def test_no_heartbeat_and_no_marker_keeps(guard: Guard) -> None:
    guard.installed.unlink()
    assert guard.run() == ("keep: no heartbeat and no install marker", 0)


def test_dry_run_logs_without_calling(guard: Guard) -> None:
    guard.age(guard.heartbeat, 4000)
    line, calls = guard.run(AICONSOLE_GUARD_DRY_RUN="1")
    assert line.startswith("would poweroff (dry run): no heartbeat for 400") and calls == 0


def test_max_silence_setting_is_honoured(guard: Guard) -> None:
    guard.age(guard.heartbeat, 400)
    assert guard.run(AICONSOLE_GUARD_MAX_SILENCE_S="300")[1] == 1


def test_busy_level_setting_is_honoured(guard: Guard) -> None:
    guard.gpu("30\n")
    assert guard.run(AICONSOLE_GUARD_BUSY_UTIL_PCT="50")[1] == 1


def test_hostile_poweroff_setting_is_not_evaluated(guard: Guard) -> None:
    """The command setting is split on blanks, never eval'ed: `;` and globs stay literal."""
    marker = guard.root / "pwned"
    _, calls = guard.run(AICONSOLE_GUARD_POWEROFF=f"{guard.root / 'poweroff'} ; touch {marker} *")
    assert calls == 1 and not marker.exists()
    assert guard.calls.read_text() == f"; touch {marker} *\n"


def test_bad_number_setting_fails_the_unit_without_powering_off(guard: Guard) -> None:
    result = subprocess.run(
        [guard.shell, str(guard.script)],
        env={**guard.env, "AICONSOLE_GUARD_MAX_SILENCE_S": "30m"},
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == "keep: bad setting AICONSOLE_GUARD_MAX_SILENCE_S='30m'\n"
    assert not guard.calls.exists()


def test_a_failing_poweroff_is_reported(guard: Guard) -> None:
    result = subprocess.run(
        [guard.shell, str(guard.script)],
        env={**guard.env, "AICONSOLE_GUARD_POWEROFF": "false"},
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "poweroff failed (exit 1)"


def test_script_has_no_bashisms_dash_parses_it() -> None:
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash not installed")
    text = read_guard_file(SCRIPT_FILE)
    assert text.startswith("#!/bin/sh\n")
    subprocess.run([dash, "-n", "-c", text], check=True, timeout=10)
