"""The guard's settings, unit rendering, SSH command lines and status parsing (issue 7)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aiconsole.domain.guard import (
    SCRIPT_PATH,
    TIMER_NAME,
    GuardSettings,
    GuardStatus,
    heartbeat_status_command,
    install_commands,
    parse_status,
    remove_commands,
    render_service,
    root_command_line,
    status_command,
    systemd_environment_line,
)
from aiconsole.services.guard_files import SERVICE_FILE, TIMER_FILE, load_guard_files, read_guard_file

HOSTILE = "/tmp/x; rm -rf / #"


def _sh(command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], check=False, capture_output=True, text=True, timeout=30, **kwargs)


def test_service_carries_every_setting_as_an_environment_line() -> None:
    settings = GuardSettings(max_silence_s=900, busy_util_pct=25, require_gpu=False, dry_run=True)
    text = render_service(settings, read_guard_file(SERVICE_FILE))
    assert "@" not in text.replace("@...@", "")  # no placeholder left behind
    assert f"ExecStart={SCRIPT_PATH}\n" in text
    for line in (
        'Environment="AICONSOLE_GUARD_MAX_SILENCE_S=900"',
        'Environment="AICONSOLE_GUARD_BUSY_UTIL_PCT=25"',
        'Environment="AICONSOLE_GUARD_REQUIRE_GPU=0"',
        'Environment="AICONSOLE_GUARD_DRY_RUN=1"',
        'Environment="AICONSOLE_GUARD_POWEROFF=systemctl poweroff"',
        'Environment="AICONSOLE_GUARD_HEARTBEAT=/var/lib/aiconsole-guard/heartbeat"',
        'Environment="AICONSOLE_GUARD_INSTALLED=/var/lib/aiconsole-guard/installed"',
    ):
        assert line + "\n" in text
    assert "Type=oneshot" in text and "AICONSOLE_GUARD_LOG" not in text


def test_timer_waits_after_boot_then_runs_every_minute() -> None:
    text = load_guard_files(GuardSettings()).timer
    assert "OnBootSec=5min\n" in text and "OnUnitActiveSec=1min\n" in text
    assert "WantedBy=timers.target" in text


def test_environment_values_are_escaped_for_systemd() -> None:
    line = systemd_environment_line("AICONSOLE_GUARD_POWEROFF", 'say "100%" \\ $HOME')
    assert line == 'Environment="AICONSOLE_GUARD_POWEROFF=say \\"100%%\\" \\\\ $HOME"'
    with pytest.raises(ValueError):
        systemd_environment_line("AICONSOLE_GUARD_POWEROFF", "true\nExecStartPre=/bin/evil")
    with pytest.raises(ValueError):
        systemd_environment_line("BAD NAME", "x")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heartbeat_path": HOSTILE},
        {"heartbeat_path": "relative/heartbeat"},
        {"installed_path": "/var/lib/../../etc/shadow"},
        {"log_path": "/tmp/$(reboot)"},
        {"poweroff_command": "systemctl poweroff\nExecStartPre=/bin/evil"},
        {"poweroff_command": "  "},
        {"max_silence_s": 30},
        {"busy_util_pct": 101},
    ],
)
def test_settings_refuse_hostile_or_impossible_values(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="guard"):
        GuardSettings(**kwargs)


def test_systemd_reads_the_rendered_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    script = tmp_path / "aiconsole-guard.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    settings = GuardSettings(poweroff_command='say "100%" \\ $HOME')
    (tmp_path / "aiconsole-guard.service").write_text(
        render_service(settings, read_guard_file(SERVICE_FILE), str(script))
    )
    (tmp_path / "aiconsole-guard.timer").write_text(read_guard_file(TIMER_FILE))
    result = subprocess.run(
        [analyze, "verify", "aiconsole-guard.service", "aiconsole-guard.timer"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_heartbeat_touches_only_when_the_guard_is_installed(tmp_path: Path) -> None:
    heartbeat = tmp_path / "state" / "heartbeat"
    command = heartbeat_status_command(GuardSettings(heartbeat_path=str(heartbeat)))
    result = _sh(command)  # no guard: nothing touched, nothing created, and it says so
    assert result.returncode == 0 and "heartbeat=none" in result.stdout and not heartbeat.parent.exists()
    heartbeat.parent.mkdir()
    result = _sh(command)
    assert result.returncode == 0 and "heartbeat=sent" in result.stdout and heartbeat.exists()
    with pytest.raises(ValueError):
        GuardSettings(heartbeat_path=HOSTILE)


def test_install_writes_files_then_marker_then_enables_the_timer() -> None:
    files = load_guard_files(GuardSettings())
    commands = install_commands(GuardSettings(), files.script, files.service, files.timer, owner="ubuntu")
    joined = "\n".join(commands)
    assert commands[0] == "mkdir -p /usr/local/lib/aiconsole-guard"
    assert "mkdir -p /var/lib/aiconsole-guard && chown ubuntu /var/lib/aiconsole-guard" in commands
    assert f"mv -f {SCRIPT_PATH}.tmp {SCRIPT_PATH}" in joined
    assert "mv -f /etc/systemd/system/aiconsole-guard.service.tmp /etc/systemd/system/aiconsole-guard.service" in joined
    assert "mv -f /etc/systemd/system/aiconsole-guard.timer.tmp /etc/systemd/system/aiconsole-guard.timer" in joined
    assert commands[-3:] == [
        "touch /var/lib/aiconsole-guard/installed",
        "systemctl daemon-reload",
        f"systemctl enable --now {TIMER_NAME}",
    ]
    with pytest.raises(ValueError):
        install_commands(GuardSettings(), "", "", "", owner="root; reboot")


def test_install_writes_hostile_text_byte_for_byte(tmp_path: Path) -> None:
    """The file contents travel shell-quoted: quotes, $(...), backticks and % arrive as written."""
    text = "#!/bin/sh\necho '$(reboot)' \"`id`\" %s %% \\n\n\ttabbed\n"
    target = tmp_path / "guard.sh"
    commands = install_commands(GuardSettings(), text, "", "", owner="ubuntu", script_path=str(target))
    (write,) = [c for c in commands if c.endswith(f"mv -f {target}.tmp {target}")]
    assert _sh(write).returncode == 0
    assert target.read_text() == text
    assert target.stat().st_mode & 0o777 == 0o755


def test_remove_is_retryable_and_deletes_only_named_files() -> None:
    commands = remove_commands(GuardSettings())
    assert commands[0] == f"systemctl disable --now {TIMER_NAME} 2>/dev/null || true"
    assert (
        f"rm -f /etc/systemd/system/aiconsole-guard.timer /etc/systemd/system/aiconsole-guard.service {SCRIPT_PATH}"
        in commands
    )
    assert "rm -f /var/lib/aiconsole-guard/heartbeat /var/lib/aiconsole-guard/installed" in commands
    assert not any("rm -r" in c for c in commands)
    assert commands[-1] == "systemctl daemon-reload"


def test_root_command_line_runs_the_commands_under_sudo_stopping_at_a_failure() -> None:
    line = root_command_line(["echo one", "false", "echo two"])
    argv = shlex.split(line)
    assert argv[:4] == ["sudo", "-n", "sh", "-c"]
    assert argv[4] == "set -e\necho one\nfalse\necho two"
    result = _sh(argv[4])
    assert result.returncode == 1 and result.stdout == "one\n"


def test_status_command_runs_and_parses(tmp_path: Path) -> None:
    """Run the real status command against fake systemctl/journalctl, under `set -e` as root would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, output in (("systemctl", "active"), ("journalctl", "keep: heartbeat 42s ago")):
        (bin_dir / name).write_text(f"#!/bin/sh\necho '{output}'\n")
        (bin_dir / name).chmod(0o755)
    heartbeat = tmp_path / "heartbeat"
    heartbeat.touch()
    then = time.time() - 100
    os.utime(heartbeat, (then, then))
    settings = GuardSettings(heartbeat_path=str(heartbeat))
    script = "set -e\n" + status_command(settings, script_path=str(tmp_path / "missing.sh"))
    result = _sh(script, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    status = parse_status(result.stdout)
    assert status.installed is False
    assert status.timer_state == "active" and status.active
    assert status.last_decision == "keep: heartbeat 42s ago"
    assert status.heartbeat_age_s is not None and 99 <= status.heartbeat_age_s <= 110

    heartbeat.unlink()
    result = _sh(script, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode == 0 and parse_status(result.stdout).heartbeat_age_s is None


def test_parse_status_normal_output() -> None:
    output = "installed=yes\ntimer=active\nlast=poweroff: no heartbeat for 1903s, GPU idle (0%), no session\n"
    status = parse_status(output + "heartbeat_age=1903\n")
    assert status == GuardStatus(
        installed=True,
        timer_state="active",
        last_decision="poweroff: no heartbeat for 1903s, GPU idle (0%), no session",
        heartbeat_age_s=1903,
    )


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "\x00\xff",
        "sudo: a password is required\n",
        "installed=maybe\ntimer=\nlast=\nheartbeat_age=12abc\n",
        "=\n===",
    ],
)
def test_parse_status_never_raises_on_garbage(garbage: str) -> None:
    status = parse_status(garbage)
    assert status.installed is None and status.timer_state == "unknown" and not status.active
    assert status.last_decision is None and status.heartbeat_age_s is None


def test_parse_status_sanitises_remote_text() -> None:
    status = parse_status("installed=no\ntimer=\x1b[31mactive\nlast=keep: \x1b]0;pwned\x07GPU busy (87%)\x07\n")
    assert status.timer_state == "active"  # the escape is stripped, the word survives
    assert status.last_decision == "keep: GPU busy (87%)"
