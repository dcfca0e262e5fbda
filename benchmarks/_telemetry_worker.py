"""The console side of benchmarks/telemetry.py: one variant, measured from inside this process.

Started by telemetry.py once per variant, in a fresh interpreter, after the fleet's servers
(_telemetry_servers.py) are up; prints one JSON line with its figures. See telemetry.py's
docstring for what each variant is and how the window is measured.

    python benchmarks/_telemetry_worker.py --variant feed --fleet FLEET.json --vms 100 ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _proc import process_cpu_s  # benchmarks/ is on sys.path: this runs as a script

VARIANTS = ("feed", "stream", "command", "naive")
READY_TIMEOUT_S = 60.0
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Tally:
    gpus: int
    frames: int = 0
    short: int = 0
    errors: int = 0
    skipped_ticks: int = 0
    last_error: str = ""
    latest: dict[str, Any] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    vms: int = 0
    counting: bool = True

    def take(self, vm: str, frames: list) -> None:
        if not self.counting:
            return
        for frame in frames:
            self.frames += 1
            if len(frame.gpus) < self.gpus:
                self.short += 1
            self.latest[vm] = frame
        if frames and len(self.latest) >= self.vms:
            self.ready.set()

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]


def _now() -> datetime:
    return datetime.now(UTC)


def _one_shot_command() -> str:
    from aiconsole.domain.gpu import GPU_QUERY_FIELDS

    return f"nvidia-smi --query-gpu={','.join(GPU_QUERY_FIELDS)} --format=csv,noheader,nounits"


def _parse_once(text: str) -> list:
    from aiconsole.domain.gpu import GpuStreamParser

    parser, at = GpuStreamParser(), _now()
    return parser.feed(text, at) + parser.flush(at)


async def _stream(pool: Any, vm: str, target: str, command: str, tally: Tally, batcher: Any) -> None:
    from aiconsole.domain.gpu import GpuStreamParser
    from aiconsole.services.ssh import SshError

    def parse(parser: Any, batch: list[str], at: datetime) -> None:
        frames = parser.feed_lines(batch, at)
        if frames:
            tally.take(vm, frames)

    while True:  # ends when cancelled; a lost stream starts again, as a feed would
        parser = GpuStreamParser()
        try:
            async with pool.stream_lines(vm, target, command) as lines:  # read as the feed reads it
                await lines.run(lambda batch: batcher.add(lambda b, at: parse(parser, b, at), batch, _now()))
        except SshError as exc:
            tally.fail(exc)
        batcher.flush()
        tally.take(vm, parser.flush(_now()))
        await asyncio.sleep(1.0)


def _run(main: Any) -> Any:
    """On the console's own loop (services/event_loop.py), like for like; asyncio's before it existed."""
    try:
        from aiconsole.services.event_loop import run
    except ImportError:
        return asyncio.run(main)
    return run(main)


def _loop_name() -> str:
    selector = getattr(asyncio.get_running_loop(), "_selector", None)
    gap = getattr(selector, "_gap", None)
    return f"network wakeups >= {gap * 1000:g} ms apart" if gap else "asyncio's stock loop"


def _have_feed() -> bool:
    try:
        from aiconsole.services.gpu_feed import RemoteGpuFeed  # noqa: F401
    except ImportError:
        return False
    return True


def _feed_tasks(
    pool: Any, vms: list[str], targets: list[str], interval: float, tally: Tally, options: dict[str, Any]
) -> tuple[list, list]:
    """The console's own path: a `RemoteGpuFeed` per VM, and a reader of every view once an interval."""
    from aiconsole.services.gpu_feed import RemoteGpuFeed, RoundBatcher

    seen: dict[str, Any] = {}

    def changed(feed: Any) -> None:  # what the app's repaint hook sees; counts each new frame once
        frame = feed.last_frame
        if frame is not None and frame is not seen.get(feed.host):
            seen[feed.host] = frame
            tally.take(feed.host, [frame])

    batcher = RoundBatcher()  # as the telemetry hub shares one among its feeds
    feeds = [RemoteGpuFeed(vm, pool, t, interval_s=interval, on_change=changed, batcher=batcher, **options)
             for vm, t in zip(vms, targets, strict=True)]

    async def read_views() -> None:  # as the GPU view / `status --json` would, minus the drawing
        while True:
            now = _now()
            for feed in feeds:
                feed.view(now)
            await asyncio.sleep(interval)

    runs = [_at_phase(feed.run(), interval * index / len(feeds)) for index, feed in enumerate(feeds)]
    return feeds, runs + [read_views()]


async def _at_phase(run: Any, phase: float) -> None:
    """Start `run` `phase` seconds late: each VM's nvidia-smi then prints at its own moment
    of the interval, as in a real fleet (streams started together would arrive in a few
    bursts, which costs much less: one wakeup for many rounds)."""
    await asyncio.sleep(phase)
    await run


def _prefill_histories(feeds: list, interval: float) -> None:
    """Fill each feed's history rings to full length, as after `history_s` of running.

    A view copies the rings, so its cost grows with them for the first `history_s` (5 min);
    a window in the first minute would show the cheap, short-history cost. Each point is a
    copy of the VM's first live frame (same GPUs, new sample objects): levels do not move."""
    from aiconsole.domain.gpu import GpuFrame
    from aiconsole.services.gpu_feed_base import DEFAULT_HISTORY_S

    for feed in feeds:
        frame = feed.last_frame
        if frame is None:
            continue
        for _ in range(math.ceil(DEFAULT_HISTORY_S / interval)):
            feed.record_frames([GpuFrame(frame.at, tuple(gpu._replace() for gpu in frame.gpus))])


def _feed_errors(feeds: list, tally: Tally) -> None:
    from aiconsole.domain.telemetry import FeedState

    for feed in feeds:
        restarts = feed.streams_started - 1
        if feed.state is not FeedState.LIVE or restarts:
            tally.errors += 1
            tally.last_error = f"{feed.host}: {feed.state.value} {feed.message} ({restarts} restarts)"[:200]


async def _poll(sample: Any, vm: str, phase: float, interval: float, tally: Tally) -> None:
    import asyncssh

    from aiconsole.services.ssh import SshError

    loop = asyncio.get_running_loop()
    due = loop.time() + phase
    while True:  # ends when cancelled
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            tally.take(vm, _parse_once(await sample()))
        except (asyncssh.Error, OSError, SshError, TimeoutError) as exc:
            tally.fail(exc)
        due += interval
        behind = loop.time() - due
        if behind > 0:  # overran: skip the ticks we missed instead of piling up
            missed = int(behind // interval) + 1
            tally.skipped_ticks += missed
            due += missed * interval


def _naive_sampler(target: str, known_hosts: Any, key: Any, command: str, ciphers: list[str]) -> Any:
    import asyncssh

    from aiconsole.services.ssh import PREFERRED_CIPHERS
    from aiconsole.services.ssh_target import SshTarget

    parsed = SshTarget.parse(target)
    ciphers = ciphers or list(PREFERRED_CIPHERS)  # the console's own order: like for like

    async def sample() -> str:
        async with asyncssh.connect(
            parsed.host, port=parsed.port, username=parsed.user, known_hosts=known_hosts,
            client_keys=[key], agent_path=None, config=None, connect_timeout=10,
            encryption_algs=ciphers,
        ) as conn:
            result = await conn.run(command, check=False, timeout=10, encoding="utf-8", errors="replace")
        return result.stdout or ""

    return sample


def _pooled_sampler(pool: Any, vm: str, target: str, command: str) -> Any:
    async def sample() -> str:
        return (await pool.run(vm, target, command, timeout=10)).stdout

    return sample


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pool(fleet: dict, ciphers: list[str]) -> Any:
    """The console's pool, as the app builds it; `ciphers` (an experiment) overrides its order."""
    from aiconsole.services.ssh import SshPool, SshTarget

    class Pool(SshPool):
        def connect_options(self, target: SshTarget) -> dict[str, Any]:
            options = super().connect_options(target)
            return options | {"encryption_algs": ciphers} if ciphers else options

    return Pool(
        known_hosts=fleet["known_hosts"], config_file=Path(fleet["known_hosts"]).with_name("no-config"),
        client_keys=[fleet["client_key"]], use_agent=False,
    )


async def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    import asyncssh

    from aiconsole.domain.gpu import nvidia_smi_stream_command

    fleet = json.loads(Path(args.fleet).read_text())
    targets = fleet["targets"][: args.vms]
    vms = [f"vm{index:03d}" for index in range(len(targets))]
    tally = Tally(gpus=args.gpus, vms=len(vms))
    interval = args.interval
    ciphers = [c for c in args.ciphers.split(",") if c]
    pool = _pool(fleet, ciphers)
    result: dict[str, Any] = {"variant": args.variant, "vms": len(vms), "gpus": args.gpus,
                              "loop": _loop_name()}
    feeds: list = []
    started = time.perf_counter()
    if args.variant in ("feed", "stream", "command"):
        await asyncio.gather(*(pool.connection(vm, t) for vm, t in zip(vms, targets, strict=True)))
        result["connect_s"] = time.perf_counter() - started
    if args.variant == "feed" and _have_feed():
        result["via"] = "RemoteGpuFeed"
        options = {"processes_interval_s": args.processes_interval} if args.processes_interval else {}
        feeds, tasks = _feed_tasks(pool, vms, targets, interval, tally, options)
    elif args.variant in ("feed", "stream"):
        result["via"] = "SshPool.stream_lines (callback) + RoundBatcher + GpuStreamParser"
        command = nvidia_smi_stream_command(round(interval * 1000))
        from aiconsole.services.gpu_feed import RoundBatcher

        batcher = RoundBatcher()
        tasks = [
            _at_phase(_stream(pool, vm, t, command, tally, batcher), interval * index / len(vms))
            for index, (vm, t) in enumerate(zip(vms, targets, strict=True))
        ]
    else:
        command = _one_shot_command()
        if args.variant == "naive":
            known_hosts = asyncssh.read_known_hosts(fleet["known_hosts"])
            key = asyncssh.read_private_key(fleet["client_key"])
            samplers = [_naive_sampler(t, known_hosts, key, command, ciphers) for t in targets]
        else:
            samplers = [_pooled_sampler(pool, vm, t, command) for vm, t in zip(vms, targets, strict=True)]
        tasks = [
            _poll(sampler, vm, interval * index / len(vms), interval, tally)
            for index, (sampler, vm) in enumerate(zip(samplers, vms, strict=True))
        ]
    running = [asyncio.create_task(task) for task in tasks]
    try:
        await asyncio.wait_for(tally.ready.wait(), READY_TIMEOUT_S)
        result["first_frames_s"] = time.perf_counter() - started
        if feeds:
            tally.counting = False  # the copies below are no received frames
            _prefill_histories(feeds, interval)
            tally.counting = True
        await asyncio.sleep(args.warmup)
        result |= await _window(args.seconds, args.server_pid, tally, args.profile)
    except TimeoutError:
        result["failed"] = f"only {len(tally.latest)} of {len(vms)} VMs sent a frame in {READY_TIMEOUT_S:g} s"
    finally:
        _feed_errors(feeds, tally)
        await _stop(running)
        await pool.aclose()
    result |= {"errors": tally.errors, "last_error": tally.last_error, "skipped_ticks": tally.skipped_ticks}
    return result


async def _stop(tasks: list[asyncio.Task]) -> None:
    """Cancel until every task ended. On Python 3.11, `asyncio.wait_for` (inside asyncssh's
    `run(timeout=...)`, `wait(timeout=...)` and `connect`) swallows a cancel that arrives just as
    what it waits for completes (CPython gh-86296, fixed in 3.12): one cancel is not enough."""
    pending = set(tasks)
    for _ in range(50):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.2)
    raise RuntimeError(f"{len(pending)} tasks would not stop")


async def _window(seconds: float, server_pid: int, tally: Tally, profile: str = "") -> dict[str, Any]:
    frames0, short0, cpu0, server0 = tally.frames, tally.short, _cpu_s(), process_cpu_s(server_pid)
    profiler = None
    if profile:  # where the time goes (cProfile slows everything: its CPU figure is not the result)
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    wall0 = time.perf_counter()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - wall0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu, server = _cpu_s() - cpu0, process_cpu_s(server_pid) - server0
    rss_now = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20
    # ru_maxrss (KiB) is the kernel's high-water mark, which it updates lazily: never below now.
    rss_peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss_now)
    return {
        "window_s": wall, "cpu_s": cpu, "cpu_pct": 100 * cpu / wall, "server_cpu_pct": 100 * server / wall,
        "frames_per_s": (tally.frames - frames0) / wall, "short_frames": tally.short - short0,
        "rss_peak_mb": rss_peak, "rss_now_mb": rss_now,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--fleet", required=True, help="the servers' ready line, as a JSON file")
    parser.add_argument("--vms", type=int, required=True)
    parser.add_argument("--gpus", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="the measurement window")
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--ciphers", default="")
    parser.add_argument("--processes-interval", type=float, default=0.0)
    parser.add_argument("--profile", default="", help="write cProfile stats of the window to this file")
    args = parser.parse_args()
    print(json.dumps(_run(run_variant(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
