"""Running commands on an open SSH connection: one-shot (`run_command`) and streamed (`RemoteLines`).

Remote output is data, not text we trust: it is read as bytes and decoded here with
`errors="replace"` (an incremental decoder, so a character split across two reads survives),
so one invalid byte can never raise inside asyncssh and tear the connection down. Nothing is
sanitised here: the parsers and the screen own that; only our own error texts are sanitised.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

import asyncssh

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.ssh_errors import SshCommandTimeout, SshError, SshUnavailable

log = logging.getLogger(__name__)

_READ_SIZE = 65536
_STDERR_TAIL_CHARS = 4096
_EXIT_STATUS_WAIT_S = 2.0


@dataclass(frozen=True)
class RemoteResult:
    command: str
    exit_status: int | None
    """The command's exit status; None when it ended by a signal or without reporting one."""
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def describe(exc: BaseException) -> str:
    """One sanitised line saying what went wrong, for a status or an error message."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncssh.PermissionDenied):
        return "authentication failed: no key from the agent or identity files was accepted"
    text = str(exc).strip()
    if isinstance(exc, asyncssh.DisconnectError):
        text = getattr(exc, "reason", "") or text
    return sanitize_line(text or type(exc).__name__)


async def open_process(conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHClientProcess:
    """Start `command` with bytes I/O and no stdin; raises SshUnavailable or SshError."""
    try:
        return await conn.create_process(command, encoding=None, stdin=asyncssh.DEVNULL)
    except asyncssh.ChannelOpenError as exc:
        raise SshError(f"the server refused to run a command: {describe(exc)}") from None
    except (asyncssh.Error, OSError) as exc:
        raise SshUnavailable(f"connection lost: {describe(exc)}") from None


async def run_command(
    conn: asyncssh.SSHClientConnection, command: str, timeout: float | None
) -> RemoteResult:
    """Run to completion; raises SshUnavailable, SshCommandTimeout or SshError (see `open_process`)."""
    process = await open_process(conn, command)
    try:
        completed = await process.wait(check=False, timeout=timeout)
    except asyncssh.TimeoutError:
        raise SshCommandTimeout(f"command did not finish within {timeout:g} s") from None
    except (asyncssh.Error, OSError) as exc:
        raise SshUnavailable(f"connection lost while running a command: {describe(exc)}") from None
    finally:
        process.close()
    status = completed.exit_status if completed.exit_signal is None else None
    return RemoteResult(command, status, decode(completed.stdout), decode(completed.stderr))


class RemoteLines:
    """A remote command's stdout as lines (without their `\\n`), as they arrive.

    An async iterator and an async context manager: the command starts on the first
    `__anext__` (which raises SshUnavailable/HostKeyRefused/SshError if it cannot start),
    the iteration ends when the command ends or the connection drops (`error` says which),
    and `aclose()` (or leaving the `async with`) closes the channel, which ends the remote
    command (OpenSSH's sshd hangs up its pipes; the next write gets SIGPIPE).
    """

    def __init__(
        self, start: Callable[[], Awaitable[asyncssh.SSHClientProcess]], *, max_line: int = 65536
    ) -> None:
        self._start = start
        self._max_line = max_line
        self._process: asyncssh.SSHClientProcess | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._lines: deque[str] = deque()
        self._done = False
        self._stderr: deque[str] = deque()
        self._stderr_task: asyncio.Task[None] | None = None
        self.exit_status: int | None = None
        """Set when the command ended and reported one."""
        self.error = ""
        """Why the stream ended early (connection lost), sanitised; empty otherwise."""

    @property
    def stderr_tail(self) -> str:
        """The end of what the command wrote to stderr (decoded leniently, not sanitised)."""
        return "".join(self._stderr)[-_STDERR_TAIL_CHARS:]

    def __aiter__(self) -> RemoteLines:
        return self

    async def __aenter__(self) -> RemoteLines:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __anext__(self) -> str:
        while not self._lines:
            if self._done:
                raise StopAsyncIteration
            await self._read_more()
        return self._lines.popleft()

    async def batches(self) -> AsyncIterator[list[str]]:
        """The same lines, a list at a time: every complete line that one read brought.

        For a consumer that handles many lines a second (the GPU feed: 800 for 100 VMs),
        one wakeup per read instead of one per line. Iterating lines and batches of the
        same stream may be mixed: both take from one queue.
        """
        lines = self._lines
        while True:
            while not lines:
                if self._done:
                    return
                await self._read_more()
            batch = list(lines)
            lines.clear()
            yield batch

    async def aclose(self) -> None:
        """Close the channel; never raises."""
        self._done = True
        if self._stderr_task is not None:
            self._stderr_task.cancel()
        if self._process is not None:
            with suppress(Exception):
                self._process.close()

    async def _read_more(self) -> None:
        if self._process is None:
            self._process = await self._start()
            self._stderr_task = asyncio.create_task(self._drain_stderr(self._process))
        try:
            chunk = await self._process.stdout.read(_READ_SIZE)
        except (asyncssh.Error, OSError) as exc:
            self.error = f"connection lost: {describe(exc)}"
            chunk = b""
        if chunk:
            self._split(self._decoder.decode(chunk))
        else:
            await self._finish()

    def _split(self, text: str) -> None:
        *lines, self._pending = (self._pending + text).split("\n")
        self._lines.extend(lines)
        if len(self._pending) > self._max_line:  # a remote that never ends a line cannot grow us
            self._lines.append(self._pending)
            self._pending = ""

    async def _finish(self) -> None:
        tail = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if tail:
            self._lines.append(tail)
        self._done = True
        process = self._process
        assert process is not None
        if not self.error:
            with suppress(TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(process.wait_closed(), _EXIT_STATUS_WAIT_S)
            self.exit_status = process.exit_status if process.exit_signal is None else None
            if self._stderr_task is not None:  # let it take what arrived just before the end
                with suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._stderr_task, _EXIT_STATUS_WAIT_S)
        await self.aclose()

    async def _drain_stderr(self, process: asyncssh.SSHClientProcess) -> None:
        # Read concurrently: unread stderr would fill the channel's buffer and stall stdout.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        size = 0
        with suppress(asyncssh.Error, OSError):
            while chunk := await process.stderr.read(_READ_SIZE):
                text = decoder.decode(chunk)
                self._stderr.append(text)
                size += len(text)
                while size - len(self._stderr[0]) > _STDERR_TAIL_CHARS:
                    size -= len(self._stderr.popleft())
