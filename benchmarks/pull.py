"""A model pull of 10,000 progress events, as fast as the loopback Ollama can send (issue 4).

How to run (from the repository root, with the project's virtualenv):

    python benchmarks/pull.py                # 10,000 events, 15 rounds of each variant (~1.5 min)
    python benchmarks/pull.py --events 50000 --rounds 3

The server. A SEPARATE process (this script with `--serve`) runs the demo's `FakeOllama`
with `pulls.fast_events = N`: each pull of the model sends exactly N progress events
(`pulling <digest>` with total/completed, the real NDJSON shape) with no pacing, as fast
as it can write them. Its CPU is not the client's. Before each round the model is deleted,
so every pull starts from nothing.

The clients. One fresh Python process (this script with `--client stream`) runs the
three stream variants in turn, round after round, so that they share one interpreter,
one heap and the same moments of the machine (separate processes differed by +-20 % from
run to run, more than what is measured here); each pull is measured from sending the
request to the `success` line: wall time, events per second, CPU time over that span.
The UI runs in processes of its own (this script with `--client ui`), one per round.

- bare: the official client alone, `async for part in AsyncClient(host).pull(m, stream=True)`,
  counting events; the baseline.
- cli: what `aiconsole models pull` does on a terminal: `pull_with_progress` over
  `OllamaModels` (name check, error mapping, `PullTracker`, the progress line redrawn at
  most 4 times a second), writing to a real pseudo-terminal drained by a thread.
- piped: the same with output to a pipe drained by a thread (plain lines).
- ui: the Models tab of the real console (headless, 80x24) pulling through `ModelLibrary`;
  measures the frame interval (a 60 Hz timer in the app: the longest and the 99th
  percentile gap between its ticks, i.e. how long the screen could not answer) and how
  often the pull's progress on screen changed (sampled every 10 ms from what the tab
  renders). Skipped, and said so, when the Models tab is not there.

The server is pinned to CPU 1 and the clients to CPU 0 (`taskset`, when there are two).

Target (issue 4): the CLI consumes the stream at least 0.9x as fast as the bare client
(median events/s, same run); the UI stays responsive and shows the progress at least 4
times a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "phi3:mini"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the server ----------------------------------------------------------------------------------


async def serve(events: int) -> None:
    from aiconsole.demo.ollama_api import FakeOllama

    async with FakeOllama(installed=()) as fake:
        fake.pulls.fast_events = events
        print(fake.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes


# --- the clients ---------------------------------------------------------------------------------


async def bare(url: str) -> dict:
    import ollama

    client = ollama.AsyncClient(host=url)
    count, cpu, started = 0, _cpu_s(), time.perf_counter()
    async for part in await client.pull(MODEL, stream=True):
        count += 1
        last = part.status
    return _result(count, started, cpu, last)


async def cli(url: str, terminal: bool) -> dict:
    from aiconsole.commands_models import pull_with_progress
    from aiconsole.domain.models import PullTracker
    from aiconsole.services.ollama_models import OllamaModels

    out, drain = _terminal() if terminal else _pipe()
    err = open(os.devnull, "w")  # noqa: SIM115
    async with OllamaModels(url) as models:
        cpu, started = _cpu_s(), time.perf_counter()
        tracker = PullTracker(MODEL, time.monotonic(), 0.35)  # counts the events it was fed
        code = await pull_with_progress(models, MODEL, out, err, tracker=tracker)
    result = _result(tracker.status().events, started, cpu, "success" if code == 0 else f"exit {code}")
    out.close()
    if drain is not None:
        drain.join(timeout=2)
    return result


def _terminal():
    """A writable end of a pseudo-terminal (isatty() is true), drained by a thread."""
    master, slave = pty.openpty()
    return _drained(master, slave)


def _drained(read_fd: int, write_fd: int):
    def drain() -> None:
        try:
            while os.read(read_fd, 65536):
                pass
        except OSError:
            pass
        finally:
            os.close(read_fd)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return os.fdopen(write_fd, "w", buffering=1), thread


def _pipe():
    """A pipe's writable end (isatty() is false), drained by a thread, as `| tee` would."""
    read_end, write_end = os.pipe()
    return _drained(read_end, write_end)


def _result(count: int, started: float, cpu: float, last: str) -> dict:
    wall = time.perf_counter() - started
    return {"events": count, "wall_s": wall, "events_per_s": count / wall, "cpu_s": _cpu_s() - cpu, "last": last}


STREAM_VARIANTS = ("bare", "cli", "piped")


async def stream_rounds(url: str, variants: list[str], rounds: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            await asyncio.to_thread(_delete_model, url)
            runs[variant].append(await (bare(url) if variant == "bare" else cli(url, terminal=variant == "cli")))
    return runs


def run_client(kind: str, url: str, variants: list[str], rounds: int) -> dict:
    if kind == "stream":
        return asyncio.run(stream_rounds(url, variants, rounds))
    if kind == "ui":
        from _pull_ui import measure_ui  # benchmarks/ is on sys.path: this runs as a script

        return {"ui": [measure_ui(url, MODEL)]}
    raise SystemExit(f"unknown client {kind}")


# --- orchestration -------------------------------------------------------------------------------


def _delete_model(url: str) -> None:
    import httpx

    httpx.request("DELETE", url + "/api/delete", json={"model": MODEL}, timeout=10)  # 404 the first time: fine


def _pinned(cpu: int) -> list[str]:
    """`taskset -c CPU` when there are two CPUs or more: the server and the client each get
    a core of their own, so neither is measured while the other holds its CPU."""
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else []


def _spawn_client(kind: str, url: str, variants: list[str], rounds: int) -> dict[str, list[dict]]:
    done = subprocess.run(
        [*_pinned(0), sys.executable, __file__, "--client", kind, "--url", url, "--variants", ",".join(variants),
         "--rounds", str(rounds)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return {v: [{"failed": (done.stderr or done.stdout).strip()[-500:]}] for v in variants}
    return json.loads(done.stdout.strip().splitlines()[-1])


def orchestrate(args: argparse.Namespace) -> int:
    server = subprocess.Popen(
        [*_pinned(1), sys.executable, __file__, "--serve", "--events", str(args.events)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().strip()
        variants = [v for v in args.variants.split(",") if v]
        streams = [v for v in variants if v in STREAM_VARIANTS]
        runs = _spawn_client("stream", url, streams, args.rounds) if streams else {}
        if "ui" in variants:
            runs["ui"] = []
            for _ in range(args.rounds):
                _delete_model(url)
                runs["ui"] += _spawn_client("ui", url, ["ui"], 1)["ui"]
        for variant, results in runs.items():
            for index, result in enumerate(results):
                print(f"round {index + 1} {variant}: {_one_line(result)}", flush=True)
        return _report(args, runs)
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def _one_line(r: dict) -> str:
    if "failed" in r:
        return f"FAILED: {r['failed']}"
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    text = f"{r['events']} events in {r['wall_s']:.3f} s = {r['events_per_s']:,.0f}/s, CPU {r['cpu_s']:.3f} s"
    if "frame_max_ms" in r:
        text += (f"; frames: max gap {r['frame_max_ms']:.1f} ms, p99 {r['frame_p99_ms']:.1f} ms;"
                 f" progress changed {r['progress_updates']} times = {r['progress_per_s']:.1f}/s")  # fmt: skip
    return text


def _report(args: argparse.Namespace, runs: dict[str, list[dict]]) -> int:
    def median(variant: str, key: str) -> float | None:
        values = [r[key] for r in runs.get(variant, []) if key in r]
        return statistics.median(values) if values else None

    print(f"\npull of {MODEL}: {args.events:,} progress events a pull, {args.rounds} rounds; medians:")
    bad = 0
    for variant, results in runs.items():
        failed = [r for r in results if "failed" in r]
        bad += len(failed)
        rate = median(variant, "events_per_s")
        if rate is None:
            print(f"  {variant:<6} no result ({_one_line(results[0])})")
            continue
        per_event = median(variant, "cpu_s") / median(variant, "events") * 1e6
        print(f"  {variant:<6} {rate:>10,.0f} events/s  wall {median(variant, 'wall_s'):.3f} s  "
              f"CPU {median(variant, 'cpu_s'):.3f} s ({per_event:.1f} us an event)")  # fmt: skip
    base = median("bare", "events_per_s")
    for variant in ("cli", "piped"):
        rate = median(variant, "events_per_s")
        if base and rate:
            ratio = rate / base
            print(f"target: {variant} consumes the stream >= 0.9x as fast as the bare client: "
                  f"{ratio:.2f}x  {'ok' if ratio >= 0.9 else 'MISSED'}")  # fmt: skip
    if median("ui", "frame_max_ms") is not None:
        per_s = median("ui", "progress_per_s")
        print(f"target: the UI shows the progress >= 4 times a second: {per_s:.1f}/s  {'ok' if per_s >= 4 else 'MISSED'}")
        print(f"UI frame interval during the pull (60 Hz timer): max gap {median('ui', 'frame_max_ms'):.1f} ms, "
              f"p99 {median('ui', 'frame_p99_ms'):.1f} ms")  # fmt: skip
    return 2 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--variants", default="bare,cli,piped,ui")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.events))
        return 0
    if args.client:
        print(json.dumps(run_client(args.client, args.url, args.variants.split(","), args.rounds)))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
