"""The on-VM dead-man's switch of one VM, driven over the pool's SSH connection to it.

`GuardRemote` installs, reads, removes and beats the guard (`domain/guard.py` writes every
command line; this module only runs them and reads their answers):

- install: `id -un` as the SSH user (the owner of the guard's state directory, so heartbeats
  need no sudo), then root's install commands in one `sudo -n sh -c` exec, then its status;
- status and remove: one root exec each (remove reads the status after);
- heartbeat: one exec as the SSH user that touches the heartbeat and reports the guard's
  state (`heartbeat_status_command`): nothing else runs per beat.

Root goes through `sudo -n`, which fails at once rather than waiting for a password nobody
can type into an exec channel; a refusal becomes a `GuardError` that says what to change.
Every failure is a `GuardError` with a sanitised one-line message; nothing else escapes.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from aiconsole.domain.guard import (
    GuardLayout,
    GuardSettings,
    GuardStatus,
    heartbeat_status_command,
    install_commands,
    parse_status,
    remove_commands,
    render_service,
    render_timer,
    root_command_line,
    status_command,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.guard_files import SCRIPT_FILE, SERVICE_FILE, TIMER_FILE, read_guard_file
from aiconsole.services.ssh_errors import SshError

if TYPE_CHECKING:
    from aiconsole.services.ssh import RemoteResult, SshPool

__all__ = ["GuardError", "GuardRemote", "build_guard_remote"]

_SUDO_REFUSED = re.compile(
    r"sudo: .*(password is required|a terminal is required|not in the sudoers|not allowed|may not run)"
    r"|sudo: (command )?not found|sudo: not found",
    re.IGNORECASE,
)


class GuardError(Exception):
    """The guard could not be installed, read, removed or beaten; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(sanitize_line(message, 500))

    @property
    def message(self) -> str:
        return str(self.args[0])


class GuardRemote:
    """Drives the guard on VMs reached through `pool`. `settings` are what an install writes;
    `layout` where the guard lives (tests move it into a temp dir)."""

    def __init__(
        self,
        pool: SshPool,
        settings: GuardSettings,
        *,
        layout: GuardLayout | None = None,
        timeout_s: float = 120.0,
        heartbeat_timeout_s: float = 20.0,
    ) -> None:
        layout = layout or GuardLayout()
        if (layout.heartbeat_path, layout.installed_path) != (settings.heartbeat_path, settings.installed_path):
            raise ValueError("the guard's settings and layout name different state files")
        self._pool = pool
        self.settings = settings
        self.layout = layout
        self._timeout_s = timeout_s
        self._heartbeat_timeout_s = heartbeat_timeout_s

    # --- the actions ---------------------------------------------------------------------------

    async def install(self, vm: str, target: str) -> GuardStatus:
        """Install (or reinstall, with these settings) and start the timer; returns the status after."""
        owner = await self._ssh_user(vm, target)
        try:
            commands = install_commands(
                self.settings,
                read_guard_file(SCRIPT_FILE),
                render_service(self.settings, read_guard_file(SERVICE_FILE), self.layout.script_path),
                render_timer(read_guard_file(TIMER_FILE)),
                owner=owner,
                script_path=self.layout.script_path,
                unit_dir=self.layout.unit_dir,
            )
        except ValueError as error:
            raise GuardError(f"cannot install on {vm}: {error}") from None
        await self._as_root(vm, target, commands, "installing the guard")
        return await self.status(vm, target)

    async def status(self, vm: str, target: str) -> GuardStatus:
        """What the VM says of its guard (as root: the guard's journal may need it)."""
        command = status_command(self.settings, self.layout.script_path, self.layout.unit_dir)
        result = await self._as_root(vm, target, [command], "reading the guard's status")
        return parse_status(result.stdout)

    async def remove(self, vm: str, target: str) -> GuardStatus:
        """Stop and delete the guard (retryable: what is already gone is skipped); the status after."""
        commands = remove_commands(self.settings, self.layout.script_path, self.layout.unit_dir)
        await self._as_root(vm, target, commands, "removing the guard")
        return await self.status(vm, target)

    async def heartbeat(self, vm: str, target: str) -> GuardStatus:
        """Touch the VM's heartbeat (if it has a guard) and read the guard's state, in one exec
        without sudo. `GuardStatus.heartbeat` says "sent", "failed" or "none" (no guard)."""
        command = heartbeat_status_command(self.settings, self.layout.script_path, self.layout.unit_dir)
        result = await self._run(vm, target, command, self._heartbeat_timeout_s)
        if not result.ok:
            raise GuardError(f"heartbeat command failed{_exit_text(result)}{_stderr_text(result)}")
        return parse_status(result.stdout)

    # --- running ---------------------------------------------------------------------------------

    async def _ssh_user(self, vm: str, target: str) -> str:
        result = await self._run(vm, target, "id -un", self._timeout_s)
        user = result.stdout.strip()
        if not result.ok or not user:
            raise GuardError(f"cannot tell {vm}'s SSH user (id -un){_exit_text(result)}{_stderr_text(result)}")
        return user

    async def _as_root(self, vm: str, target: str, commands: list[str], doing: str) -> RemoteResult:
        result = await self._run(vm, target, root_command_line(commands), self._timeout_s)
        if result.ok:
            return result
        if _SUDO_REFUSED.search(result.stderr):
            raise GuardError(
                f"{doing} on {vm} needs root, and sudo refused{_stderr_text(result)}: give the SSH user "
                "passwordless sudo (NOPASSWD) or connect as root"
            )
        raise GuardError(f"{doing} on {vm} failed{_exit_text(result)}{_stderr_text(result)}")

    async def _run(self, vm: str, target: str, command: str, timeout_s: float) -> RemoteResult:
        status = self._pool.status(vm)
        if status.state == "refused":  # waiting would wait for the operator: say why now
            raise GuardError(status.error or f"{vm}: host key refused")
        try:
            async with asyncio.timeout(timeout_s):
                return await self._pool.run(vm, target, command, timeout=None)
        except SshError as error:
            raise GuardError(error.message) from None
        except TimeoutError:
            reason = self._pool.status(vm).error
            raise GuardError(f"{vm}: no answer within {timeout_s:g} s" + (f" ({reason})" if reason else "")) from None


def _exit_text(result: RemoteResult) -> str:
    return " (ended by a signal)" if result.exit_status is None else f" (exit {result.exit_status})"


def _stderr_text(result: RemoteResult) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return f": {sanitize_line(lines[-1], 300)}" if lines else ""


def build_guard_remote(settings, pool: SshPool, *, layout: GuardLayout | None = None, **options) -> GuardRemote:
    """A `GuardRemote` for the config's `[guard]` section (`settings` is a config.Settings)."""
    layout = layout or GuardLayout()
    return GuardRemote(pool, settings.guard.guard_settings(layout), layout=layout, **options)
