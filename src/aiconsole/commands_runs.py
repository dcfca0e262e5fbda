"""`aiconsole runs list|tail`: the fleet's MLflow runs from a shell, on the Training tab's core.

Only servers whose VM runs are asked (a stopped VM's is named on stderr). `list` prints one
table, RUNNING first, or strict JSON (`--json`: NaN/±Infinity as `null` plus `value_text`).
`tail` prints the last points of each metric, then each new one as it arrives, a flushed
line each; status lines go to stderr, so a pipe gets only points. A server that does not
answer is retried with backoff and the tail goes on where it was. Names and keys are
untrusted: sanitised on a terminal and in a pipe alike (no control character is needed in
one); values are printed exactly. Exit status: see the epilogs in cli.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from aiconsole.assembly import Runtime, tracking_servers
from aiconsole.commands_chat import is_terminal
from aiconsole.commands_training import training_watch
from aiconsole.domain.format import format_age, format_duration
from aiconsole.domain.mlflow import FINISHED, MetricPoint, Run, run_duration, status_rank
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.training import (
    ServerRuns,
    TrackingServer,
    filter_runs,
    last_metric_at,
    quiet_for,
    run_label,
    running_note,
)
from aiconsole.services.clock import utc_now
from aiconsole.services.training import TrainingError

if TYPE_CHECKING:
    from aiconsole.services.mlflow_client import RunUpdate
    from aiconsole.services.training import RunFollower, TrainingWatch

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
BACKOFF_CAP_S = 30.0
"""A tail whose server does not answer waits twice as long after each failure, up to this."""
METRICS_SHOWN = 3
"""Latest metrics shown per run in the table (losses first)."""
_NAME_LIMIT = 80
_PIPED_NAME_LIMIT = 1000


def _say(err: TextIO, problem: str) -> None:
    err.write(f"aiconsole: {sanitize_line(problem)}\n")
    err.flush()


def _note(err: TextIO, line: str) -> None:
    err.write(sanitize_line(line) + "\n")
    err.flush()


# --- which servers ------------------------------------------------------------------------------


def _chosen(runtime: Runtime, only: str | None, err: TextIO) -> list[TrackingServer] | int:
    """The mlflow services to ask (of `only`, or all), or the exit status after saying why none."""
    if only is not None and runtime.settings.vm_named(only) is None:
        known = ", ".join(vm.name for vm in runtime.settings.vm) or "none in the config"
        _say(err, f"no VM named {only!r} (VMs: {known})")
        return EXIT_USAGE
    servers = [s for s in tracking_servers(runtime.settings) if only in (None, s.vm)]
    if not servers:
        where = f"{only} has" if only else "the config has"
        _say(err, f'{where} no mlflow service (a [[vm.service]] with kind = "mlflow")')
        return EXIT_FAILED
    return servers


def _is_up(runtime: Runtime, powers: Mapping[str, PowerState], vm: str) -> bool:
    config = runtime.settings.vm_named(vm)
    return powers.get(vm) is PowerState.RUNNING or (config is not None and config.provider == "static")


@asynccontextmanager
async def _fleet(runtime: Runtime, environ: Mapping[str, str]):
    """Each VM's power now, and a training watch on an SSH pool of its own; all closed after.
    The monitor stays open throughout: it holds the demo's servers."""
    monitor = runtime.monitor
    try:
        await monitor.open()
        await monitor.refresh()
        async with training_watch(runtime, environ) as watch:
            yield watch, monitor.powers()
    finally:
        await monitor.close()


def _stopped_note(server: TrackingServer, powers: Mapping[str, PowerState], err: TextIO) -> None:
    power = powers.get(server.vm, PowerState.UNKNOWN).value
    _note(err, f"{server.label}: VM {power}, not asked")


# --- list ---------------------------------------------------------------------------------------


def list_command(
    runtime: Runtime, vm: str | None, *, status: str | None = None, as_json: bool = False,
    out: TextIO, err: TextIO, environ: Mapping[str, str] = os.environ,
) -> int:  # fmt: skip
    return asyncio.run(_list(runtime, vm, status, as_json, out, err, environ))


async def _list(runtime, only, status, as_json: bool, out: TextIO, err: TextIO, environ) -> int:
    servers = _chosen(runtime, only, err)
    if isinstance(servers, int):
        return servers
    async with _fleet(runtime, environ) as (watch, powers):
        # Only the chosen servers' VMs count as up: the others are not asked.
        await watch.read_all({s.vm: PowerState.RUNNING for s in servers if _is_up(runtime, powers, s.vm)})
        snapshot = watch.snapshot()
    states = [snapshot.server(s.vm, s.service) for s in servers]
    now = utc_now()
    for state in states:
        if not state.vm_running:
            _stopped_note(state.server, powers, err)
    rows = _rows(states, status or "all")
    if as_json:
        out.write(_dumps(list_json(states, rows, powers, now)) + "\n")
    else:
        out.write(list_table(rows, now, asked=any(s.vm_running for s in states), status=status))
    for state in states:
        if state.error:
            _say(err, f"{state.server.label}: {state.error}")
    out.flush()
    return EXIT_FAILED if any(state.error for state in states) else EXIT_OK


def _rows(states: Sequence[ServerRuns], status: str) -> list[tuple[ServerRuns, Run]]:
    """Every run shown, of every server: RUNNING first, then by status, newest first."""
    rows = [(state, run) for state in states for run in filter_runs(state.runs, status)]

    def key(row: tuple[ServerRuns, Run]) -> tuple[int, float]:
        run = row[1]
        return (status_rank(run.status), -(run.start_time.timestamp() if run.start_time else 0.0))

    return sorted(rows, key=key)


_COLUMNS = ("SERVER", "EXPERIMENT", "RUN", "STATUS", "STARTED", "DURATION", "LAST METRIC", "METRICS")


def list_table(
    rows: Sequence[tuple[ServerRuns, Run]], now: datetime, *, asked: bool = True, status: str | None = None
) -> str:
    """The runs as an aligned table, every untrusted string sanitised."""
    if not rows:
        return (f"no {status} runs\n" if status else "no runs\n") if asked else ""
    table = [_COLUMNS] + [_row(state, run, now) for state, run in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    return "\n".join(lines) + "\n"


def _row(state: ServerRuns, run: Run, now: datetime) -> tuple[str, ...]:
    started = run.start_time.astimezone().strftime("%Y-%m-%d %H:%M") if run.start_time else "—"
    duration = run_duration(run, now)
    last = running_note(run, now) if run.is_running else format_age(quiet_for(run, now))
    return (
        state.server.label,
        sanitize_line(state.experiment_name(run.experiment_id), _NAME_LIMIT),
        run_label(run),
        sanitize_line(run.status, 20),
        started,
        format_duration(None if duration is None else duration.total_seconds()),
        last if run.latest else "—",
        _metrics_text(run),
    )


def _metrics_text(run: Run) -> str:
    """`train_loss=0.412 eval_loss=0.57`: a few latest values, losses first."""
    keys = sorted(run.latest, key=lambda k: ("loss" not in k.casefold(), k))[:METRICS_SHOWN]
    shown = [f"{sanitize_line(k, 40)}={_compact(run.latest[k].value)}" for k in keys]
    more = len(run.latest) - len(keys)
    return " ".join(shown) + (f" (+{more})" if more > 0 else "")


def _compact(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else value_text(value)


def value_text(value: float) -> str:
    """A metric value exactly: the shortest repr that reads back the same; NaN, ±Infinity."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


# --- list --json --------------------------------------------------------------------------------


def list_json(states, rows, powers: Mapping[str, PowerState], now: datetime) -> dict[str, Any]:
    return {
        "at": now.isoformat(),
        "servers": [_server_json(state, powers) for state in states],
        "runs": [run_json(state, run, now) for state, run in rows],
    }


def _server_json(state: ServerRuns, powers: Mapping[str, PowerState]) -> dict[str, Any]:
    return {
        "vm": state.server.vm,
        "service": state.server.service,
        "vm_running": state.vm_running,
        "power": powers.get(state.server.vm, PowerState.UNKNOWN).value,
        "error": f"{state.server.label}: {state.error}" if state.error else None,
        "fetched_at": _iso(state.fetched_at),
        "runs": len(state.runs) if state.vm_running and not state.error else None,
    }


def run_json(state: ServerRuns, run: Run, now: datetime) -> dict[str, Any]:
    duration = run_duration(run, now)
    return {
        "vm": state.server.vm,
        "service": state.server.service,
        "id": run.id,
        "name": run.name,
        "experiment_id": run.experiment_id,
        "experiment": state.experiment_name(run.experiment_id),
        "status": run.status,
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        "duration_s": None if duration is None else round(duration.total_seconds(), 3),
        "last_metric_at": _iso(last_metric_at(run)),
        "user": run.user,
        "params": dict(run.params),
        "tags": dict(run.tags),
        "metrics": {key: point_json(point) for key, point in sorted(run.latest.items())},
    }


def point_json(point: MetricPoint) -> dict[str, Any]:
    """`value` is a JSON number, or null for NaN/±Infinity (JSON has none) with `value_text`
    saying which; `value_text` is null for every finite value."""
    finite = math.isfinite(point.value)
    return {
        "value": point.value if finite else None,
        "value_text": None if finite else value_text(point.value),
        "step": point.step,
        "timestamp": _iso(point.timestamp),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _dumps(payload: Any) -> str:
    """Strict JSON (no NaN), ASCII only: control characters in names arrive as `\\u001b`
    escapes, inert on a terminal and exact for a parser. DEL is ASCII; escape it too."""
    return json.dumps(payload, indent=2, allow_nan=False).replace("\x7f", "\\u007f")


# --- tail ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TailRequest:
    run_id: str
    metrics: tuple[str, ...] | None = None
    """Only these metric keys; None: every metric the run logs."""
    vm: str | None = None
    last: int = 10
    """Points of each metric printed from before the tail began."""
    interval_s: float | None = None
    """Seconds between polls; None: `[training] tail_s`."""


def tail_command(
    runtime: Runtime, request: TailRequest, *, out: TextIO, err: TextIO, environ: Mapping[str, str] = os.environ
) -> int:
    try:
        return asyncio.run(_tail(runtime, request, out, err, environ))
    except KeyboardInterrupt:  # the watch and its clients were closed by the cancellation
        return EXIT_INTERRUPTED


async def _tail(runtime: Runtime, request: TailRequest, out: TextIO, err: TextIO, environ) -> int:
    servers = _chosen(runtime, request.vm, err)
    if isinstance(servers, int):
        return servers
    interval = request.interval_s or runtime.settings.training.tail_s
    async with _fleet(runtime, environ) as (watch, powers):
        up = [s for s in servers if _is_up(runtime, powers, s.vm)]
        for server in (s for s in servers if s not in up):
            _stopped_note(server, powers, err)
        found = await find_run(watch, up, request.run_id, err, interval)
        if found is None:
            return EXIT_FAILED
        server, run = found
        _note(err, f"tailing run {run_label(run)} ({run.status}) on {server.label}; Ctrl+C stops")
        for key in (k for k in request.metrics or () if k not in run.latest):
            _note(err, f"no point of {sanitize_line(key, _NAME_LIMIT)} logged yet: waiting for one")
        printer = TailPrinter(out, last=request.last)
        follower = watch.follow(server, run.id, request.metrics)
        return await follow(follower, printer, interval, err)


async def find_run(
    watch: TrainingWatch, servers: Sequence[TrackingServer], run_id: str, err: TextIO, interval: float = 3.0
) -> tuple[TrackingServer, Run] | None:
    """The first server that knows `run_id`, and the run; None after saying why not. A server
    that cannot answer now is asked again with backoff, as the tail would be."""
    shown_id = sanitize_line(run_id, _NAME_LIMIT)
    if not servers:
        _say(err, f"no mlflow service on a running VM to ask for run {shown_id}")
        return None
    waiting, delay, refused = list(servers), interval, 0
    while waiting:
        retry = []
        for server in waiting:
            try:
                run = await _run_on(watch, server, run_id)
            except TrainingError as error:
                if error.retryable:
                    retry.append(server)
                    _note(err, f"MLflow unreachable, retrying in {delay:.3g} s: {error.message}")
                else:
                    _say(err, error.message)
                    refused += 1
                continue
            if run is not None:
                return server, run
        if retry:
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP_S)
        waiting = retry
    if refused == len(servers):
        _say(err, f"run {shown_id} could not be looked for: no server answered")
    else:
        where = ", ".join(s.label for s in servers)
        _say(err, f"no run {shown_id} on {where}" + (" (not all could be asked)" if refused else ""))
    return None


async def _run_on(watch: TrainingWatch, server: TrackingServer, run_id: str) -> Run | None:
    """The run on `server`, or None when it has no such run; TrainingError if it cannot say."""
    from aiconsole.services.mlflow_client import MlflowError

    client = await watch.client(server)
    try:
        return await client.run(run_id)
    except MlflowError as error:
        if error.status == 404:
            return None
        raise TrainingError(server, error.message, error.retryable) from None


async def follow(follower: RunFollower, printer: TailPrinter, interval: float, err: TextIO) -> int:
    """Poll until the run ends; a failed poll is said and retried with backoff (the follower
    goes on from its last good poll, so nothing is lost or printed twice)."""
    delay, failing = interval, False
    while True:
        try:
            update = await follower.poll()
        except TrainingError as error:
            if not error.retryable:
                _say(err, error.message)
                return EXIT_FAILED
            _note(err, f"MLflow unreachable, retrying in {delay:.3g} s: {error.message}")
            failing = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP_S)
            continue
        if failing:
            _note(err, "MLflow answering again")
            failing, delay = False, interval
        printer.show(update, err)
        if update.done:
            _note(err, f"run {run_label(update.run)} ended: {update.run.status}")
            return EXIT_OK if update.run.status == FINISHED else EXIT_FAILED
        await asyncio.sleep(interval)


class TailPrinter:
    """Points as lines on `out`, flushed: `step  key  value  HH:MM:SS` (local time).
    The first poll shows the last `last` points of each metric; later ones every new point."""

    def __init__(self, out: TextIO, *, last: int = 10) -> None:
        self._out = out
        self._limit = _NAME_LIMIT if is_terminal(out) else _PIPED_NAME_LIMIT
        self._last = max(0, last)
        self._started = False
        self._newest: dict[str, tuple[datetime, int]] = {}
        self._width = 10

    def show(self, update: RunUpdate, err: TextIO) -> None:
        points: list[MetricPoint] = []
        for key, tail in update.metrics.items():
            new = list(tail.points)
            if tail.reset:  # the server's history was rewritten: read again, print only what is newer
                _note(err, f"the history of {sanitize_line(key, self._limit)} changed on the server; read again")
                new = [p for p in new if (p.timestamp, p.step) > self._newest.get(key, (p.timestamp, -1))]
            elif not self._started:
                new = new[-self._last :] if self._last else []
            if tail.points:
                last = tail.points[-1]
                self._newest[key] = (last.timestamp, last.step)
            points += new
        self._started = True
        for point in sorted(points, key=lambda p: (p.step, p.timestamp, p.key)):
            self._line(point)
        self._out.flush()

    def _line(self, point: MetricPoint) -> None:
        key = sanitize_line(point.key, self._limit)
        self._width = max(self._width, len(key))
        when = point.timestamp.astimezone().strftime("%H:%M:%S")
        self._out.write(f"{point.step:>7}  {key:<{self._width}}  {value_text(point.value):<12}  {when}\n")
        self._out.flush()
