"""The guard driven over SSH (issue 7): install, status, remove and heartbeats against a fake VM.

The fake VM (tests/guard_vm.py) is the loopback asyncssh server running every exec in a real
`sh`, so the real command lines run: files are really written (under a temp dir), the fake
systemctl records what it was asked, and the installed script is run afterwards to show the
heartbeat the console sends is the one the installed guard reads.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiconsole.config import settings_from_toml_text
from aiconsole.config_file import ConfigError
from aiconsole.config_guard import GuardConfig
from aiconsole.domain.guard import (
    SERVICE_NAME,
    TIMER_NAME,
    GuardLayout,
    GuardSettings,
    GuardView,
    heartbeat_status_command,
    parse_status,
)
from aiconsole.domain.power import PowerState
from aiconsole.services.guard_files import SCRIPT_FILE, TIMER_FILE, read_guard_file
from aiconsole.services.guard_heartbeat import GuardHeartbeat, build_guard_heartbeat
from aiconsole.services.guard_remote import GuardError, GuardRemote
from aiconsole.services.ssh import SshPool
from guard_vm import FakeVm

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = "\x1b]0;pwned\x07\x1b[31mactive\x1b[0m\x9b2J"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def settings_for(vm: FakeVm, **kwargs) -> GuardSettings:
    return GuardConfig(**kwargs).guard_settings(vm.layout)


def make_pool(vm: FakeVm, tmp_path: Path) -> SshPool:
    return SshPool(
        known_hosts=vm.server.known_hosts_path,
        config_file=tmp_path / "no-ssh-config",
        client_keys=[vm.server.client_key_path],
        use_agent=False,
        backoff_base_s=0.05,  # a lost connection's next attempt comes at once: the tests wait on it
    )


@pytest.fixture
async def fake_vm(tmp_path: Path):
    async with FakeVm(tmp_path / "vm1") as vm:
        yield vm


@pytest.fixture
async def pool(fake_vm: FakeVm, tmp_path: Path):
    async with make_pool(fake_vm, tmp_path) as pool:
        yield pool


def remote_for(vm: FakeVm, pool: SshPool, **kwargs) -> GuardRemote:
    return GuardRemote(pool, settings_for(vm, **kwargs), layout=vm.layout)


def run_installed_script(vm: FakeVm) -> str:
    """Run the installed script as its timer would: the installed unit's Environment lines, on
    the fake VM (an idle GPU, nobody logged in, the fake systemctl recording a `poweroff`)."""
    layout = vm.layout
    unit = Path(layout.unit_dir, SERVICE_NAME).read_text()
    env = dict(re.findall(r'^Environment="([A-Z_]+)=(.*)"$', unit, flags=re.MULTILINE))
    env["PATH"] = f"{vm.bin}:{os.environ['PATH']}"
    result = subprocess.run([layout.script_path], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# --- install, status, remove ---------------------------------------------------------------------


async def test_install_writes_script_and_units_then_enables_the_timer(fake_vm: FakeVm, pool: SshPool) -> None:
    layout = fake_vm.layout
    status = await remote_for(fake_vm, pool, silence_minutes=20, busy_util_pct=15).install("gpu", fake_vm.server.target)

    script = Path(layout.script_path)
    assert script.read_text() == read_guard_file(SCRIPT_FILE) and script.stat().st_mode & 0o777 == 0o755
    service = Path(layout.unit_dir, SERVICE_NAME).read_text()
    assert f"ExecStart={layout.script_path}\n" in service
    assert 'Environment="AICONSOLE_GUARD_MAX_SILENCE_S=1200"\n' in service
    assert 'Environment="AICONSOLE_GUARD_BUSY_UTIL_PCT=15"\n' in service
    assert f'Environment="AICONSOLE_GUARD_HEARTBEAT={layout.heartbeat_path}"\n' in service
    assert Path(layout.unit_dir, TIMER_NAME).read_text() == read_guard_file(TIMER_FILE)
    assert Path(layout.installed_path).exists() and not Path(layout.heartbeat_path).exists()
    assert fake_vm.systemctl_calls[-3:] == ["daemon-reload", f"enable --now {TIMER_NAME}", f"is-active {TIMER_NAME}"]
    assert fake_vm.sudo_calls and all(call == "-n sh -c" for call in fake_vm.sudo_calls)  # never waits for a password
    assert fake_vm.server.commands[0] == "id -un"  # the owner of the state directory: the SSH user
    assert status.installed is True and status.armed and status.max_silence_s == 1200 and status.dry_run is False
    assert status.last_decision is None  # journalctl's "-- No entries --" is not a decision
    # The installed pieces work together: the guard counts its silence from the install marker.
    assert run_installed_script(fake_vm).startswith("keep: no heartbeat yet, installed ")


async def test_status_reads_the_last_decision_and_heartbeat_age(fake_vm: FakeVm, pool: SshPool) -> None:
    remote = remote_for(fake_vm, pool, dry_run=True)
    target = fake_vm.server.target
    before = await remote.status("gpu", target)
    assert before.installed is False and not before.armed and before.heartbeat_age_s is None
    await remote.install("gpu", target)
    await remote.heartbeat("gpu", target)
    fake_vm.journal("keep: GPU busy (87%)\n")
    status = await remote.status("gpu", target)
    assert status.installed and status.armed and status.dry_run is True
    assert status.last_decision == "keep: GPU busy (87%)"
    assert status.heartbeat_age_s is not None and 0 <= status.heartbeat_age_s <= 5


async def test_install_again_rewrites_the_unit_with_new_settings(fake_vm: FakeVm, pool: SshPool) -> None:
    target = fake_vm.server.target
    first = await remote_for(fake_vm, pool, dry_run=True).install("gpu", target)
    assert first.max_silence_s == 1200 and first.dry_run is True
    again = await remote_for(fake_vm, pool, silence_minutes=45).install("gpu", target)
    assert again.armed and again.max_silence_s == 2700 and again.dry_run is False
    assert fake_vm.systemctl_calls.count(f"enable --now {TIMER_NAME}") == 2


async def test_heartbeat_touches_the_file_the_installed_guard_reads(fake_vm: FakeVm, pool: SshPool) -> None:
    remote, target, layout = remote_for(fake_vm, pool), fake_vm.server.target, fake_vm.layout
    first = await remote.heartbeat("gpu", target)
    assert first.heartbeat == "none" and first.installed is False  # no guard: nothing touched, no error
    assert not Path(layout.heartbeat_path).parent.exists()  # and no directory created as a side effect

    await remote.install("gpu", target)
    sudo_before = len(fake_vm.sudo_calls)
    beat = await remote.heartbeat("gpu", target)
    assert beat.heartbeat == "sent" and beat.installed and beat.armed and beat.max_silence_s == 1200
    assert len(fake_vm.sudo_calls) == sudo_before  # a heartbeat needs no root
    heartbeat = Path(layout.heartbeat_path)
    old = heartbeat.stat().st_mtime - 3600
    os.utime(heartbeat, (old, old))  # the console went silent an hour ago: the guard powers off
    decision = run_installed_script(fake_vm)  # the second may turn between the two clock reads
    assert re.fullmatch(r"poweroff: no heartbeat for 360[01]s, GPU idle \(0%\), no session", decision), decision
    assert fake_vm.systemctl_calls[-1] == "poweroff"
    await remote.heartbeat("gpu", target)
    assert heartbeat.stat().st_mtime > old + 3000
    calls = len(fake_vm.systemctl_calls)
    assert re.fullmatch(r"keep: heartbeat [01]s ago", run_installed_script(fake_vm))
    assert len(fake_vm.systemctl_calls) == calls  # no poweroff


async def test_remove_deletes_everything_and_stops_the_timer(fake_vm: FakeVm, pool: SshPool) -> None:
    remote, target, layout = remote_for(fake_vm, pool), fake_vm.server.target, fake_vm.layout
    await remote.install("gpu", target)
    await remote.heartbeat("gpu", target)
    assert fake_vm.timer_active
    status = await remote.remove("gpu", target)
    assert status.installed is False and status.timer_state == "inactive" and not fake_vm.timer_active
    assert f"disable --now {TIMER_NAME}" in fake_vm.systemctl_calls
    for path in (layout.script_path, layout.heartbeat_path, layout.installed_path):
        assert not Path(path).exists(), path
    assert not Path(layout.unit_dir, SERVICE_NAME).exists() and not Path(layout.unit_dir, TIMER_NAME).exists()
    assert not Path(layout.heartbeat_path).parent.exists() and not Path(layout.script_path).parent.exists()
    again = await remote.remove("gpu", target)  # retryable: nothing left is not an error
    assert again.installed is False


async def test_sudo_refusing_is_a_clear_error_and_changes_nothing(fake_vm: FakeVm, pool: SshPool) -> None:
    fake_vm.refuse_sudo()
    with pytest.raises(GuardError) as caught:
        await remote_for(fake_vm, pool).install("gpu", fake_vm.server.target)
    message = caught.value.message
    assert message.startswith("installing the guard on gpu needs root, and sudo refused: sudo: a password is required")
    assert "passwordless sudo" in message
    assert not Path(fake_vm.layout.script_path).exists() and fake_vm.systemctl_calls == []


async def test_a_failing_install_step_names_itself(fake_vm: FakeVm, pool: SshPool) -> None:
    fake_vm.fail_systemctl_enable()
    with pytest.raises(GuardError, match=r"installing the guard on gpu failed \(exit 1\): Failed to enable unit"):
        await remote_for(fake_vm, pool).install("gpu", fake_vm.server.target)


async def test_ssh_down_is_a_guard_error(fake_vm: FakeVm, pool: SshPool) -> None:
    await fake_vm.server.close()
    with pytest.raises(GuardError, match="connection refused"):
        await remote_for(fake_vm, pool).heartbeat("gpu", fake_vm.server.target)


async def test_hostile_remote_output_arrives_inert(fake_vm: FakeVm, pool: SshPool) -> None:
    remote, target = remote_for(fake_vm, pool), fake_vm.server.target
    await remote.install("gpu", target)
    fake_vm.timer_says(HOSTILE + "\n")
    fake_vm.journal("keep: \x1b]52;c;cm0gLXJmIC8=\x07GPU busy\x1b[2J (87%)\n")
    status = await remote.status("gpu", target)
    assert status.timer_state == "active" and status.last_decision == "keep: GPU busy (87%)"
    fake_vm.refuse_sudo()
    (fake_vm.root / "bin" / "sudo").write_text("#!/bin/sh\nprintf 'sudo: \\033]0;pwned\\007no\\033[31m' >&2\nexit 1\n")
    with pytest.raises(GuardError) as caught:
        await remote.status("gpu", target)
    assert not CONTROL.search(caught.value.message) and "pwned" not in caught.value.message


# --- heartbeats for the fleet ---------------------------------------------------------------------


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


async def test_one_round_beats_every_running_vm_and_reports_each(fake_vm: FakeVm, pool: SshPool) -> None:
    """Two VM names on the fake VM (two connections, one guard), one with SSH down, one stopped."""
    clock = Clock()
    remote = remote_for(fake_vm, pool)
    await remote.install("a", fake_vm.server.target)
    target = fake_vm.server.target
    targets = {"a": target, "b": target, "down": f"aiconsole@127.0.0.1:{free_port()}", "off": target}
    heartbeat = GuardHeartbeat(remote, targets, clock=clock)
    powers = {"a": PowerState.RUNNING, "b": PowerState.RUNNING, "down": PowerState.RUNNING, "off": PowerState.STOPPED}
    before = len(fake_vm.server.commands)
    await heartbeat.beat(powers)
    assert len(fake_vm.server.commands) == before + 2  # a and b; never the stopped VM
    clock.advance(12)
    for name in ("a", "b"):
        view = heartbeat.state(name)
        assert view is not None and view.armed and not view.failing and view.last_sent_at == T0
        assert view.text(clock.now) == "guard armed (20m) · heartbeat 12s ago"
    down = heartbeat.state("down")
    assert down is not None and down.failing and down.installed is None
    assert down.text(clock.now).startswith("guard: heartbeat failed: ") and "connection refused" in down.text(clock.now)
    assert heartbeat.state("off") is None

    # The guard's VM goes away: the view keeps what it knew and when the last beat got through.
    await fake_vm.server.close()
    clock.advance(48)
    await heartbeat.beat(powers)
    failing = heartbeat.state("a")
    assert failing is not None and failing.failing and failing.installed and failing.last_sent_at == T0
    assert failing.text(clock.now).startswith(
        "guard: heartbeat failed (last sent 1m 00s ago, powers off after 20m of silence): "
    )

    # A VM that stops is forgotten.
    await heartbeat.beat(powers | {"a": PowerState.STOPPED})
    assert heartbeat.state("a") is None and heartbeat.state("b") is not None


async def test_a_vm_without_the_guard_reads_not_installed_without_error(fake_vm: FakeVm, pool: SshPool) -> None:
    heartbeat = GuardHeartbeat(remote_for(fake_vm, pool), {"gpu": fake_vm.server.target}, clock=Clock())
    for _ in range(3):
        await heartbeat.beat({"gpu": PowerState.RUNNING})
    view = heartbeat.state("gpu")
    assert view is not None and view.installed is False and not view.failing and view.error == ""
    assert view.text(T0) == "guard not installed"
    assert not Path(fake_vm.layout.heartbeat_path).parent.exists()
    assert fake_vm.sudo_calls == []  # heartbeats never use sudo


async def test_run_beats_every_interval_and_survives_a_bug(fake_vm: FakeVm, pool: SshPool) -> None:
    calls = 0

    def powers() -> dict[str, PowerState]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("a bug in the caller's power map")
        return {"gpu": PowerState.RUNNING, "other": PowerState.RUNNING}

    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 4:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    heartbeat = GuardHeartbeat(remote_for(fake_vm, pool), {"gpu": fake_vm.server.target}, interval_s=45, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await heartbeat.run(powers)
    assert len(delays) == 4 and all(40 < delay <= 45 for delay in delays)
    beats = [c for c in fake_vm.server.commands if c.startswith("if [ -d ")]
    assert len(beats) == 3  # four rounds, the second lost to the bug, the others sent
    assert heartbeat.state("gpu") is not None and heartbeat.state("other") is None  # no target: never beaten


async def test_a_heartbeat_that_cannot_write_the_file_is_an_error(fake_vm: FakeVm, pool: SshPool) -> None:
    remote = remote_for(fake_vm, pool)
    await remote.install("gpu", fake_vm.server.target)
    heartbeat = Path(fake_vm.layout.heartbeat_path)
    heartbeat.symlink_to(fake_vm.root / "no-such-dir" / "heartbeat")  # touch fails, even for root
    beat = GuardHeartbeat(remote, {"gpu": fake_vm.server.target}, clock=Clock())
    await beat.beat({"gpu": PowerState.RUNNING})
    view = beat.state("gpu")
    assert view is not None and view.failing and view.last_sent_at is None
    assert "heartbeat file could not be written" in view.text(T0)


async def test_hostile_state_is_shown_inert_on_the_pane_line(fake_vm: FakeVm, pool: SshPool) -> None:
    remote = remote_for(fake_vm, pool)
    await remote.install("gpu", fake_vm.server.target)
    fake_vm.timer_says("\x1b[31mfai\x1b]0;x\x07led\n")
    beat = GuardHeartbeat(remote, {"gpu": fake_vm.server.target}, clock=Clock())
    await beat.beat({"gpu": PowerState.RUNNING})
    view = beat.state("gpu")
    assert view is not None and view.text(T0) == "guard installed, timer failed (20m) · heartbeat 0s ago"


def test_build_guard_heartbeat_follows_the_config(tmp_path: Path) -> None:
    settings = settings_from_toml_text(
        "[guard]\nheartbeat_s = 30\nsilence_minutes = 5\n"
        '[[vm]]\nname = "gpu"\nprovider = "static"\nssh = "ops@10.0.0.5:2222"\n'
        '[[vm]]\nname = "nossh"\nprovider = "static"\n',
        "test",
    )
    heartbeat = build_guard_heartbeat(settings, SshPool(known_hosts=tmp_path / "kh", config_file=tmp_path / "c"))
    assert heartbeat.interval_s == 30
    assert heartbeat._targets == {"gpu": "ops@10.0.0.5:2222"}
    assert heartbeat._remote.settings.max_silence_s == 300


# --- the config section and the domain pieces added for the console -------------------------------


def test_guard_config_defaults_and_limits() -> None:
    settings = GuardConfig().guard_settings()
    assert settings.max_silence_s == 1200 and settings.busy_util_pct == 10 and settings.require_gpu
    assert GuardConfig().heartbeat_s == 60
    with pytest.raises(ConfigError, match=r"guard.*silence_minutes \(2\) must be at least 3 heartbeats long"):
        settings_from_toml_text("[guard]\nsilence_minutes = 2\nheartbeat_s = 60\n", "test.toml")
    with pytest.raises(ConfigError, match="guard.busy_util_pct"):
        settings_from_toml_text("[guard]\nbusy_util_pct = 101\n", "test.toml")


def test_layout_under_moves_every_path() -> None:
    layout = GuardLayout.under("/tmp/x/")
    assert layout == GuardLayout(
        "/tmp/x/usr/local/lib/aiconsole-guard/aiconsole-guard.sh",
        "/tmp/x/etc/systemd/system",
        "/tmp/x/var/lib/aiconsole-guard/heartbeat",
        "/tmp/x/var/lib/aiconsole-guard/installed",
    )
    with pytest.raises(ValueError, match="guard unit_dir"):
        GuardLayout(unit_dir="/etc/$(reboot)")


def test_heartbeat_status_command_runs_under_set_e_and_parses(tmp_path: Path) -> None:
    layout = GuardLayout.under(str(tmp_path))
    settings = GuardSettings(heartbeat_path=layout.heartbeat_path, installed_path=layout.installed_path)
    command = "set -e\n" + heartbeat_status_command(settings, layout.script_path, layout.unit_dir)
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    status = parse_status(result.stdout)
    assert status.heartbeat == "none" and status.installed is False and status.max_silence_s is None
    assert not Path(layout.heartbeat_path).parent.exists()


def test_parse_status_reads_the_new_keys_and_refuses_odd_values() -> None:
    status = parse_status("heartbeat=sent\ninstalled=yes\ntimer=active\nsilence_s=1200\ndry_run=yes\n")
    assert status.heartbeat == "sent" and status.armed and status.max_silence_s == 1200 and status.dry_run
    odd = parse_status("heartbeat=maybe\nsilence_s=-5\ndry_run=1\nlast=-- No entries --\n")
    assert odd.heartbeat is None and odd.max_silence_s is None and odd.dry_run is None and odd.last_decision is None


def test_view_text_for_each_state() -> None:
    now = T0 + timedelta(seconds=90)
    assert GuardView(checked_at=T0).text(now) == "guard: state unknown"
    view = GuardView(T0, installed=True, timer_state="active", silence_limit_s=1800, last_sent_at=T0)
    assert view.text(now) == "guard armed (30m) · heartbeat 1m 30s ago"
    dry = GuardView(T0, installed=True, timer_state="inactive", dry_run=True, last_sent_at=T0)
    assert dry.text(now) == "guard installed, timer inactive (dry run) · heartbeat 1m 30s ago" and not dry.armed
    failing = GuardView(T0, error="gpu: connection lost: \x1b[2Jreset")
    assert failing.failing and failing.text(now) == "guard: heartbeat failed: gpu: connection lost: reset"


def test_the_starter_configs_guard_block_validates() -> None:
    from aiconsole.config import STARTER_CONFIG

    block = STARTER_CONFIG.split("# [guard]\n")[1].split("\n\n")[0]
    text = "[guard]\n" + "\n".join(line.removeprefix("# ") for line in block.splitlines())
    guard = settings_from_toml_text(text, "starter").guard
    assert guard == GuardConfig() and guard.silence_minutes == 20 and guard.heartbeat_s == 60
