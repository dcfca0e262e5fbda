"""Tailing a training run's metrics: what a poll costs as the run grows to 100,000 steps (issue 6).

How to run (from the repository root, with the project's virtualenv and its `test` extra,
which `tests/mlflow_server.py` needs):

    python benchmarks/mlflow_tail.py            # checkpoints at 1,000 / 10,000 / 50,000 / 100,000 steps (~2 min)
    python benchmarks/mlflow_tail.py --quick    # 1,000 / 10,000 / 20,000 steps (~40 s)

The server. The real `mlflow server` (the version pinned in tests/mlflow_server.py, installed
once into `.pytest_cache/d/mlflow-<version>` as the tests do, or `AICONSOLE_MLFLOW_VENV`) on
loopback with a SQLite store in a temporary folder. A "trainer" (plain httpx, MLflow's REST
API: experiments/create, runs/create, runs/log-batch of at most 1000 metrics) creates one
RUNNING run and logs two metrics, `train_loss` and `learning_rate`, at every step. The run
grows in stages up to each checkpoint; how long the logging took is printed (MLflow's own
insert cost, a SQLAlchemy row per metric: ~5,000 metrics/s here). Most of the full run's time
goes to the full reads at 50,000 and 100,000 steps (first loads and naive refetches).

At each checkpoint (a multiple of the page size, so every checkpoint puts the tail at the same
place in its page and the figures compare like with like), the console's side:
- first load: a fresh `RunTail(client, run_id, keys, page_size=1000)` polled once (runs/get
  and every page of both histories); measured and printed apart;
- then polls of that tail, each after the trainer logged N new steps (both keys):
  `+0` (nothing new: runs/get only), `+1` and `+10` (5 polls each, medians), and
  `+1, page turn` (the poll in which the page the tail re-reads fills up and it moves on to
  the next one: the worst case, a whole page of old points re-read and one more request a key);
- next to them, in the same run and the same state of the run: a naive full refetch of the
  same histories, what a console that re-reads everything every poll would do (runs/get and
  `client.history()` of each key, every page).

What is counted: the client's requests and the bytes of each response body as received
(an httpx response hook: `response.num_bytes_downloaded`, i.e. before any decompression;
MLflow's server sends no Content-Encoding here, so it equals the Content-Length). Response
headers (~200 bytes each) are not counted. Times are wall clock around the poll, server
included (it runs on the same machine), on asyncio's own loop unless `--loop console` (the
console's loop spaces network wakeups 40 ms apart: that adds up to 40 ms a request).

Targets (issue 6): (a) tail bytes per poll at the last checkpoint <= 1.5x those at 1,000
steps, for every kind of poll (flat); (b) tail requests per poll the same at every
checkpoint, for every kind of poll; (c) the tail delivered exactly the new points (steps and
values equal to what was logged; the first load and the naive refetch everything, in order).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import pytest  # only for the outcomes ensure_mlflow raises when it cannot install

from aiconsole.domain.mlflow import MetricPoint
from aiconsole.services.mlflow_client import API, MlflowClient, RunTail, RunUpdate
from mlflow_server import MLFLOW_VERSION, MlflowServer, ensure_mlflow

KEYS = ("train_loss", "learning_rate")
PAGE = 1000  # the tail's page size (the console's default) and the naive refetch's
BATCH = 1000  # runs/log-batch takes at most 1000 metrics a request
POLLS = 5  # polls per kind and checkpoint; 1 + 5 + 50 new steps stay inside one page
CHECKPOINTS = (1_000, 10_000, 50_000, 100_000)
QUICK_CHECKPOINTS = (1_000, 10_000, 20_000)
CASES = ("+0", "+1", "+10", "+1, page turn")
NEW_STEPS = {"+0": 0, "+1": 1, "+10": 10, "+1, page turn": 1}


def value(key: str, step: int) -> float:
    """What the trainer logs: a decaying loss with some wiggle, a cosine learning-rate schedule."""
    if key == "train_loss":
        return 0.3 + 2.2 * math.exp(-step / 20_000) + 0.01 * math.sin(step)
    return 1e-4 * (1 + math.cos(math.pi * step / 100_000))


# --- the trainer's side --------------------------------------------------------------------------


class Trainer:
    """Logs through MLflow's REST API as mlflow's own client does; not counted by the meter."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url + API, timeout=120)
        self.clock = int(time.time() * 1000)
        self.run_id = ""
        self.steps = 0
        """Steps logged so far: 0 .. steps-1, each with every key."""

    async def post(self, path: str, body: dict) -> dict:
        response = await self.http.post(path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    async def start_run(self) -> str:
        experiment = await self.post("/experiments/create", {"name": f"bench-tail-{time.monotonic_ns()}"})
        body = {"experiment_id": experiment["experiment_id"], "run_name": "lora-100k", "start_time": self.clock}
        self.run_id = (await self.post("/runs/create", body))["run"]["info"]["run_id"]
        return self.run_id

    async def log(self, count: int) -> range:
        """Logs the next `count` steps of every key, in batches of at most BATCH metrics."""
        steps = range(self.steps, self.steps + count)
        per_batch = BATCH // len(KEYS)
        for start in range(0, count, per_batch):
            metrics = []
            for step in steps[start : start + per_batch]:
                self.clock += 1  # one timestamp a step, ascending: histories are ordered by it
                metrics += [{"key": k, "value": value(k, step), "timestamp": self.clock, "step": step} for k in KEYS]
            await self.post("/runs/log-batch", {"run_id": self.run_id, "metrics": metrics})
        self.steps += count
        return steps

    async def aclose(self) -> None:
        await self.http.aclose()


# --- the console's side --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cost:
    requests: int
    bytes: int
    ms: float
    history_ms: tuple[float, ...] = ()
    """How long each metrics/get-history request took, from sending to the body's last byte."""


class Meter:
    """httpx event hooks counting the client's requests and response-body bytes."""

    def __init__(self) -> None:
        self.requests = self.bytes = self.compressed = 0
        self.history_ms: list[float] = []
        self._sent: dict[int, float] = {}

    def hooks(self) -> dict[str, list]:
        return {"request": [self.sent], "response": [self.received]}

    async def sent(self, request: httpx.Request) -> None:
        self._sent[id(request)] = time.perf_counter()

    async def received(self, response: httpx.Response) -> None:
        await response.aread()
        self.requests += 1
        self.bytes += response.num_bytes_downloaded  # the body as it came over the wire
        self.compressed += bool(response.headers.get("content-encoding"))
        sent = self._sent.pop(id(response.request))
        if response.request.url.path.endswith("/metrics/get-history"):
            self.history_ms.append((time.perf_counter() - sent) * 1000)

    async def measure(self, work):
        """Runs the coroutine `work`; returns its result and what it cost on the wire."""
        requests, size, histories = self.requests, self.bytes, len(self.history_ms)
        started = time.perf_counter()
        result = await work
        ms = (time.perf_counter() - started) * 1000
        return result, Cost(self.requests - requests, self.bytes - size, ms, tuple(self.history_ms[histories:]))


def exact(points: tuple[MetricPoint, ...] | list[MetricPoint], key: str, steps: range) -> bool:
    """The points are those logged for `steps`, in order, with the very values logged."""
    return [p.step for p in points] == list(steps) and all(p.value == value(key, p.step) for p in points)


class Checks:
    """Target (c): every delivery compared with what the trainer logged."""

    def __init__(self) -> None:
        self.done = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        self.done += 1
        if not ok:
            self.failed.append(what)

    def tail_update(self, update: RunUpdate, steps: range, what: str) -> None:
        """A tail's update holds exactly `steps` of every key, or nothing when none were logged."""
        if not steps:
            self.check(update.metrics == {}, f"{what}: metrics fetched though nothing was logged")
            return
        self.check(set(update.metrics) == set(KEYS), f"{what}: keys {sorted(update.metrics)}")
        for key, tail in update.metrics.items():
            self.check(not tail.reset and exact(tail.points, key, steps), f"{what}: {key} not exactly {steps}")


async def tail_poll(trainer: Trainer, tail: RunTail, meter: Meter, checks: Checks, new: int, what: str) -> Cost:
    steps = await trainer.log(new)
    update, cost = await meter.measure(tail.poll())
    checks.tail_update(update, steps, what)
    return cost


async def naive_refetch(client: MlflowClient, run_id: str) -> dict[str, list[MetricPoint]]:
    """A console that re-reads everything each poll: the run, then every page of every history."""
    await client.run(run_id)
    return {key: await client.history(run_id, key, page_size=PAGE) for key in KEYS}


async def checkpoint(trainer: Trainer, client: MlflowClient, meter: Meter, checks: Checks) -> dict:
    """First load of a fresh tail, its polls of each kind, and a naive refetch, at trainer.steps."""
    steps = trainer.steps
    tail = RunTail(client, trainer.run_id, KEYS, page_size=PAGE)
    update, first = await meter.measure(tail.poll())
    checks.tail_update(update, range(steps), f"first load at {steps}")
    # The checkpoint is a multiple of PAGE: the tail's page is full, so the first new step turns it.
    polls: dict[str, list[Cost]] = {case: [] for case in CASES}
    sequence = ["+1, page turn"] + [case for case in CASES if case != "+1, page turn" for _ in range(POLLS)]
    for case in sequence:
        what = f"poll {case} at {steps}"
        polls[case].append(await tail_poll(trainer, tail, meter, checks, NEW_STEPS[case], what))
    histories, naive = await meter.measure(naive_refetch(client, trainer.run_id))
    for key, points in histories.items():
        checks.check(exact(points, key, range(trainer.steps)), f"naive refetch at {steps}: {key}")
    return {"steps": steps, "first": first, "polls": polls, "naive": naive}


# --- the report ----------------------------------------------------------------------------------


def median_cost(costs: list[Cost]) -> Cost:
    return Cost(
        round(statistics.median(c.requests for c in costs)),
        round(statistics.median(c.bytes for c in costs)),
        statistics.median(c.ms for c in costs),
    )


def print_tables(results: list[dict]) -> None:
    print(f"\nfirst load of a fresh tail ({len(KEYS)} keys, page size {PAGE}):")
    print(f"{'steps':>9}{'requests':>10}{'bytes':>14}{'ms':>10}")
    for r in results:
        first = r["first"]
        print(f"{r['steps']:>9,}{first.requests:>10}{first.bytes:>14,}{first.ms:>10.1f}")
    print(f"\npolls after the first load (tail: medians of {POLLS} polls, one poll for the page turn;"
          " naive: one full refetch of the same run):")  # fmt: skip
    print(f"{'steps':>9}  {'new steps':<15}{'tail req':>9}{'tail bytes':>12}{'tail ms':>9}"
          f"{'naive req':>10}{'naive bytes':>14}{'naive ms':>10}{'naive/tail bytes':>18}")  # fmt: skip
    for r in results:
        naive = r["naive"]
        for case in CASES:
            tail = median_cost(r["polls"][case])
            print(f"{r['steps']:>9,}  {case:<15}{tail.requests:>9}{tail.bytes:>12,}{tail.ms:>9.1f}"
                  f"{naive.requests:>10}{naive.bytes:>14,}{naive.ms:>10.1f}{naive.bytes / tail.bytes:>17,.0f}x")  # fmt: skip


def verdicts(results: list[dict], checks: Checks) -> int:
    """One line per target; returns the number missed."""
    missed = 0

    def verdict(label: str, ok: bool, figures: str) -> None:
        nonlocal missed
        missed += not ok
        print(f"  {'ok    ' if ok else 'MISSED'} {label}: {figures}")

    first, last = results[0], results[-1]
    print("\ntargets:")
    ratios = {case: median_cost(last["polls"][case]).bytes / median_cost(first["polls"][case]).bytes for case in CASES}
    verdict(f"a. tail bytes per poll at {last['steps']:,} steps <= 1.5x at {first['steps']:,}",
            all(ratio <= 1.5 for ratio in ratios.values()),
            ", ".join(f"{case} {ratio:.2f}x" for case, ratio in ratios.items()))  # fmt: skip
    counts = {case: sorted({c.requests for r in results for c in r["polls"][case]}) for case in CASES}
    verdict("b. tail requests per poll the same at every checkpoint",
            all(len(found) == 1 for found in counts.values()),
            ", ".join(f"{case}: {'/'.join(map(str, found))}" for case, found in counts.items()))  # fmt: skip
    verdict("c. the tail delivered exactly the new points (and first load, naive refetch: everything)",
            not checks.failed,
            f"{checks.done - len(checks.failed)} of {checks.done} checks"
            + (f"; first failures: {checks.failed[:3]}" if checks.failed else ""))  # fmt: skip
    per_request = ", ".join(
        f"{r['steps']:,}: {statistics.median(ms for c in r['polls']['+1'] for ms in c.history_ms):.1f} ms"
        for r in results
    )
    print(f"         (info) one metrics/get-history request of the tail's +1 polls (median): {per_request}")
    worst = median_cost(last["polls"]["+1, page turn"]).bytes
    print(f"         (info) at {last['steps']:,} steps a naive refetch costs {last['naive'].bytes:,} bytes in"
          f" {last['naive'].requests} requests, {last['naive'].bytes / worst:,.0f}x the tail's worst poll"
          f" (a page turn, {worst:,} bytes)")  # fmt: skip
    return missed


# --- orchestration -------------------------------------------------------------------------------


async def bench(url: str, checkpoints: tuple[int, ...]) -> tuple[list[dict], Checks, Meter]:
    meter, checks = Meter(), Checks()
    trainer = Trainer(url)
    results = []
    try:
        async with MlflowClient(url, timeout=120, event_hooks=meter.hooks()) as client:
            await trainer.start_run()
            for target in checkpoints:
                count, started = target - trainer.steps, time.perf_counter()
                await trainer.log(count)
                took = time.perf_counter() - started
                print(f"logged {count:,} steps ({count * len(KEYS):,} metrics) in {took:.1f} s"
                      f" ({count * len(KEYS) / took:,.0f} metrics/s); the run has {target:,} steps",
                      flush=True)  # fmt: skip
                results.append(await checkpoint(trainer, client, meter, checks))
    finally:
        await trainer.aclose()
    return results, checks, meter


def start_server(workdir: Path) -> MlflowServer:
    cache = REPO / ".pytest_cache" / "d" / f"mlflow-{MLFLOW_VERSION}"  # where the tests keep it
    try:
        mlflow = ensure_mlflow(cache)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # it speaks to pytest: say it here
        print(f"cannot run: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # MlflowServer turns mlflow 3's job runner off (MLFLOW_SERVER_ENABLE_JOB_EXECUTION): its 7
    # huey consumers took both cores for ~15 s after /health, and the first checkpoint's times
    # were 5-12x those of a quiet server.
    server = MlflowServer(mlflow, workdir)
    server.start()
    print(f"mlflow server {MLFLOW_VERSION} (SQLite store) up in {server.start_seconds:.1f} s at {server.url}")
    return server


def run_on(loop: str, main):
    if loop == "asyncio":
        return asyncio.run(main)
    from aiconsole.services.event_loop import run

    return run(main)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="checkpoints up to 20,000 steps")
    parser.add_argument("--loop", choices=("asyncio", "console"), default="asyncio",
                        help="the client's event loop (console: network wakeups spaced 40 ms apart)")  # fmt: skip
    args = parser.parse_args()
    checkpoints = QUICK_CHECKPOINTS if args.quick else CHECKPOINTS
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as workdir:
        server = start_server(Path(workdir))
        try:
            results, checks, meter = run_on(args.loop, bench(server.url, checkpoints))
        finally:
            server.stop()
    print(f"\nbytes: response bodies as received ({meter.compressed} of {meter.requests} responses compressed);"
          f" times on {args.loop}'s loop")  # fmt: skip
    print_tables(results)
    return 1 if verdicts(results, checks) else 0


if __name__ == "__main__":
    sys.exit(main())
