"""`aiconsole vm guard install|status|remove NAME`: the on-VM dead-man's switch from the CLI.

Each command checks the VM with its provider first (a stopped VM cannot be reached), then
opens an SSH pool of its own for the one VM. Install and remove are journaled as `guard`
events, failures too, so the journal tells what was tried on the VM and what came of it.
Everything printed that came from the VM is sanitised (the domain's parser and `GuardError`
already did; printing sanitises again, cheaply, so a later change cannot forget it).

Exit status: 0 done (for status: read, installed or not), 1 the VM or SSH failed, or the VM
is stopped; 2 bad usage (unknown VM, no `ssh` target, `--read-only` for install/remove).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TextIO

from aiconsole.assembly import Runtime
from aiconsole.domain.events import Actor, EventKind
from aiconsole.domain.format import format_age, format_duration
from aiconsole.domain.guard import GuardLayout, GuardStatus
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ACTIONS = ("install", "status", "remove")


@dataclass(frozen=True)
class GuardRequest:
    action: str
    """"install", "status" or "remove"."""
    name: str
    as_json: bool = False
    """Status only: print JSON."""


def guard_command(
    runtime: Runtime, request: GuardRequest, *, out: TextIO, err: TextIO, layout: GuardLayout | None = None
) -> int:
    """Run one `vm guard` action. `layout`: where the guard lives on the VM (tests re-root it)."""
    return asyncio.run(_guard(runtime, request, out, err, layout))


def _usage_problem(runtime: Runtime, request: GuardRequest) -> str | None:
    vm = runtime.settings.vm_named(request.name)
    if request.action not in ACTIONS:
        return f"unknown guard action {request.action!r} (install, status or remove)"
    if vm is None:
        return f"no VM named {request.name!r} in the config"
    if vm.ssh is None:
        return f"{vm.name} has no ssh target in the config: the guard is installed and read over SSH"
    if request.action != "status" and runtime.monitor.read_only:
        verb = "install the guard on" if request.action == "install" else "remove the guard from"
        return f"read-only: refusing to {verb} {vm.name}"
    return None


async def _guard(runtime: Runtime, request: GuardRequest, out: TextIO, err: TextIO, layout) -> int:
    problem = _usage_problem(runtime, request)
    if problem:
        print(f"aiconsole: {sanitize_line(problem)}", file=err)
        return EXIT_USAGE
    from aiconsole.services.guard_remote import GuardError, build_guard_remote

    name, monitor = request.name, runtime.monitor
    try:
        await monitor.open()
        await monitor.refresh(name)
        power = monitor.powers().get(name, PowerState.UNKNOWN)
        if power is PowerState.STOPPED:
            print(f"aiconsole: {name} is stopped: start it first (aiconsole vm start {name})", file=err)
            return EXIT_FAILED
        target = str(runtime.settings.vm_named(name).ssh)
        pool = runtime.build_ssh_pool()
        try:
            remote = build_guard_remote(runtime.settings, pool, layout=layout)
            return await _act(runtime, remote, request, target, out, err)
        except GuardError as error:
            if request.action != "status":
                monitor.record_event(name, EventKind.GUARD, f"guard {request.action} failed: {error.message}")
            print(f"aiconsole: {sanitize_line(error.message)}", file=err)
            return EXIT_FAILED
        finally:
            await pool.aclose()
    finally:
        await monitor.close()


async def _act(runtime: Runtime, remote, request: GuardRequest, target: str, out: TextIO, err: TextIO) -> int:
    name, config = request.name, runtime.settings.guard
    if request.action == "status":
        status = await remote.status(name, target)
        text = json.dumps(status_json(name, status), indent=2) if request.as_json else status_text(name, status)
        print(text, file=out)
        return EXIT_OK
    if request.action == "install":
        print(f"installing the guard on {name} ({sanitize_line(target)})…", file=err, flush=True)
        status = await remote.install(name, target)
        rule = (
            f"powers off after {config.silence_minutes:g} min without a heartbeat, GPU at most "
            f"{config.busy_util_pct}% busy{'' if config.require_gpu else ' (or none)'}, no session"
            + (" (dry run: only logs)" if config.dry_run else "")
        )
        runtime.monitor.record_event(name, EventKind.GUARD, f"guard installed over SSH: {rule}", Actor.OPERATOR)
        print(status_text(name, status), file=out)
        if not status.armed:
            print(f"aiconsole: the guard's timer on {name} is {status.timer_state}, not active", file=err)
            return EXIT_FAILED
        print(
            f"{name} {rule}. Heartbeats come from the console and `aiconsole watch` while one runs "
            f"(every {config.heartbeat_s:g}s).",
            file=out,
        )
        return EXIT_OK
    status = await remote.remove(name, target)
    runtime.monitor.record_event(name, EventKind.GUARD, "guard removed over SSH", Actor.OPERATOR)
    if status.installed is not False:
        print(status_text(name, status), file=out)
        print(f"aiconsole: the guard on {name} still reads as installed", file=err)
        return EXIT_FAILED
    print(f"guard removed from {name}.", file=out)
    return EXIT_OK


def _state_word(status: GuardStatus) -> str:
    if status.installed is None:
        return "state unknown (the VM's answer could not be read)"
    if status.installed is False:
        return "not installed"
    word = "armed" if status.armed else f"installed, timer {status.timer_state}"
    return word + (" (dry run: only logs)" if status.dry_run else "")


def status_text(name: str, status: GuardStatus) -> str:
    """A few aligned lines; every value from the VM sanitised (again) here."""
    lines = [f"{sanitize_line(name, 60)}: guard {sanitize_line(_state_word(status), 120)}"]
    if status.installed:
        limit = "unknown" if status.max_silence_s is None else format_duration(status.max_silence_s)
        lines.append(f"  power-off after: {limit} without a heartbeat, if the GPU is idle and nobody is logged in")
    if status.installed or status.heartbeat_age_s is not None:
        lines.append(f"  last heartbeat:  {format_age(status.heartbeat_age_s)}")
    if status.last_decision:
        lines.append(f"  last decision:   {sanitize_line(status.last_decision, 300)}")
    return "\n".join(lines)


def status_json(name: str, status: GuardStatus) -> dict:
    return {
        "vm": name,
        "installed": status.installed,
        "armed": status.armed,
        "timer": status.timer_state,
        "max_silence_s": status.max_silence_s,
        "dry_run": status.dry_run,
        "heartbeat_age_s": status.heartbeat_age_s,
        "last_decision": status.last_decision,
    }
