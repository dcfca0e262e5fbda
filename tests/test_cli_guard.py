"""`aiconsole vm guard install|status|remove NAME` against a fake VM over real SSH (issue 7).

The fake VM (tests/guard_vm.py) is served from a thread, since `main()` runs its own event
loop; the CLI's pool reaches it with the config's [ssh] known_hosts and an OpenSSH client
config naming its key, as an operator's would. Commands that write to the VM run through
`guard_command` with the guard's paths moved into a temp dir; through `main()` run only the
read-only status and installs that sudo refuses (the fake VM refuses anything else that
names the real paths, so a slip cannot touch this machine).
"""

from __future__ import annotations

import io
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.threaded import ThreadedFake

from aiconsole.cli import main
from aiconsole.commands_guard import GuardRequest, guard_command
from aiconsole.domain.guard import TIMER_NAME
from aiconsole.runtime import RuntimeRequest
from guard_vm import REFUSED_EXIT, FakeVm, ssh_client_config

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


class Fleet:
    """A config with three VMs: `gpu` (always on) and `cold` (stopped) on the fake VM, `nossh`."""

    def __init__(self, tmp_path: Path, vm: FakeVm, *, port: int | None = None) -> None:
        self.vm = vm
        self.config = tmp_path / "config.toml"
        target = f"aiconsole@127.0.0.1:{port or vm.server.port}"
        self.config.write_text(
            f'[ssh]\nknown_hosts = "{vm.server.known_hosts_path}"\n'
            f'config_file = "{ssh_client_config(vm, tmp_path)}"\nconnect_timeout_s = 5\n'
            "[guard]\nsilence_minutes = 25\nheartbeat_s = 30\n"
            f'[[vm]]\nname = "gpu"\nprovider = "static"\nssh = "{target}"\n'
            f'[[vm]]\nname = "cold"\nprovider = "command"\nhourly_usd = 0.5\nssh = "{target}"\n'
            '[vm.command]\nstatus = "echo stopped"\n'
            '[[vm]]\nname = "nossh"\nprovider = "static"\n'
        )
        self.environ = {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path / "home")}

    def main(self, capsys, *argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, "--config", str(self.config)], environ=self.environ)
        out, err = capsys.readouterr()
        return code, out, err

    def guard(self, action: str, name: str = "gpu", *, as_json: bool = False) -> tuple[int, str, str]:
        """`vm guard ACTION NAME` with the guard's paths in the fake VM's temp dir."""
        runtime = RuntimeRequest.for_user(self.config, self.environ).load()
        out, err = io.StringIO(), io.StringIO()
        try:
            code = guard_command(runtime, GuardRequest(action, name, as_json), out=out, err=err, layout=self.vm.layout)
        finally:
            runtime.finish()
        return code, out.getvalue(), err.getvalue()

    def events(self, capsys) -> list[dict]:
        code, out, err = self.main(capsys, "events", "--json")
        assert code == 0, err
        return [event for event in json.loads(out) if event["kind"] == "guard"]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with ThreadedFake(FakeVm(tmp_path / "vm")) as vm:
        yield Fleet(tmp_path, vm)


def test_install_status_remove_round_trip_is_journaled(fleet: Fleet, capsys) -> None:
    code, out, err = fleet.guard("install")
    assert code == 0, err
    assert err.startswith("installing the guard on gpu (aiconsole@127.0.0.1:")
    assert out.splitlines()[0] == "gpu: guard armed"
    assert "  power-off after: 25m 00s without a heartbeat" in out
    assert "gpu powers off after 25 min without a heartbeat, GPU at most 10% busy, no session." in out
    assert "(every 30s)" in out
    assert f"enable --now {TIMER_NAME}" in fleet.vm.systemctl_calls
    assert Path(fleet.vm.layout.script_path).exists()

    fleet.vm.journal("keep: no heartbeat yet, installed 42s ago\n")
    code, out, err = fleet.guard("status")
    assert code == 0, err
    assert out.splitlines() == [
        "gpu: guard armed",
        "  power-off after: 25m 00s without a heartbeat, if the GPU is idle and nobody is logged in",
        "  last heartbeat:  never",
        "  last decision:   keep: no heartbeat yet, installed 42s ago",
    ]
    code, out, err = fleet.guard("status", as_json=True)
    assert code == 0, err
    assert json.loads(out) == {
        "vm": "gpu", "installed": True, "armed": True, "timer": "active", "max_silence_s": 1500,
        "dry_run": False, "heartbeat_age_s": None, "last_decision": "keep: no heartbeat yet, installed 42s ago",
    }  # fmt: skip

    code, out, err = fleet.guard("remove")
    assert code == 0, err
    assert out == "guard removed from gpu.\n"
    assert not Path(fleet.vm.layout.script_path).exists() and not fleet.vm.timer_active

    events = fleet.events(capsys)
    assert [(e["vm"], e["actor"], e["reason"]) for e in events] == [
        ("gpu", "operator", "guard installed over SSH: powers off after 25 min without a heartbeat, "
                            + "GPU at most 10% busy, no session"),
        ("gpu", "operator", "guard removed over SSH"),
    ]  # fmt: skip


def test_status_through_main_on_a_vm_without_the_guard(fleet: Fleet, capsys) -> None:
    fleet.vm.allow_real_paths = True  # status only reads: the fake VM may look at the real paths
    code, out, err = fleet.main(capsys, "vm", "guard", "status", "gpu")
    assert code == 0, err
    assert out == "gpu: guard not installed\n"
    code, out, err = fleet.main(capsys, "vm", "guard", "status", "gpu", "--json")
    assert code == 0 and json.loads(out)["installed"] is False and json.loads(out)["armed"] is False


def test_install_that_sudo_refuses_exits_1_and_is_journaled(fleet: Fleet, capsys) -> None:
    fleet.vm.refuse_sudo()
    fleet.vm.allow_real_paths = True  # nothing runs past the refusing sudo
    code, out, err = fleet.main(capsys, "vm", "guard", "install", "gpu")
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "aiconsole: installing the guard on gpu needs root, and sudo refused: sudo: a password is required: "
        "give the SSH user passwordless sudo (NOPASSWD) or connect as root"
    )
    assert fleet.vm.systemctl_calls == []
    [event] = fleet.events(capsys)
    assert event["reason"].startswith("guard install failed: installing the guard on gpu needs root")


def test_the_fake_vm_refuses_writes_to_the_real_paths(fleet: Fleet, capsys) -> None:
    """The safety net itself: an install through main() names /usr/local/lib/…, /etc/systemd/…"""
    code, _out, err = fleet.main(capsys, "vm", "guard", "install", "gpu")
    assert code == 1 and f"(exit {REFUSED_EXIT}): fake VM: refusing" in err


def test_ssh_down_exits_1_with_the_reason(tmp_path: Path, capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    with ThreadedFake(FakeVm(tmp_path / "vm")) as vm:
        fleet = Fleet(tmp_path, vm, port=port)
        code, out, err = fleet.main(capsys, "vm", "guard", "status", "gpu")
    assert code == 1 and out == ""
    assert "connection refused" in err and err.startswith("aiconsole: gpu: ")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["install", "nowhere"], 2, "aiconsole: no VM named 'nowhere' in the config"),
        (["status", "nossh"], 2, "aiconsole: nossh has no ssh target in the config"),
        (["install", "gpu", "--read-only"], 2, "aiconsole: read-only: refusing to install the guard on gpu"),
        (["remove", "gpu", "--read-only"], 2, "aiconsole: read-only: refusing to remove the guard from gpu"),
        (["install", "cold"], 1, "aiconsole: cold is stopped: start it first (aiconsole vm start cold)"),
    ],
)
def test_usage_problems_and_a_stopped_vm(fleet: Fleet, capsys, argv, code, message) -> None:
    got, out, err = fleet.main(capsys, "vm", "guard", *argv)
    assert got == code and out == "" and err.startswith(message)
    assert fleet.vm.server.commands == []  # nothing reached the VM


def test_a_timer_that_does_not_start_fails_the_install(fleet: Fleet) -> None:
    fleet.vm.timer_says("failed\n")
    code, out, err = fleet.guard("install")
    assert code == 1
    assert out.splitlines()[0] == "gpu: guard installed, timer failed"
    assert err.splitlines()[-1] == "aiconsole: the guard's timer on gpu is failed, not active"


def test_hostile_vm_output_is_printed_inert(fleet: Fleet, capsys) -> None:
    fleet.vm.allow_real_paths = True  # status only
    fleet.vm.timer_says("\x1b]0;pwned\x07\x1b[31mactive\x1b[0m\n")
    fleet.vm.journal("keep: \x1b]52;c;cm0gLXJmIC8=\x07GPU\x9b2J busy [bold red]x[/]\r\n")
    code, out, err = fleet.main(capsys, "vm", "guard", "status", "gpu", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["timer"] == "active" and status["last_decision"] == "keep: GPU busy [bold red]x[/]"
    fleet.vm.refuse_sudo()
    (fleet.vm.bin / "sudo").write_text("#!/bin/sh\nprintf 'sudo: \\033]0;pwned\\007no\\033[2J\\r' >&2\nexit 1\n")
    code, out, err = fleet.main(capsys, "vm", "guard", "status", "gpu")
    assert code == 1 and not CONTROL.search(err.rstrip("\n")) and "pwned" not in err
