"""The GPU feeds: one host's live telemetry from nvidia-smi over SSH, or from NVML locally.

`RemoteGpuFeed.run()` keeps ONE long-running `nvidia-smi --query-gpu=... -lms N` per VM
on the VM's pooled SSH connection (not a process per sample: a new command per sample
costs ~6x more, a new connection ~18x; docs/performance.md). Each round comes as one
batch of lines inside asyncssh's data callback and goes, through the hub's shared
`RoundBatcher`, to the feed's `GpuStreamParser`. When the stream ends:

- the connection dropped: the values turn stale and the next stream starts once the pool
  has reconnected (`SshPool.connection` waits out the pool's backoff: no loop of ours);
- the host key was refused: REFUSED with the pool's message (fingerprint, how to accept),
  and nothing is tried until `SshPool.retry(vm)`;
- nvidia-smi itself ended (not installed, no device, a driver error): NO_GPU or ERROR
  with a clear message, and the next try after our own backoff (exponential, capped),
  since a command that fails at once on a healthy connection would otherwise spin.

Per-process GPU memory is a separate small task while the stream is live:
`--query-compute-apps` when the stream shows a GPU's used memory moved (processes take
and free VRAM), checked every `processes_interval_s`, and at least every six of those.

`LocalGpuFeed.run()` samples `LocalGpus` (NVML, in a thread) every interval. A machine
without NVIDIA driver or GPU is NO_GPU, not an error.

Nothing but cancellation leaves `run()`: every failure becomes the feed's state.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiconsole.domain.gpu import (
    GpuFrame,
    GpuStreamParser,
    nvidia_smi_apps_command,
    nvidia_smi_stream_command,
    parse_compute_apps,
)
from aiconsole.domain.gpu_levels import GpuThresholds, gpu_key
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import LOCAL_HOST, FeedState
from aiconsole.services.gpu_feed_base import DEFAULT_HISTORY_S, GpuFeed, OnChange, utc_now
from aiconsole.services.ssh_errors import HostKeyRefused, SshError, SshUnavailable
from aiconsole.services.tasks import cancel_until_done

if TYPE_CHECKING:  # importing the pool imports asyncssh: only the caller that builds one pays for it
    from aiconsole.services.nvml import LocalGpuReading, LocalGpus
    from aiconsole.services.ssh import RemoteLines, SshPool
    from aiconsole.services.ssh_target import SshTarget

__all__ = ["GpuFeed", "LocalGpuFeed", "OnChange", "RemoteGpuFeed", "RoundBatcher", "classify_smi_exit"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]

_HEAD_LINES = 8  # output lines kept from a stream that has not produced a frame yet (to explain it)
_HEAD_LINE_CHARS = 300
_REMOTE_TEXT_LIMIT = 200

# nvidia-smi exit codes (nvidia-smi(1)): 6 query unsuccessful, 9 driver not loaded, 12 NVML not found.
_NO_DRIVER_EXITS = {9: "the NVIDIA driver is not loaded", 12: "the NVIDIA driver library (NVML) is missing"}
_NO_DEVICE_EXIT = 6


def classify_smi_exit(exit_status: int | None, output: str) -> tuple[FeedState, str]:
    """What an nvidia-smi that ended without a sample means: NO_GPU or ERROR, and a clear message.

    `output` is what it printed (stderr and stdout, untrusted: only quoted sanitised)."""
    lowered = output.lower()
    if exit_status == 127 or "command not found" in lowered or "nvidia-smi: not found" in lowered:
        return FeedState.NO_GPU, "no GPU: nvidia-smi is not installed on this host (command not found)"
    if "no devices were found" in lowered or (exit_status == _NO_DEVICE_EXIT and "device" in lowered):
        return FeedState.NO_GPU, "no GPU: nvidia-smi found no NVIDIA device"
    if exit_status in _NO_DRIVER_EXITS or "couldn't communicate with the nvidia driver" in lowered:
        why = _NO_DRIVER_EXITS.get(exit_status or 0, "nvidia-smi cannot reach the NVIDIA driver")
        return FeedState.NO_GPU, f"no GPU: {why}"
    quoted = _first_line(output)
    ended = "ended" if exit_status is None else f"exited with status {exit_status}"
    return FeedState.ERROR, f"nvidia-smi {ended}" + (f": {quoted}" if quoted else " without output")


def _first_line(output: str) -> str:
    for line in output.splitlines():
        if line.strip():
            return sanitize_line(line, _REMOTE_TEXT_LIMIT)
    return ""


class _Backoff:
    """Our own delays, for a command that fails on a healthy connection (exponential, jittered, capped)."""

    __slots__ = ("base_s", "failures", "max_s", "random")

    def __init__(self, base_s: float, max_s: float, random: Callable[[], float]) -> None:
        self.base_s, self.max_s, self.random = base_s, max_s, random
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        delay = self.base_s * 2 ** min(self.failures - 1, 30) * (0.5 + self.random())
        return min(self.max_s, delay)


class RoundBatcher:
    """Takes the rounds of many feeds together, a few times a second, not each as it comes.

    A fleet's nvidia-smi streams each send their round at their own moment of the second,
    so taken one by one every round runs the parser, the level checks and the histories
    cold: with 100 VMs, 100 times a second. Taken together every `delay_s` the same work
    costs about a sixth less of the whole feed (docs/performance.md). The price is up to
    `delay_s` before a sample counts; the views are drawn once a second, and a value turns
    stale only after three intervals.
    """

    def __init__(self, delay_s: float = 0.25) -> None:
        self.delay_s = delay_s
        self._pending: list[tuple[Callable[[list[str], datetime], None], list[str], datetime]] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, take: Callable[[list[str], datetime], None], batch: list[str], at: datetime) -> None:
        """`take(batch, at)` at the next flush (`at`: when the batch arrived)."""
        self._pending.append((take, batch, at))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay_s, self.flush)

    def flush(self) -> None:
        """Take everything pending now, in the order it came."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for take, batch, at in pending:
            take(batch, at)  # each `take` keeps its own failures (see `RemoteGpuFeed._read`)


class RemoteGpuFeed(GpuFeed):
    """A VM's GPUs through one long-running nvidia-smi on its pooled SSH connection."""

    def __init__(
        self,
        host: str,
        pool: SshPool,
        target: SshTarget | str,
        *,
        interval_s: float = 1.0,
        processes_interval_s: float = 10.0,
        thresholds: GpuThresholds | None = None,
        busy_util_pct: float = 10.0,
        history_s: float = DEFAULT_HISTORY_S,
        on_change: OnChange | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        command_timeout_s: float = 20.0,
        batcher: RoundBatcher | None = None,
    ) -> None:
        """`host` is the VM's name (the pool's key); `clock` stamps the samples; `batcher`
        (shared by a fleet's feeds) delays rounds to take them together, None takes each at once."""
        super().__init__(
            host, interval_s=interval_s, thresholds=thresholds, busy_util_pct=busy_util_pct,
            history_s=history_s, on_change=on_change,
        )  # fmt: skip
        self.pool, self.target = pool, target
        self.processes_interval_s = processes_interval_s
        self.command = nvidia_smi_stream_command(max(1, round(interval_s * 1000)))
        self._clock = clock
        self._sleep = sleep
        self._backoff = _Backoff(retry_base_s, retry_max_s, random)
        self._command_timeout_s = command_timeout_s
        self._batcher = batcher
        self._parser = GpuStreamParser()  # one per feed: it remembers where rounds end across streams
        self._live = asyncio.Event()
        self._ssh_failed = False
        self.streams_started = 0
        """How many nvidia-smi streams were opened (diagnostics)."""

    async def run(self) -> None:
        """Stream until cancelled; every failure becomes the feed's state, never an exception."""
        poller = asyncio.create_task(self._poll_processes(), name=f"gpu-apps-{self.host}")
        try:
            while True:
                await self._stream_and_pause()
        finally:
            await asyncio.shield(cancel_until_done(poller))  # one cancel can be lost on 3.11: see tasks.py

    # --- the stream -------------------------------------------------------------------------------

    async def _stream_and_pause(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            paced_by_pool = await self._stream_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: shown, retried with backoff, never the end of the app
            log.exception("GPU feed for %s failed", self.host)
            self.set_state(FeedState.ERROR, f"GPU telemetry failed: {type(exc).__name__}: {exc}")
            paced_by_pool = False
        if not paced_by_pool:
            await self._sleep(self._backoff.next_delay())
            return
        # The pool paces reconnects; this floor only guards against a connection that looks up
        # but fails every command at once.
        rest = self.interval_s - (loop.time() - started)
        if rest > 0:
            await self._sleep(rest)

    async def _stream_once(self) -> bool:
        """One nvidia-smi stream, start to end; True if the pool paces the next try."""
        try:
            await self.pool.connection(self.host, self.target)
        except HostKeyRefused as exc:
            self._ssh_failed = True
            self.set_state(FeedState.REFUSED, exc.message)
            return True  # the next `connection()` waits for `pool.retry(vm)`
        except SshUnavailable as exc:
            self._ssh_failed = True
            self.set_state(FeedState.ERROR, f"SSH: {exc.message}; retrying")
            return True
        if self._ssh_failed:  # connected again: the SSH error is history (an nvidia-smi one stays until fixed)
            self._ssh_failed = False
            self.set_state(FeedState.CONNECTING, "")
        self.streams_started += 1
        async with self.pool.stream_lines(self.host, self.target, self.command) as lines:
            head: deque[str] = deque(maxlen=_HEAD_LINES)
            try:
                got_frames = await self._read(lines, head)
            except HostKeyRefused as exc:  # the connection went and came back with another key
                self._ssh_failed = True
                self.set_state(FeedState.REFUSED, exc.message)
                return True
            except SshUnavailable as exc:
                self.set_state(FeedState.CONNECTING, f"{exc.message}; reconnecting")
                return True
            except SshError as exc:  # the server would not run the command
                self.set_state(FeedState.ERROR, exc.message)
                return False
        self.record_frames(self._parser.flush(self._clock()), live=False)
        return self._ended(lines, got_frames, head)

    async def _read(self, lines: RemoteLines, head: deque[str]) -> bool:
        """Parse each batch of lines; True once a frame came. `head`: the lines before that.

        The batches are handed over inside asyncssh's data callback (`RemoteLines.run`), one
        per round (nvidia-smi writes a round at once): no task is woken per round, and the
        clock is read and the parser called once per round, not per line. With a batcher
        the rounds are parsed at its next flush, and all of them before this returns."""
        parser, record, batcher = self._parser, self.record_frames, self._batcher
        got_frames = False
        failures: list[Exception] = []

        def take_round(batch: list[str], at: datetime) -> None:
            nonlocal got_frames
            if failures:  # this stream is ending on a bug: what came after it is not parsed
                return
            try:
                frames = parser.feed_lines(batch, at)
                if frames:
                    if not got_frames:
                        got_frames = True
                        self._backoff.failures = 0
                    record(frames)
                elif not got_frames:  # until the first frame, keep what it printed (to explain an exit)
                    head.extend(line[:_HEAD_LINE_CHARS] for line in batch)
            except Exception as exc:  # a bug of ours: end the stream; `_stream_and_pause` says so
                failures.append(exc)
                lines.close()

        def take(batch: list[str]) -> None:
            if batcher is None:
                take_round(batch, self._clock())
            else:
                batcher.add(take_round, batch, self._clock())

        try:
            await lines.run(take)
        finally:
            if batcher is not None:
                batcher.flush()  # this stream's last rounds come before its end (and `parser.flush`)
        if failures:
            raise failures[0]
        return got_frames

    def _ended(self, lines: RemoteLines, got_frames: bool, head: deque[str]) -> bool:
        if lines.error:
            self.set_state(FeedState.CONNECTING, f"{lines.error}; reconnecting")
            return True
        if got_frames:  # it ran, then stopped (killed, driver reload): start it again
            status = "" if lines.exit_status is None else f" (status {lines.exit_status})"
            self.set_state(FeedState.CONNECTING, f"nvidia-smi stopped{status}; restarting")
            return False
        output = lines.stderr_tail + "\n" + "\n".join(head)
        self.set_state(*classify_smi_exit(lines.exit_status, output))
        return False

    def _link_changed(self, state: FeedState) -> None:
        if state is FeedState.LIVE:
            self._live.set()
        else:
            self._live.clear()

    # --- per-process memory ------------------------------------------------------------------------

    async def _poll_processes(self) -> None:
        """Ask for per-process GPU memory when it can have changed, at most every interval.

        A query is a new SSH channel and a remote process: for 100 VMs every 10 s it cost
        more than a third of the whole feed (docs/performance.md). Processes take and give
        back VRAM, so the stream's memory.used says when to look again: a query runs when a
        GPU's used memory moved by `PROCESS_MEM_STEP_MIB` since the last one, when the GPUs
        changed, and in any case every `PROCESS_MAX_AGE_INTERVALS` intervals.
        """
        command = nvidia_smi_apps_command()
        asked_at: float | None = None
        asked_mem: dict[str, float | None] = {}
        loop = asyncio.get_running_loop()
        while True:
            await self._live.wait()  # only while the stream is live: no command on a host without GPU
            frame = self.last_frame
            aged = asked_at is None or loop.time() - asked_at >= self.processes_interval_s * PROCESS_MAX_AGE_INTERVALS
            if frame is not None and (aged or processes_may_have_changed(asked_mem, frame)):
                asked_at, asked_mem = loop.time(), used_memory(frame)
                await self._query_processes(command)
            await self._sleep(self.processes_interval_s)

    async def _query_processes(self, command: str) -> None:
        try:
            result = await self.pool.run(self.host, self.target, command, self._command_timeout_s, wait=False)
        except SshError:
            return  # down, refused or timed out: the stream's state says so
        except Exception:
            log.exception("GPU process query for %s failed", self.host)
            return
        if result.ok:
            self.record_processes(parse_compute_apps(result.stdout))


PROCESS_MEM_STEP_MIB = 256.0
"""A GPU's used memory moving this far means a process started, ended or grew: ask again.
(A CUDA context alone takes ~300 MiB, so a new process always moves it this far.)"""
PROCESS_MAX_AGE_INTERVALS = 6
"""However still the memory, processes are asked again after this many intervals (60 s by default)."""


def used_memory(frame: GpuFrame) -> dict[str, float | None]:
    return {gpu_key(gpu): gpu.mem_used_mib for gpu in frame.gpus}


def processes_may_have_changed(asked: dict[str, float | None], frame: GpuFrame) -> bool:
    """Whether the GPUs or their used memory moved since the processes were last asked for."""
    now = used_memory(frame)
    if now.keys() != asked.keys():
        return True
    for key, used in now.items():
        before = asked[key]
        if (used is None) != (before is None):
            return True
        if used is not None and before is not None and abs(used - before) >= PROCESS_MEM_STEP_MIB:
            return True
    return False


class LocalGpuFeed(GpuFeed):
    """The GPUs of the machine the console runs on, through `LocalGpus` (NVML off the loop)."""

    def __init__(
        self,
        gpus: LocalGpus,
        host: str = LOCAL_HOST,
        *,
        interval_s: float = 1.0,
        thresholds: GpuThresholds | None = None,
        busy_util_pct: float = 10.0,
        history_s: float = DEFAULT_HISTORY_S,
        on_change: OnChange | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        retry_max_s: float = 60.0,
        no_gpu_interval_s: float = 30.0,
    ) -> None:
        """`no_gpu_interval_s`: how often a machine without GPU is asked again (a driver may load)."""
        super().__init__(
            host, interval_s=interval_s, thresholds=thresholds, busy_util_pct=busy_util_pct,
            history_s=history_s, on_change=on_change,
        )  # fmt: skip
        self.gpus = gpus
        self._sleep = sleep
        self._backoff = _Backoff(interval_s, retry_max_s, random)
        self._no_gpu_interval_s = no_gpu_interval_s

    async def run(self) -> None:
        """Sample until cancelled; never raises anything else."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                reading = await self.gpus.sample()
                delay = self._take(reading)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # LocalGpus never raises; a stand-in or a bug might
                log.exception("local GPU feed failed")
                self.set_state(FeedState.ERROR, f"GPU telemetry failed: {type(exc).__name__}: {exc}")
                delay = self._backoff.next_delay()
            await self._sleep(max(0.0, delay - (loop.time() - started)))

    def _take(self, reading: LocalGpuReading) -> float:
        """Apply one reading; the seconds until the next (counted from when this one began)."""
        status = reading.status.value
        if status == "ok" and reading.frame is not None:
            self._backoff.failures = 0
            self.record_frames((reading.frame,))
            self.record_processes(reading.processes)
            return self.interval_s
        if status == "no-gpu":
            self.set_state(FeedState.NO_GPU, reading.message or "no GPU")
            return self._no_gpu_interval_s
        self.set_state(FeedState.ERROR, reading.message or "reading the local GPUs failed")
        return self._backoff.next_delay()
