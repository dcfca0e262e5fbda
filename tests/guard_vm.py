"""A fake VM for the guard's tests: the loopback SSH server runs each exec in a real `sh`.

The real install/status/remove/heartbeat command lines run unchanged; only where the guard
lives is moved into a temp dir (`GuardLayout.under`). `sudo`, `systemctl` and `journalctl` are
small fakes first on PATH: sudo drops `-n` and execs (or refuses, like a sudo that wants a
password), systemctl records its arguments and keeps the timer's state in a file, journalctl
prints the line the test gave it; nvidia-smi shows one idle GPU and who no session, for
running the installed script itself.

Safety net: the tests run as whatever user runs pytest (root in CI containers), so a command
naming the real guard paths (/etc/systemd/system, /usr/local/lib/aiconsole-guard,
/var/lib/aiconsole-guard) is refused unless a test allows it for a read-only command.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Self

import asyncssh

from aiconsole.demo.ssh_server import LoopbackSshServer
from aiconsole.domain.guard import GuardLayout

REAL_PATHS = re.compile(r"(?<![A-Za-z0-9_./-])/(etc/systemd|usr/local/lib/aiconsole-guard|var/lib/aiconsole-guard)")
REFUSED_EXIT = 97

_SUDO = """#!/bin/sh
echo "$1 $2 $3" >> "{root}/sudo.calls"
if [ -e "{root}/sudo.refuse" ]; then
    echo "sudo: a password is required" >&2
    exit 1
fi
[ "$1" = -n ] && shift
exec "$@"
"""

_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{root}/systemctl.calls"
case "$1" in
    is-active)
        if [ -e "{root}/systemctl.is-active" ]; then cat "{root}/systemctl.is-active"; exit 0; fi
        if [ -e "{root}/timer.active" ]; then echo active; exit 0; fi
        echo inactive
        exit 3 ;;
    enable)
        if [ -e "{root}/systemctl.fail" ]; then echo "Failed to enable unit: Access denied" >&2; exit 1; fi
        [ "$2" = --now ] && touch "{root}/timer.active" ;;
    disable)
        [ "$2" = --now ] && rm -f "{root}/timer.active" ;;
esac
exit 0
"""

_JOURNALCTL = """#!/bin/sh
if [ -e "{root}/journal" ]; then cat "{root}/journal"; else echo "-- No entries --"; fi
"""


class FakeVm:
    """One VM: its guard under `root/vm`, its fakes under `root/bin`, its SSH server."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        fakes = (
            ("sudo", _SUDO), ("systemctl", _SYSTEMCTL), ("journalctl", _JOURNALCTL),
            ("nvidia-smi", "#!/bin/sh\necho 0\n"), ("who", "#!/bin/sh\nexit 0\n"),
        )  # fmt: skip
        for name, text in fakes:
            path = self.bin / name
            path.write_text(text.format(root=root))
            path.chmod(0o755)
        self.layout = GuardLayout.under(str(root / "vm"))
        Path(self.layout.unit_dir).mkdir(parents=True)  # systemd's, on any VM (install never creates it)
        self.allow_real_paths = False
        """Only for read-only commands (a status), or while sudo refuses."""
        self.server = LoopbackSshServer(root / "ssh", self.handler)

    async def handler(self, command: str, process: asyncssh.SSHServerProcess) -> int:
        if not self.allow_real_paths and REAL_PATHS.search(command):
            process.stderr.write(b"fake VM: refusing a command on the real system's guard paths\n")
            return REFUSED_EXIT
        env = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.root), "LC_ALL": "C"}
        child = await asyncio.create_subprocess_exec(
            "sh", "-c", command, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await child.communicate()
        process.stdout.write(out)
        process.stderr.write(err)
        return child.returncode or 0

    # --- the VM's switches and records ---------------------------------------------------------

    def refuse_sudo(self, refuse: bool = True) -> None:
        flag = self.root / "sudo.refuse"
        flag.touch() if refuse else flag.unlink(missing_ok=True)

    def fail_systemctl_enable(self) -> None:
        (self.root / "systemctl.fail").touch()

    def timer_says(self, text: str) -> None:
        """What `systemctl is-active` prints from now on (hostile output tests)."""
        (self.root / "systemctl.is-active").write_text(text)

    def journal(self, line: str) -> None:
        (self.root / "journal").write_text(line)

    @property
    def systemctl_calls(self) -> list[str]:
        return _lines(self.root / "systemctl.calls")

    @property
    def sudo_calls(self) -> list[str]:
        return _lines(self.root / "sudo.calls")

    @property
    def timer_active(self) -> bool:
        return (self.root / "timer.active").exists()

    async def start(self) -> FakeVm:
        await self.server.start()
        return self

    async def close(self) -> None:
        await self.server.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def ssh_client_config(vm: FakeVm, directory: Path) -> Path:
    """An OpenSSH client config naming the fake VM's client key (the CLI's pool reads it)."""
    path = directory / "ssh_config"
    path.write_text(f"Host 127.0.0.1\n    IdentityFile {vm.server.client_key_path}\n    IdentitiesOnly yes\n")
    return path
