"""One persistent SSH connection per VM, kept up for telemetry, health checks and port forwards.

`SshPool` opens a VM's connection on first use and keeps it: a supervisor task per VM
reconnects after a loss with exponential backoff and jitter, and re-opens the VM's port
forwards. At most `max_handshakes` handshakes run at once across the fleet.

Safety: host keys are always checked against known_hosts (an unknown or changed key is
refused with its SHA256 fingerprint and how to accept it, and not retried until
`retry(vm)`); agent forwarding is off; keepalives are on; remote output is read as bytes
and decoded leniently (see ssh_exec.py).

Errors (all carry a sanitised one-line message; nothing else escapes these calls):
- `connection`, `run`, `forward`, iterating `stream_lines`: `SshUnavailable` (no connection),
  its subclass `HostKeyRefused`; `run`: also `SshCommandTimeout`; `run`, `forward` and
  `stream_lines`: `SshError` when the server refuses the channel or the local listener.
- `status`, `retry`, `close`, `aclose`: never raise.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import asyncssh

from aiconsole.services.clock import utc_now
from aiconsole.services.ssh_errors import HostKeyRefused, SshCommandTimeout, SshError, SshUnavailable
from aiconsole.services.ssh_exec import RemoteLines, RemoteResult, describe, open_session, run_command
from aiconsole.services.ssh_forward import Forwards
from aiconsole.services.ssh_hostkey import RecordingClient, load_known_hosts
from aiconsole.services.ssh_target import SshTarget, SshTargetError

PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
"""AES-GCM first: in asyncssh (Python) chacha20-poly1305 builds a new cipher context for
every packet, and with 100 VMs streaming telemetry that alone was ~0.75 % of a core
(docs/performance.md). Both are strong and in every OpenSSH since 6.5. A `Ciphers` line
in the user's ssh config replaces this list."""

__all__ = [
    "HostKeyRefused", "RemoteLines", "RemoteResult", "SshCommandTimeout", "SshError", "SshPool",
    "SshState", "SshStatus", "SshTarget", "SshTargetError", "SshUnavailable",
]

log = logging.getLogger(__name__)

SshState = Literal["idle", "connecting", "up", "down", "refused"]
Sleep = Callable[[float], Any]
"""An awaitable-returning sleep, e.g. `asyncio.sleep`; tests pass a fake that returns at once."""

_CLOSE_WAIT_S = 2.0




@dataclass(frozen=True)
class SshStatus:
    state: SshState
    since: datetime | None = None
    """When the state began; None for a VM never connected."""
    error: str = ""
    """Why it is down or refused (sanitised, one line); while connecting, the last such reason."""
    attempts: int = 0
    """Failed connection attempts since it was last up."""
    next_retry_at: datetime | None = None
    """When the next attempt starts, while down."""
    fingerprint: str = ""
    """SHA256 fingerprint of the refused host key, while refused."""


@dataclass(eq=False)
class _Slot:
    """Mutable, private to the pool: one VM's connection and its supervisor."""

    vm: str
    target: SshTarget
    status: SshStatus
    conn: asyncssh.SSHClientConnection | None = None
    task: asyncio.Task[None] | None = None
    refusal: HostKeyRefused | None = None
    failures: int = 0
    closed: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when an attempt settles (up, down or refused); replaced by a fresh one for the next."""
    retry: asyncio.Event = field(default_factory=asyncio.Event)
    forwards: Forwards = field(default_factory=Forwards)


class SshPool:
    """One SSH connection per VM name, opened on demand and kept until `close(vm)`."""

    def __init__(
        self,
        *,
        known_hosts: str | Path | None = None,
        config_file: str | Path | None = None,
        client_keys: list[str | Path] | None = None,
        use_agent: bool = True,
        max_handshakes: int = 8,
        keepalive_s: float = 15.0,
        keepalive_count_max: int = 3,
        connect_timeout_s: float = 15.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], datetime] = utc_now,
        random: Callable[[], float] = _random.random,
        on_change: Callable[[str, SshStatus], None] | None = None,
    ) -> None:
        """`known_hosts`/`config_file` None: ~/.ssh/known_hosts and ~/.ssh/config.
        `client_keys` None: the agent and the identity files, as ssh does; a list: these
        keys (tests), plus the agent unless `use_agent` is False."""
        self._known_hosts = Path(known_hosts or "~/.ssh/known_hosts").expanduser()
        self._config_file = Path(config_file or "~/.ssh/config").expanduser()
        self._client_keys = None if client_keys is None else [str(key) for key in client_keys]
        self._use_agent = use_agent
        self._handshakes = asyncio.Semaphore(max_handshakes)
        self._keepalive_s = keepalive_s
        self._keepalive_count_max = keepalive_count_max
        self._connect_timeout_s = connect_timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._on_change = on_change
        self._slots: dict[str, _Slot] = {}

    # --- the connection --------------------------------------------------------------------

    async def connection(
        self, vm: str, target: SshTarget | str, *, wait: bool = True
    ) -> asyncssh.SSHClientConnection:
        """The VM's open connection. If it is not up: with `wait`, the outcome of the next
        attempt (paced by the backoff; while refused, the attempt after `retry(vm)`);
        without, `SshUnavailable`/`HostKeyRefused` at once. A `str` target is parsed."""
        slot = await self._slot(vm, _as_target(target))
        if not _usable(slot):
            if wait:
                await slot.settled.wait()
            if slot.closed:
                raise SshUnavailable(f"{vm}: the SSH connection was closed")
        if _usable(slot):
            assert slot.conn is not None
            return slot.conn
        if slot.refusal is not None:
            raise slot.refusal.copy()
        raise SshUnavailable(f"{vm}: {slot.status.error or 'not connected yet'}")

    def status(self, vm: str) -> SshStatus:
        slot = self._slots.get(vm)
        return slot.status if slot is not None else SshStatus("idle")

    def retry(self, vm: str) -> None:
        """Try again now: after a refused host key (once it is accepted) or during a backoff."""
        slot = self._slots.get(vm)
        if slot is not None:
            slot.retry.set()

    def connect_options(self, target: SshTarget) -> dict[str, Any]:
        """The keyword arguments for `asyncssh.connect` (host key checks are added per attempt)."""
        options: dict[str, Any] = {
            "agent_forwarding": False,
            "keepalive_interval": self._keepalive_s,
            "keepalive_count_max": self._keepalive_count_max,
            "connect_timeout": self._connect_timeout_s,
            # Our own known_hosts, always: a config's `UserKnownHostsFile none` must not turn checks off.
            "config": [str(self._config_file)] if self._config_file.is_file() else None,
        }
        if target.port is not None:
            options["port"] = target.port
        if target.user is not None:
            options["username"] = target.user
        if self._client_keys is not None:
            options["client_keys"] = self._client_keys
        if not self._use_agent:
            options["agent_path"] = None
        if not self._config_sets_ciphers():
            options["encryption_algs"] = PREFERRED_CIPHERS
        return options

    def _config_sets_ciphers(self) -> bool:
        """Whether the ssh config names its own `Ciphers` (anywhere): then its choice stands."""
        try:
            text = self._config_file.read_text(errors="replace")
        except OSError:
            return False
        return any(line.strip().lower().startswith("ciphers") for line in text.splitlines())

    # --- commands and forwards --------------------------------------------------------------

    async def run(
        self, vm: str, target: SshTarget | str, command: str, timeout: float | None = 30.0,
        *, wait: bool = True,
    ) -> RemoteResult:
        """Run `command` to completion on the VM's connection; output decoded leniently."""
        conn = await self.connection(vm, target, wait=wait)
        return await run_command(conn, command, timeout)

    def stream_lines(
        self, vm: str, target: SshTarget | str, command: str, *, max_line: int = 65536
    ) -> RemoteLines:
        """A long-running command's stdout lines, as they come; see `RemoteLines`.

        Use `async with pool.stream_lines(...) as lines: async for line in lines:` so that
        leaving the loop closes the channel at once, which ends the remote command."""

        async def start(factory: Callable[[], asyncssh.SSHClientSession[bytes]]) -> asyncssh.SSHClientChannel[bytes]:
            return await open_session(await self.connection(vm, target), command, factory)

        return RemoteLines(start, max_line=max_line)

    async def forward(
        self, vm: str, target: SshTarget | str, remote_host: str, remote_port: int,
        *, wait: bool = True,
    ) -> tuple[str, int]:
        """A local `(127.0.0.1, port)` forwarded to `remote_host:remote_port` as the VM sees it.

        Opened once and kept; re-opened after a reconnect, on the same port when it is still
        free (it may change: ask again rather than keeping the port)."""
        conn = await self.connection(vm, target, wait=wait)
        slot = self._slots[vm]
        return await slot.forwards.open(conn, remote_host, remote_port)

    # --- closing -----------------------------------------------------------------------------

    async def close(self, vm: str) -> None:
        """Close the VM's connection and forwards and stop reconnecting; never raises."""
        slot = self._slots.pop(vm, None)
        if slot is None:
            return
        slot.closed = True
        if slot.task is not None:
            slot.task.cancel()
            with suppress(BaseException):
                await slot.task
        await slot.forwards.close()
        await _close_conn(slot.conn)
        slot.conn = None
        self._set(slot, SshStatus("idle", since=self._clock()))
        slot.settled.set()

    async def aclose(self) -> None:
        for vm in list(self._slots):
            await self.close(vm)

    async def __aenter__(self) -> SshPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- the supervisor ------------------------------------------------------------------------

    async def _slot(self, vm: str, target: SshTarget) -> _Slot:
        slot = self._slots.get(vm)
        if slot is not None and slot.target != target:  # the config changed under us
            await self.close(vm)
            slot = None
        if slot is None:
            slot = _Slot(vm, target, SshStatus("connecting", since=self._clock()))
            self._slots[vm] = slot
            slot.task = asyncio.create_task(self._supervise(slot), name=f"ssh-{vm}")
        return slot

    async def _supervise(self, slot: _Slot) -> None:
        while not slot.closed:
            try:
                await self._attempt(slot)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end reconnecting for good
                log.exception("SSH supervisor for %s failed; retrying", slot.vm)
                self._settle(slot, replace(slot.status, state="down", error="internal error"))
                await self._sleep(self._backoff(slot.failures))

    async def _attempt(self, slot: _Slot) -> None:
        if slot.status.state == "refused":
            await slot.retry.wait()
        slot.retry.clear()
        slot.refusal = None
        self._set(slot, replace(slot.status, state="connecting", since=self._clock(), next_retry_at=None))
        try:
            conn, client = await self._open(slot.target)
        except HostKeyRefused as exc:
            slot.refusal = exc
            self._settle(slot, SshStatus("refused", self._clock(), exc.message, slot.failures + 1,
                                         fingerprint=exc.fingerprint))
            return
        except SshUnavailable as exc:
            slot.failures += 1
            await self._back_off(slot, exc.message)
            return
        slot.failures, slot.conn = 0, conn
        await slot.forwards.reopen(conn)
        slot.retry.clear()  # a retry asked for while connecting is answered
        self._settle(slot, SshStatus("up", self._clock()))
        await conn.wait_closed()
        slot.conn = None
        await slot.forwards.lost()
        # Not an attempt's outcome: callers waiting on the connection wait for the reconnect.
        await self._back_off(slot, f"connection lost: {client.loss_reason()}", settle=False)

    async def _back_off(self, slot: _Slot, error: str, *, settle: bool = True) -> None:
        delay = self._backoff(slot.failures)
        retry_at = self._clock() + timedelta(seconds=delay)
        status = SshStatus("down", self._clock(), error, slot.failures, retry_at)
        if settle:
            self._settle(slot, status)
        else:
            self._set(slot, status)
        sleeping = asyncio.ensure_future(self._sleep(delay))
        retrying = asyncio.ensure_future(slot.retry.wait())
        try:
            await asyncio.wait((sleeping, retrying), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            retrying.cancel()

    def _backoff(self, failures: int) -> float:
        # Jitter spreads a fleet's reconnects after a shared outage (a jump host, a router).
        delay = self._backoff_base_s * 2 ** min(failures, 30) * (0.5 + self._random())
        return min(self._backoff_max_s, delay)

    async def _open(self, target: SshTarget) -> tuple[asyncssh.SSHClientConnection, RecordingClient]:
        known_hosts = load_known_hosts(self._known_hosts)
        client = RecordingClient(known_hosts, self._known_hosts, target)
        options = self.connect_options(target)
        options |= {"known_hosts": known_hosts, "client_factory": lambda: client}
        async with self._handshakes:
            try:
                return await asyncssh.connect(target.host, **options), client
            except asyncssh.HostKeyNotVerifiable as exc:
                raise client.refusal(exc) from None
            except (OSError, asyncssh.Error, TimeoutError, ValueError) as exc:
                raise SshUnavailable(describe(exc)) from None
            except Exception as exc:  # asyncssh or a config we did not foresee: still only a failed attempt
                log.exception("unexpected error connecting to %s", target)
                raise SshUnavailable(describe(exc)) from None

    def _set(self, slot: _Slot, status: SshStatus) -> None:
        slot.status = status
        if self._on_change is not None:
            try:
                self._on_change(slot.vm, status)
            except Exception:
                log.exception("SSH status listener failed")

    def _settle(self, slot: _Slot, status: SshStatus) -> None:
        self._set(slot, status)
        settled, slot.settled = slot.settled, asyncio.Event()
        settled.set()


def _usable(slot: _Slot) -> bool:
    return slot.status.state == "up" and slot.conn is not None and not slot.conn.is_closed()


def _as_target(target: SshTarget | str) -> SshTarget:
    if isinstance(target, SshTarget):
        return target
    try:
        return SshTarget.parse(target)
    except SshTargetError as exc:
        raise SshUnavailable(str(exc)) from None


async def _close_conn(conn: asyncssh.SSHClientConnection | None) -> None:
    if conn is None:
        return
    with suppress(Exception):
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), _CLOSE_WAIT_S)
