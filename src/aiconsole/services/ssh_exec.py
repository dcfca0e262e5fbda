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
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

import asyncssh

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.ssh_errors import SshCommandTimeout, SshError, SshUnavailable

log = logging.getLogger(__name__)

_STDERR_TAIL_CHARS = 4096


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


async def open_session(
    conn: asyncssh.SSHClientConnection, command: str, factory: Callable[[], asyncssh.SSHClientSession[bytes]]
) -> asyncssh.SSHClientChannel[bytes]:
    """Start `command` on a channel whose output goes to `factory()`'s callbacks, stdin closed."""
    try:
        channel, _ = await conn.create_session(factory, command, encoding=None)
    except asyncssh.ChannelOpenError as exc:
        raise SshError(f"the server refused to run a command: {describe(exc)}") from None
    except (asyncssh.Error, OSError) as exc:
        raise SshUnavailable(f"connection lost: {describe(exc)}") from None
    channel.write_eof()  # nothing on stdin, as with DEVNULL
    return channel


StartSession = Callable[[Callable[[], asyncssh.SSHClientSession[bytes]]], Awaitable[asyncssh.SSHClientChannel[bytes]]]
OnLines = Callable[[list[str]], None]


class _LineSession(asyncssh.SSHClientSession[bytes]):
    """asyncssh's callbacks for one command, handed to its `RemoteLines`."""

    def __init__(self, lines: RemoteLines) -> None:
        self._lines = lines

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._lines._received(data, datatype)

    def exit_status_received(self, status: int) -> None:
        self._lines.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._lines.exit_status = None  # ended by a signal: no status to report

    def connection_lost(self, exc: Exception | None) -> None:
        self._lines._lost(exc)


class RemoteLines:
    """A remote command's stdout as lines (without their `\\n`), as they arrive.

    Two ways to read it, both from one async context manager (leaving it, or `aclose()`,
    closes the channel, which ends the remote command: OpenSSH's sshd hangs up its pipes
    and the next write gets SIGPIPE):

    - iterate: `async for line in lines`; the command starts on the first `__anext__`;
    - `await lines.run(on_lines)`: every batch is handed to `on_lines` inside asyncssh's
      own data callback, so no task is woken per packet. For the GPU feeds: 100 VMs send
      a round each second, each at its own moment, and waking a reader task for each
      was a good part of what a round cost.

    Starting raises SshUnavailable/HostKeyRefused/SshError. The lines end when the
    command ends or the connection drops (`error` says which; `exit_status` what the
    command reported). Output is decoded here with `errors="replace"` (incrementally: a
    character split across packets survives); a line longer than `max_line` is handed on
    in pieces, so a remote that never ends a line cannot grow memory.
    """

    def __init__(self, start: StartSession, *, max_line: int = 65536) -> None:
        self._start = start
        self._max_line = max_line
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stderr_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._lines: deque[str] = deque()
        self._on_lines: OnLines | None = None
        self._on_lines_error: Exception | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._ended = asyncio.Event()
        self._done = False
        self._stderr: deque[str] = deque()
        self._stderr_size = 0
        self.exit_status: int | None = None
        """Set when the command ended and reported one."""
        self.error = ""
        """Why the stream ended early (connection lost), sanitised; empty otherwise."""

    @property
    def stderr_tail(self) -> str:
        """The end of what the command wrote to stderr (decoded leniently, not sanitised)."""
        return "".join(self._stderr)[-_STDERR_TAIL_CHARS:]

    async def __aenter__(self) -> RemoteLines:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> RemoteLines:
        return self

    async def __anext__(self) -> str:
        while not self._lines:
            if self._done:
                raise StopAsyncIteration
            await self._more()
        return self._lines.popleft()

    async def run(self, on_lines: OnLines) -> None:
        """Hand each batch of lines to `on_lines` as it arrives, until the command ends or the
        connection drops. `on_lines` runs inside asyncssh's callback: it must not block; if
        it raises, the channel is closed and the exception re-raised here."""
        await self._open()
        if self._lines:  # what came before `run` was called
            queued = list(self._lines)
            self._lines.clear()
            on_lines(queued)
        self._on_lines = on_lines
        try:
            await self._ended.wait()
        finally:
            self._on_lines = None
        if self._on_lines_error is not None:
            raise self._on_lines_error

    async def aclose(self) -> None:
        """Close the channel; never raises."""
        self.close()

    def close(self) -> None:
        """Close the channel (from a callback too); never raises."""
        self._done = True
        self._on_lines = None
        if self._channel is not None:
            with suppress(Exception):
                self._channel.close()  # its session's `connection_lost` ends `run`
        else:
            self._ended.set()  # never opened: `run` has nothing to wait for
        self._wake()

    # --- inside: called from asyncssh's callbacks ------------------------------------------------

    async def _open(self) -> None:
        if self._channel is None and not self._done:
            self._channel = await self._start(lambda: _LineSession(self))

    async def _more(self) -> None:
        await self._open()
        if self._lines or self._done:
            return
        self._wakeup = asyncio.get_running_loop().create_future()
        await self._wakeup

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self._keep_stderr(self._stderr_decoder.decode(data))
            return
        *lines, self._pending = (self._pending + self._decoder.decode(data)).split("\n")
        if len(self._pending) > self._max_line:
            lines.append(self._pending)
            self._pending = ""
        if lines:
            self._deliver(lines)

    def _deliver(self, lines: list[str]) -> None:
        on_lines = self._on_lines
        if on_lines is None:
            self._lines.extend(lines)
            self._wake()
            return
        try:
            on_lines(lines)
        except Exception as exc:  # the reader's bug: end this stream, re-raised by `run`
            self._on_lines_error = exc
            self._on_lines = None
            if self._channel is not None:
                self._channel.close()

    def _lost(self, exc: Exception | None) -> None:
        tail = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if exc is not None and not self._done:
            self.error = f"connection lost: {describe(exc)}"
        if tail and not self._done:
            self._deliver([tail])
        self._done = True
        self._ended.set()
        self._wake()

    def _keep_stderr(self, text: str) -> None:
        self._stderr.append(text)
        self._stderr_size += len(text)
        while self._stderr_size - len(self._stderr[0]) > _STDERR_TAIL_CHARS:
            self._stderr_size -= len(self._stderr.popleft())
