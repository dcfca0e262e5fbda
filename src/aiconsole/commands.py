"""The scriptable commands (`status`, `vm start`, `vm stop`): the TUI's core, no TUI.

Output that reaches a terminal is built from sanitised snapshot fields only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import TextIO

from aiconsole.assembly import Runtime
from aiconsole.commands_training import confirm_guarded_stop, stop_check
from aiconsole.domain.events import EventKind
from aiconsole.domain.fleet import FleetSnapshot, VmSnapshot
from aiconsole.domain.format import format_duration, format_percent, format_usd
from aiconsole.domain.power import PowerState
from aiconsole.domain.telemetry import TelemetrySnapshot
from aiconsole.services.fleet import UnknownVmError
from aiconsole.services.providers.base import ProviderError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def status_command(runtime: Runtime, *, as_json: bool, out: TextIO) -> int:
    snapshot, telemetry = asyncio.run(_fresh_snapshot(runtime, with_telemetry=as_json))
    out.write(json.dumps(snapshot_json(snapshot, telemetry), indent=2) + "\n" if as_json else status_table(snapshot))
    return EXIT_OK


async def _fresh_snapshot(runtime: Runtime, *, with_telemetry: bool) -> tuple[FleetSnapshot, TelemetrySnapshot | None]:
    """The fleet now, and (for JSON) one telemetry reading of its running VMs."""
    from aiconsole.commands_telemetry import read_telemetry

    monitor = runtime.monitor
    try:
        await monitor.open()
        await monitor.refresh()
        fleet = monitor.snapshot()
        telemetry = await read_telemetry(runtime, fleet) if with_telemetry else None
        return fleet, telemetry
    finally:
        await monitor.close()


def _money(amount: float) -> float:
    return round(amount, 4)


def vm_json(vm: VmSnapshot) -> dict:
    return {
        "name": vm.name,
        "provider": vm.provider,
        "power": vm.power.value,
        "hourly_usd": vm.hourly_usd,
        "cost_today_usd": _money(vm.cost_today_usd),
        "cost_month_usd": _money(vm.cost_month_usd),
        "cost_run_usd": _money(vm.cost_run_usd),
        "idle_seconds": None if vm.idle.idle_seconds is None else round(vm.idle.idle_seconds, 1),
        "idle_stop_in_seconds": None if vm.idle.remaining_seconds is None else round(vm.idle.remaining_seconds, 1),
        "busy_reasons": list(vm.idle.busy_reasons),
        "label": vm.label,
        "raw_state": vm.raw_state,
        "error": vm.error or None,
        "stale": vm.stale,
        "checked_at": vm.checked_at.isoformat() if vm.checked_at else None,
    }


def snapshot_json(snapshot: FleetSnapshot, telemetry: TelemetrySnapshot | None = None) -> dict:
    from aiconsole.commands_telemetry import gpus_json, services_json, telemetry_state_json

    budget = snapshot.budget
    vms = []
    for vm in snapshot.vms:
        host = telemetry.host(vm.name) if telemetry is not None else None
        vms.append(
            vm_json(vm)
            | {"gpus": gpus_json(host), "services": services_json(host), "telemetry": telemetry_state_json(host)}
        )
    return {
        "at": snapshot.at.isoformat(),
        "vms": vms,
        "budget": {
            "daily_usd": budget.daily_usd,
            "monthly_usd": budget.monthly_usd,
            "spent_today_usd": _money(budget.spent_today_usd),
            "spent_month_usd": _money(budget.spent_month_usd),
            "day_level": budget.day_level.value,
            "month_level": budget.month_level.value,
        },
    }


_COLUMNS = ("VM", "PROVIDER", "POWER", "$/H", "TODAY", "MONTH", "IDLE", "STOP IN")


def status_table(snapshot: FleetSnapshot) -> str:
    rows = [_COLUMNS] + [_vm_row(vm) for vm in snapshot.vms]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    for vm in snapshot.vms:
        if vm.error:
            lines.append(f"! {vm.name}: {vm.error}")
    b = snapshot.budget
    lines.append(
        f"budget: today {format_usd(b.spent_today_usd)} of {format_usd(b.daily_usd)} "
        f"({format_percent(b.spent_today_usd, b.daily_usd)}, {b.day_level.value}) · "
        f"month {format_usd(b.spent_month_usd)} of {format_usd(b.monthly_usd)} "
        f"({format_percent(b.spent_month_usd, b.monthly_usd)}, {b.month_level.value})"
    )
    return "\n".join(lines) + "\n"


def _vm_row(vm: VmSnapshot) -> tuple[str, ...]:
    power = vm.power.value + (" (stale)" if vm.stale and vm.checked_at else "")
    stop_in = "busy" if vm.idle.busy_reasons else format_duration(vm.idle.remaining_seconds)
    return (
        vm.name,
        vm.provider,
        power,
        f"{vm.hourly_usd:.2f}",
        format_usd(vm.cost_today_usd),
        format_usd(vm.cost_month_usd),
        format_duration(vm.idle.idle_seconds),
        stop_in,
    )


@dataclass(frozen=True)
class PowerRequest:
    name: str
    action: str
    """"start" or "stop"."""
    assume_yes: bool = False
    force: bool = False
    """Stop even with a RUNNING MLflow run on the VM (`--yes` alone is not enough then)."""


def power_command(
    runtime: Runtime, request: PowerRequest, *, out: TextIO, err: TextIO,
    ask: Callable[[str], str] = input, environ: Mapping[str, str] = os.environ,
) -> int:
    return asyncio.run(_power(runtime, request, out, err, ask, environ))


async def _power(runtime: Runtime, request: PowerRequest, out: TextIO, err: TextIO, ask, environ) -> int:
    name, action = request.name, request.action
    monitor = runtime.monitor
    try:
        await monitor.open()
        await monitor.refresh(name)
        vm = _find(monitor.snapshot(), name)
        problem = _refusal(vm, action, runtime)
        if problem:
            print(f"aiconsole: {problem[1]}", file=err)
            return problem[0]
        if vm.power is (PowerState.RUNNING if action == "start" else PowerState.STOPPED):
            print(f"{name} is already {vm.power.value}.", file=out)
            return EXIT_OK
        journal = (EventKind.START, "aiconsole vm start") if action == "start" else (EventKind.STOP, "aiconsole vm stop")
        if action == "stop":
            check = await stop_check(runtime, name, environ)
            if not check.clear:
                now = monitor.snapshot().at
                warnings = "; ".join(check.warnings(now))
                if not await confirm_guarded_stop(vm, check, force=request.force, out=out, err=err, ask=ask, now=now):
                    monitor.record_event(name, EventKind.STOP_REFUSED, f"aiconsole vm stop without --force: {warnings}")
                    return EXIT_FAILED
                how = "--force" if request.force else "confirmed twice"
                journal = (EventKind.FORCED_STOP, f"aiconsole vm stop ({how}) over: {warnings}")
            elif not (request.assume_yes or request.force) and not await _confirm_stop(vm, out, err, ask):
                return EXIT_USAGE if not sys.stdin.isatty() else EXIT_FAILED
        return await _carry_out(runtime, vm, action, journal, out, err)
    except UnknownVmError as error:
        print(f"aiconsole: {error}", file=err)
        return EXIT_USAGE
    finally:
        await monitor.close()


def _find(snapshot: FleetSnapshot, name: str) -> VmSnapshot:
    for vm in snapshot.vms:
        if vm.name == name:
            return vm
    raise UnknownVmError(name)


def _refusal(vm: VmSnapshot, action: str, runtime: Runtime) -> tuple[int, str] | None:
    if runtime.monitor.read_only:
        return EXIT_USAGE, f"read-only: refusing to {action} {vm.name}"
    if not vm.can_power:
        return EXIT_FAILED, f"{vm.name} is always on ({vm.provider}): it has no {action}"
    if vm.error and vm.checked_at is None:
        return EXIT_FAILED, f"{vm.name}: {vm.error}"
    return None


async def _confirm_stop(vm: VmSnapshot, out: TextIO, err: TextIO, ask) -> bool:
    if not sys.stdin.isatty():
        print(f"aiconsole: not stopping {vm.name} without --yes (no terminal to ask on)", file=err)
        return False
    question = (
        f"Stop {vm.name}? It costs {format_usd(vm.hourly_usd)}/h while running "
        f"({format_usd(vm.cost_today_usd)} today). [y/N] "
    )
    answer = await asyncio.to_thread(ask, question)
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("Not stopped.", file=out)
    return False


async def _carry_out(
    runtime: Runtime, vm: VmSnapshot, action: str, journal: tuple[str, str], out: TextIO, err: TextIO
) -> int:
    """Start/stop, printing each power state as the poller sees it."""
    monitor = runtime.monitor
    doing = {"start": "starting", "stop": "stopping"}[action]
    print(f"{doing} {vm.name} ({format_usd(vm.hourly_usd)}/h): {vm.power.value}", file=out, flush=True)
    poller = asyncio.create_task(monitor.run())
    printer = asyncio.create_task(_print_transitions(monitor, vm.name, vm.power, out))
    try:
        kind, reason = journal
        if action == "start":
            await monitor.start_vm(vm.name, reason=reason)
        else:  # checked (and confirmed twice if need be) above: nothing to guard here
            await monitor.stop_vm(vm.name, force=True, reason=reason, kind=kind)
    except ProviderError as error:
        print(f"aiconsole: {action} {vm.name} failed: {error.message}", file=err)
        return EXIT_FAILED
    finally:
        for task in (printer, poller):
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    final = _find(monitor.snapshot(), vm.name)
    print(f"{vm.name} is {final.power.value}.", file=out)
    return EXIT_OK


async def _print_transitions(monitor, name: str, last: PowerState, out: TextIO) -> None:
    while True:
        await asyncio.sleep(0.25)
        power = _find(monitor.snapshot(), name).power
        if power is not last:
            print(f"  → {power.value}", file=out, flush=True)
            last = power
