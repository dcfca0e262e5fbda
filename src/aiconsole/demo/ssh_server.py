"""An SSH server on loopback for `aiconsole --demo` and the tests (asyncssh, real wire protocol).

It makes its own ed25519 host key and one client key pair, and writes into `directory`:
`known_hosts` (its host key, as `[127.0.0.1]:PORT ssh-ed25519 ...`), `id_ed25519` and
`id_ed25519.pub`. Only that client key may log in (as any user). Exec requests go to
`handler(command, process)`, which writes bytes to `process.stdout` / `process.stderr` and
returns the exit status (None: 0); `direct-tcpip` channels (local port forwards) are allowed.
`Logins` is what a host's `who` answers (`BareHost`: a host with nothing but `who`).
Faults for tests and the demo: `drop_connections()`, `refuse_connections()` /
`accept_connections()`, and `handshake_delay` (seconds the server waits before auth).

    async with LoopbackSshServer(tmp_path, handler) as server:
        pool.connection("vm", server.target)
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncssh

# asyncssh is imported when a server first needs it (its keys, or listening), not with
# this module: `aiconsole --demo` builds its servers' config before the first panes paint,
# and importing asyncssh there cost ~0.2 s of start-up (docs/performance.md).

log = logging.getLogger(__name__)

ExecHandler = Callable[[str, "asyncssh.SSHServerProcess"], Awaitable[int | None]]


async def not_found(command: str, process: asyncssh.SSHServerProcess) -> int:
    process.stderr.write(f"sh: {command.split()[0] if command.split() else ''}: command not found\n".encode())
    return 127


def who_line(user: str, terminal: str, at: float, host: str = "") -> str:
    """One line as GNU `who` prints it in a UTF-8 locale (`at`: login time, epoch seconds, UTC)."""
    moment = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")
    return f"{user:<8} {terminal:<12} {moment}" + (f" ({host})" if host else "") + "\n"


@dataclass
class Logins:
    """What a demo host's `who` answers: its login sessions (utmp), as raw bytes.

    The console's own commands come in on exec channels without a pty and are not listed,
    as on a real host. Tests set `output` to anything (hostile bytes too), make `who` fail
    (`exit_status`, `stderr`) or hang (`delay_s`); `shown` says whether the sessions are
    open now (the demo's operator logs in and out)."""

    output: bytes = b""
    exit_status: int = 0
    stderr: bytes = b""
    delay_s: float = 0.0
    shown: Callable[[], bool] = lambda: True
    asked: int = 0
    """How many times `who` ran."""

    @classmethod
    def of(cls, *lines: str, **options: Any) -> Logins:
        return cls("".join(lines).encode(), **options)

    async def answer(self, process: asyncssh.SSHServerProcess) -> int:
        self.asked += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.shown():
            process.stdout.write(self.output)
        process.stderr.write(self.stderr)
        return self.exit_status


@dataclass
class BareHost:
    """A host without GPU tools: `who` answers from `logins`, anything else is not found."""

    logins: Logins = field(default_factory=Logins)

    async def __call__(self, command: str, process: asyncssh.SSHServerProcess) -> int:
        if command.split()[:1] == ["who"]:
            return await self.logins.answer(process)
        return await not_found(command, process)


class LoopbackSshServer:
    def __init__(
        self, directory: Path, handler: ExecHandler = not_found, *, host: str = "127.0.0.1",
        port: int = 0, username: str = "aiconsole",
    ) -> None:
        self.directory = Path(directory)
        self.handler = handler
        self.host, self._port, self.username = host, port, username
        self.handshake_delay = 0.0
        """Seconds each new connection waits before authentication (to test handshake limits)."""
        self.allow_forwarding = True
        self.commands: list[str] = []
        """Every command run, in order."""
        self.handshakes_now = 0
        self.handshakes_max = 0
        """The most handshakes seen in progress at once."""
        self.connections_made = 0
        self.running_commands = 0
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._bound: socket.socket | None = None

    def bind(self) -> LoopbackSshServer:
        """Reserve the port now, before any event loop runs, so a config can name it.

        The demo writes its config text before the servers start; `start()` then
        listens on this very socket (no window in which another process could take it).
        """
        if self._bound is None and not self._port:
            self._bound = socket.create_server((self.host, 0))
            self._port = self._bound.getsockname()[1]
        return self

    # --- where and who ------------------------------------------------------------------------

    @cached_property
    def host_key(self) -> asyncssh.SSHKey:
        import asyncssh

        return asyncssh.generate_private_key("ssh-ed25519")

    @cached_property
    def client_key(self) -> asyncssh.SSHKey:
        import asyncssh

        return asyncssh.generate_private_key("ssh-ed25519")

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("server not started")
        return self._port

    @property
    def target(self) -> str:
        """`user@127.0.0.1:PORT`, for `SshTarget.parse` or the config's `ssh` field."""
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def known_hosts_path(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def client_key_path(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key.export_public_key().decode().strip()}\n"

    @property
    def host_key_fingerprint(self) -> str:
        return self.host_key.get_fingerprint("sha256")

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self) -> LoopbackSshServer:
        await self.accept_connections()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.known_hosts_path.write_text(self.known_hosts_line)
        self.client_key.write_private_key(self.client_key_path)
        self.client_key_path.chmod(0o600)
        self.client_key.write_public_key(self.directory / "id_ed25519.pub")
        return self

    async def close(self) -> None:
        await self.refuse_connections()
        self.drop_connections()

    async def __aenter__(self) -> LoopbackSshServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- faults ----------------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Cut every open connection at once, as a network failure would; returns how many."""
        connections = list(self._connections)
        for conn in connections:
            conn.abort()
        return len(connections)

    async def refuse_connections(self) -> None:
        """Stop listening: new connections are refused; open ones stay."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    async def accept_connections(self) -> None:
        """Listen (again, on the same port once it has one)."""
        if self._acceptor is not None:
            return
        import asyncssh

        server_class = _server_class()
        where = {"sock": self._bound} if self._bound is not None else {"host": self.host, "port": self._port}
        self._bound = None  # a later re-listen (after refuse_connections) binds the port by number
        self._acceptor = await asyncssh.listen(
            **where, server_factory=lambda: server_class(self), reuse_address=True,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            ),
            process_factory=self._run, encoding=None, agent_forwarding=False, allow_scp=False,
        )
        self._port = self._acceptor.get_port()

    # --- serving -----------------------------------------------------------------------------------

    async def _run(self, process: asyncssh.SSHServerProcess) -> None:
        import asyncssh

        command = process.command or ""
        self.commands.append(command)
        self.running_commands += 1
        status = 1
        try:
            result = await self.handler(command, process)
            status = 0 if result is None else result
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            return  # the client closed the channel or the connection: as SIGPIPE ends a real command
        except Exception:  # a broken script answers like a failing command; the server goes on
            log.exception("loopback SSH handler failed on %r", command)
            with suppress(Exception):
                process.stderr.write(b"loopback handler failed\n")
        finally:
            self.running_commands -= 1
        with suppress(Exception):
            process.exit(status)

    def _handshake(self, delta: int) -> None:
        self.handshakes_now += delta
        self.handshakes_max = max(self.handshakes_max, self.handshakes_now)


@cache
def _server_class() -> type:
    """The asyncssh server callbacks, defined on first use (asyncssh is imported then)."""
    import asyncssh

    class _Server(asyncssh.SSHServer):
        def __init__(self, owner: LoopbackSshServer) -> None:
            self._owner = owner
            self._conn: asyncssh.SSHServerConnection | None = None
            self._in_handshake = False

        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            self._conn = conn
            self._owner._connections.add(conn)
            self._owner.connections_made += 1
            self._in_handshake = True
            self._owner._handshake(+1)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._conn is not None:
                self._owner._connections.discard(self._conn)
            self._end_handshake()

        async def begin_auth(self, username: str) -> bool:
            if self._owner.handshake_delay:
                await asyncio.sleep(self._owner.handshake_delay)
            return True

        def auth_completed(self) -> None:
            self._end_handshake()

        def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
            return self._owner.allow_forwarding

        def _end_handshake(self) -> None:
            if self._in_handshake:
                self._in_handshake = False
                self._owner._handshake(-1)

    return _Server
