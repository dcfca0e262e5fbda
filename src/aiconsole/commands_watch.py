"""`aiconsole watch`: the money guard without the TUI, for a systemd service on an always-on box.

It runs what the console runs in the background, and nothing it draws: the fleet monitor,
the GPU feeds over SSH, the MLflow watch, the SSH-session and Ollama keep-alive probe, the
dead-man's switch heartbeats and the orphan scan, all feeding `MoneyGuard` (role "watch",
which outranks a console: when both run, the watch enforces and the console says so).
What it does and why is printed one line at a time (journald keeps it) and journaled in
the ledger like any stop. SIGTERM and SIGINT end it cleanly: the lock is given back, so a
console still open takes over at once. docs/configuration.md gives the systemd unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from aiconsole.domain.sanitize import sanitize_line

if TYPE_CHECKING:
    from aiconsole.assembly import Runtime
    from aiconsole.services.money_guard import MoneyNotice

EXIT_OK = 0
STATUS_EVERY_S = 600.0
"""A line saying who enforces and what the fleet costs, this often (and at start)."""


class WatchLog:
    """The watch's output: one timestamped line per notice, flushed at once (journald)."""

    def __init__(self, out: TextIO, tz, clock: Callable[[], datetime]) -> None:
        self.out, self.tz, self.clock = out, tz, clock

    def line(self, text: str, severity: str = "info") -> None:
        stamp = self.clock().astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {severity}: {sanitize_line(text, 400)}", file=self.out, flush=True)

    def notice(self, notice: MoneyNotice) -> None:
        self.line(notice.text, {"information": "info"}.get(notice.severity, notice.severity))


async def run_watch(
    runtime: Runtime,
    out: TextIO,
    *,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Enforce until SIGTERM/SIGINT (or for `duration_s`, for tests and the benchmark)."""
    from aiconsole.assembly import build_money_guard

    monitor, settings = runtime.monitor, runtime.settings
    log = WatchLog(out, monitor.tz, monitor.now)
    guard = build_money_guard(runtime, role="watch", notify=log.notice, warmup_s=warmup_s)
    await monitor.open()
    sources = await asyncio.to_thread(_Sources.build, runtime, environ)
    monitor.set_stop_guard(sources.stop_check)
    log.line(f"watching {len(settings.vm)} VMs from {runtime.source} as {guard.me}")
    stop = asyncio.Event()
    _on_signals(stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job, name=name) for name, job in sources.jobs(guard)]
            tasks.append(group.create_task(guard.run(settings.budget.enforce_step_s), name="money-guard"))
            first_status_s = settings.budget.enforce_step_s + 1.0
            tasks.append(group.create_task(_status_lines(guard, log, first_status_s), name="watch-status"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
            for task in tasks:
                task.cancel()
    finally:
        guard.release()
        await sources.aclose()
        await monitor.close()
    log.line("stopped; the money guard is released")
    return EXIT_OK


async def _status_lines(guard, log: WatchLog, first_s: float) -> None:
    """Who enforces and what the fleet costs: just after the first step, then every 10 minutes."""
    await asyncio.sleep(first_s)
    while True:
        snapshot = guard.monitor.snapshot()
        budget = snapshot.budget
        log.line(
            f"{guard.holder_text(snapshot.at)}; today ${budget.spent_today_usd:.2f} of ${budget.daily_usd:.2f}, "
            f"month ${budget.spent_month_usd:.2f} of ${budget.monthly_usd:.2f}"
        )
        await asyncio.sleep(STATUS_EVERY_S)


def _on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop)


class _Sources:
    """The activity sources the console runs too, built in a thread (asyncssh imports slowly)."""

    def __init__(self, runtime, hub, training, probe, heartbeat, orphans, reports) -> None:
        self.runtime, self.hub, self.training, self.probe = runtime, hub, training, probe
        self.heartbeat, self.orphans, self.reports = heartbeat, orphans, reports

    @classmethod
    def build(cls, runtime: Runtime, environ: Mapping[str, str]) -> _Sources:
        from aiconsole.assembly import build_training
        from aiconsole.services.activity_probe import ActivityProbe
        from aiconsole.services.activity_reports import ActivityReports
        from aiconsole.services.guard_heartbeat import build_guard_heartbeat

        settings, monitor = runtime.settings, runtime.monitor
        reports = ActivityReports(monitor, settings)
        hub = runtime.build_telemetry()
        training = build_training(settings, hub.endpoints, on_activity=reports.mlflow, environ=environ)
        probe = ActivityProbe(settings, hub.pool, hub.endpoints, reports.probe, tz=monitor.tz)
        heartbeat = build_guard_heartbeat(settings, hub.pool)
        orphans = runtime.build_orphan_scan()
        return cls(runtime, hub, training, probe, heartbeat, orphans, reports)

    async def stop_check(self, vm: str):
        return await self.training.stop_check(vm)

    def jobs(self, guard) -> list[tuple[str, Awaitable[None]]]:
        powers = self.runtime.monitor.powers
        jobs: list[tuple[str, Awaitable[None]]] = [
            ("fleet-monitor", self.runtime.monitor.run()),
            # No service health checks: nothing in the watch shows them.
            ("telemetry", self.hub.run(powers, on_gpu=self.reports.gpu, health_checks=False)),
            ("activity-probe", self.probe.run(powers)),
            ("guard-heartbeat", self.heartbeat.run(powers)),
            ("orphan-scan", self.orphans.run(guard.orphans_found)),
        ]
        if self.training.servers:
            jobs.append(("training-watch", self.training.run(powers)))
        return jobs

    async def aclose(self) -> None:
        for closing in (self.training.aclose, self.probe.aclose, self.hub.aclose):
            with contextlib.suppress(Exception):
                await closing()
