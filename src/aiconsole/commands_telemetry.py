"""The CLI's view of live telemetry: one reading for `status --json`, and `aiconsole gpus`.

A one-shot reading connects to every running VM with an `ssh` target, waits for its
first nvidia-smi round (or a clear state: no GPU, refused key, error) and checks its
services once. Untrusted text reaching a terminal is sanitised already by the parser
and the health checks.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

from aiconsole.assembly import Runtime
from aiconsole.domain.fleet import FleetSnapshot
from aiconsole.domain.format import format_age
from aiconsole.domain.telemetry import FeedState, HostTelemetry, TelemetrySnapshot

_SETTLED = {FeedState.LIVE, FeedState.NO_GPU, FeedState.ERROR, FeedState.REFUSED, FeedState.OFF}


async def read_telemetry(runtime: Runtime, fleet: FleetSnapshot, timeout_s: float = 8.0) -> TelemetrySnapshot:
    """One reading of every running VM's GPUs and services (waits at most `timeout_s`)."""
    hub = await asyncio.to_thread(runtime.build_telemetry)
    try:
        hub.follow(fleet.powers())
        try:
            async with asyncio.timeout(timeout_s):
                while not all(host.state in _SETTLED for host in hub.snapshot().hosts):
                    await asyncio.sleep(0.1)
        except TimeoutError:
            pass  # what has not answered by now shows as connecting or stale: said, not hidden
        await hub.check_services()
        return hub.snapshot()
    finally:
        await hub.aclose()


def gpus_json(host: HostTelemetry | None) -> list[dict]:
    if host is None:
        return []
    return [
        {
            "index": view.sample.index,
            "name": view.sample.name,
            "uuid": view.sample.uuid,
            "temp_c": view.sample.temp_c,
            "mem_used_mib": view.sample.mem_used_mib,
            "mem_total_mib": view.sample.mem_total_mib,
            "util_pct": view.sample.util_pct,
            "power_w": view.sample.power_w,
            "temp_level": view.temp_level.value,
            "mem_level": view.mem_level.value,
            "stale": view.stale,
            "age_s": round(view.age_s, 1),
        }
        for view in host.gpus
    ]


def services_json(host: HostTelemetry | None) -> list[dict]:
    if host is None:
        return []
    return [
        {
            "name": health.name,
            "kind": health.kind,
            "healthy": health.healthy,
            "state": health.state.value,
            "latency_ms": None if health.latency_ms is None else round(health.latency_ms, 1),
            "version": health.version or None,
            "error": health.error or None,
            "url": health.url_shown,
        }
        for health in host.services
    ]


def telemetry_state_json(host: HostTelemetry | None) -> dict:
    if host is None:
        return {"state": FeedState.OFF.value, "message": None}
    return {"state": host.state.value, "message": host.message or None}


_COLUMNS = ("HOST", "GPU", "NAME", "TEMP", "VRAM", "UTIL", "POWER", "")


def gpus_table(snapshot: TelemetrySnapshot) -> str:
    """A compact table: one row per GPU, one line per host without live GPUs."""
    rows: list[tuple[str, ...]] = [_COLUMNS]
    notes: list[str] = []
    for host in snapshot.hosts:
        for view in host.gpus:
            rows.append(_gpu_row(host.host, view))
        if not host.gpus and host.state is not FeedState.OFF:
            notes.append(f"{host.host}: {host.state.value}" + (f": {host.message}" if host.message else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + notes) + "\n"


def _gpu_row(host: str, view) -> tuple[str, ...]:
    sample = view.sample
    temp = "—" if sample.temp_c is None else f"{sample.temp_c:.0f}°C"
    if sample.mem_used_mib is None or sample.mem_total_mib is None:
        vram = "—"
    else:
        vram = f"{sample.mem_used_mib / 1024:.1f}/{sample.mem_total_mib / 1024:.0f}G"
    util = "—" if sample.util_pct is None else f"{sample.util_pct:.0f}%"
    power = "—" if sample.power_w is None else f"{sample.power_w:.0f}W"
    marks = [level.value for level in (view.temp_level, view.mem_level) if level.value != "ok"]
    flag = f"stale {format_age(view.age_s)}" if view.stale else ", ".join(marks)
    return (host, str(sample.index), sample.name, temp, vram, util, power, flag)


def gpus_command(runtime: Runtime, *, watch: bool, out: TextIO) -> int:
    return asyncio.run(_gpus(runtime, watch, out))


async def _gpus(runtime: Runtime, watch: bool, out: TextIO) -> int:
    monitor = runtime.monitor
    try:
        await monitor.open()
        await monitor.refresh()
        if not watch:
            out.write(gpus_table(await read_telemetry(runtime, monitor.snapshot())))
            return 0
        return await _watch(runtime, out)
    finally:
        await monitor.close()


async def _watch(runtime: Runtime, out: TextIO) -> int:
    """Until interrupted: the table again every interval (the screen cleared on a terminal)."""
    hub = await asyncio.to_thread(runtime.build_telemetry)
    monitor = runtime.monitor
    poller = asyncio.create_task(monitor.run())
    runner = asyncio.create_task(hub.run(monitor.powers))
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    try:
        while True:
            await asyncio.sleep(runtime.settings.gpu.interval_s)
            out.write(clear + gpus_table(hub.snapshot()) + ("" if clear else "\n"))
            out.flush()
    finally:
        for task in (runner, poller):
            task.cancel()
        await asyncio.gather(runner, poller, return_exceptions=True)
        await hub.aclose()
