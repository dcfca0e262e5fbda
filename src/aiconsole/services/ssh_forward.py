"""A VM's local port forwards: opened once on its connection, re-opened after a reconnect.

Each forward listens on 127.0.0.1. After a reconnect it listens again on the port it had, so
a URL handed out earlier keeps working; if that port was taken meanwhile, it takes a new one
(callers ask `SshPool.forward` / `Endpoints.url` each time rather than keeping the port).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass

import asyncssh

from aiconsole.services.ssh_errors import SshError, SshUnavailable
from aiconsole.services.ssh_exec import describe

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass(eq=False)
class _Forward:
    remote_host: str
    remote_port: int
    port: int = 0
    """The local port it listens (or last listened) on; 0 before the first listen."""
    listener: asyncssh.SSHListener | None = None
    conn: asyncssh.SSHClientConnection | None = None


class Forwards:
    """The forwards of one VM; `SshPool` drives it from the VM's supervisor and callers."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, int], _Forward] = {}
        self._lock = asyncio.Lock()

    async def open(
        self, conn: asyncssh.SSHClientConnection, remote_host: str, remote_port: int
    ) -> tuple[str, int]:
        """Listen (once per connection); raises SshError, or SshUnavailable if the connection died."""
        key = (remote_host, remote_port)
        forward = self._items.setdefault(key, _Forward(remote_host, remote_port))
        async with self._lock:
            if forward.listener is None or forward.conn is not conn:
                await _listen(conn, forward)
        return LOOPBACK, forward.port

    async def reopen(self, conn: asyncssh.SSHClientConnection) -> None:
        """After a reconnect: listen again for every forward asked for before; never raises."""
        async with self._lock:
            for forward in self._items.values():
                try:
                    await _listen(conn, forward)
                except SshError as exc:
                    log.warning(
                        "forward to %s:%d not re-opened: %s", forward.remote_host, forward.remote_port, exc
                    )

    async def lost(self) -> None:
        """The connection is gone: stop listening, keep the ports to ask for again."""
        async with self._lock:
            for forward in self._items.values():
                await _stop(forward)

    async def close(self) -> None:
        await self.lost()
        self._items.clear()


async def _listen(conn: asyncssh.SSHClientConnection, forward: _Forward) -> None:
    await _stop(forward)
    last: OSError | None = None
    for port in dict.fromkeys((forward.port, 0)):  # the old port first, then any free one
        try:
            listener = await conn.forward_local_port(LOOPBACK, port, forward.remote_host, forward.remote_port)
        except OSError as exc:
            last = exc
            continue
        except asyncssh.Error as exc:
            raise SshUnavailable(f"connection lost while opening a port forward: {describe(exc)}") from None
        forward.listener, forward.conn, forward.port = listener, conn, listener.get_port()
        return
    destination = f"{forward.remote_host}:{forward.remote_port}"
    reason = describe(last) if last else "no port"
    raise SshError(f"cannot listen on {LOOPBACK} for a forward to {destination}: {reason}")


async def _stop(forward: _Forward) -> None:
    listener, forward.listener, forward.conn = forward.listener, None, None
    if listener is not None:
        with suppress(Exception):
            listener.close()
            await asyncio.wait_for(listener.wait_closed(), 2.0)
