"""`aiconsole models list|pull|rm`: the model library from a shell, on the same core as the tab.

Only VMs that are running (or always on) are contacted; Ollama is reached where the
config says (through the VM's SSH forward for `via_ssh`). Server text (model names,
errors) is sanitised before it reaches a terminal. Exit status 0 on success, 1 when the
server refused or failed (its message on stderr), 2 for a usage problem (unknown VM, bad
name, read-only, no terminal to confirm on).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TextIO

from aiconsole.assembly import Runtime, build_model_library
from aiconsole.domain.format import format_age, format_duration
from aiconsole.domain.models import (
    LoadedModel,
    PullState,
    PullStatus,
    PullTracker,
    format_bytes,
    model_name_problem,
    same_model,
)
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_REACHABLE = {PowerState.RUNNING}
PROGRESS_EVERY_S = 0.25
"""A terminal's progress line is redrawn at most 4 times a second, however fast events come."""
PIPED_EVERY_S = 5.0
"""Piped output: one line per status change, and a progress line at most this often."""


@asynccontextmanager
async def _library(runtime: Runtime):
    """The monitor (for power states), an SSH pool and the library; all closed after."""
    from aiconsole.services.endpoints import Endpoints

    monitor = runtime.monitor
    await monitor.open()
    pool = None
    library = None
    try:
        await monitor.refresh()
        pool = await asyncio.to_thread(runtime.build_ssh_pool)
        endpoints = Endpoints(pool)
        for vm in runtime.settings.vm:
            endpoints.add_vm(vm)
        library = build_model_library(runtime.settings, endpoints, pool)
        yield library, monitor.powers()
    finally:
        if library is not None:
            await library.aclose()
        if pool is not None:
            await pool.aclose()
        await monitor.close()


def _refusal(runtime: Runtime, vm: str, model: str, doing: str) -> str | None:
    """Why a change (`doing`: "pull", "delete") is refused before anything is asked: a name
    Ollama would refuse, or read-only mode; None when it may go ahead."""
    if problem := model_name_problem(model):
        return f"invalid model name {model!r}: {problem}"
    if runtime.monitor.read_only:
        return f"read-only: refusing to {doing} {model} on {vm}"
    return None


def _unreachable(runtime: Runtime, powers: dict[str, PowerState], vm: str) -> str | None:
    """Why `vm`'s Ollama cannot be asked: an unknown VM, one with no Ollama, one not running."""
    config = runtime.settings.vm_named(vm)
    if config is None:
        return f"no VM named {vm!r} in the config"
    if not any(service.kind == "ollama" for service in config.service):
        return f"{vm} has no ollama service in the config"
    power = powers.get(vm, PowerState.UNKNOWN)
    if power not in _REACHABLE and config.provider != "static":
        return f"{vm} is {power.value}: start it first (aiconsole vm start {vm})"
    return None


def _usage(err: TextIO, problem: str) -> int:
    print(f"aiconsole: {problem}", file=err)
    return EXIT_USAGE


# --- list --------------------------------------------------------------------------------------


def list_command(runtime: Runtime, vm: str | None, *, as_json: bool, out: TextIO, err: TextIO) -> int:
    return asyncio.run(_list(runtime, vm, as_json, out, err))


async def _list(runtime: Runtime, only: str | None, as_json: bool, out: TextIO, err: TextIO) -> int:
    if only is not None and runtime.settings.vm_named(only) is None:
        return _usage(err, f"no VM named {only!r} in the config")
    async with _library(runtime) as (library, powers):
        servers = [s for s in library.servers if only in (None, s.vm)]
        asked = [s for s in servers if _is_up(runtime, powers, s.vm)]
        await asyncio.gather(*(library.refresh(vm) for vm in sorted({s.vm for s in asked})))
        snapshot = library.snapshot()
    rows = [state for state in snapshot.servers if state.server in servers]
    if as_json:
        json.dump({"at": snapshot.at.isoformat(), "servers": [_server_json(r, powers, runtime, snapshot.at) for r in rows]},
                  out, indent=2)  # fmt: skip
        out.write("\n")
    else:
        out.write(_list_text(rows, powers, runtime, snapshot.at))
    failed = any(r.error for r in rows)
    return EXIT_FAILED if failed else EXIT_OK


def _is_up(runtime: Runtime, powers: dict[str, PowerState], vm: str) -> bool:
    config = runtime.settings.vm_named(vm)
    return powers.get(vm) in _REACHABLE or (config is not None and config.provider == "static")


def _server_json(state, powers, runtime: Runtime, now: datetime) -> dict[str, Any]:
    server = state.server
    up = _is_up(runtime, powers, server.vm)
    return {
        "vm": server.vm,
        "service": server.service,
        "kind": server.kind,
        "power": powers.get(server.vm, PowerState.UNKNOWN).value,
        "contacted": up,
        "error": state.error or None,
        "stale": state.stale(now),
        "fetched_at": state.fetched_at.isoformat() if state.fetched_at else None,
        "disk": None if state.disk is None else {
            "total_bytes": state.disk.total_bytes, "used_bytes": state.disk.used_bytes,
            "free_bytes": state.disk.free_bytes, "models_bytes": state.models_bytes,
        },
        "models": [
            {
                "name": model.name,
                "size_bytes": model.size_bytes,
                "family": model.family or None,
                "parameter_size": model.parameter_size or None,
                "quantization": model.quantization or None,
                "modified_at": model.modified_at.isoformat() if model.modified_at else None,
                "digest": model.digest or None,
                "loaded": _loaded_json(state.is_loaded(model.name), now),
            }
            for model in state.installed
        ],
        "listed": list(state.listed),
    }  # fmt: skip


def _loaded_json(loaded: LoadedModel | None, now: datetime) -> dict[str, Any] | None:
    if loaded is None:
        return None
    return {
        "size_bytes": loaded.size_bytes,
        "vram_bytes": loaded.vram_bytes,
        "gpu_share": round(loaded.gpu_share, 3),
        "context_length": loaded.context_length,
        "expires_in_s": None if loaded.expires_at is None else round(loaded.keep_alive_left_s(now) or 0.0, 1),
    }


def _list_text(rows, powers, runtime: Runtime, now: datetime) -> str:
    lines: list[str] = []
    for state in rows:
        server = state.server
        head = f"{server.vm} · {server.service} ({server.kind})"
        if not _is_up(runtime, powers, server.vm):
            lines.append(f"{head}: {powers.get(server.vm, PowerState.UNKNOWN).value}, not asked")
            continue
        if state.error:
            stale = f" (showing what was read {format_age((now - state.fetched_at).total_seconds())})" \
                if state.fetched_at else ""  # fmt: skip
            lines.append(f"{head}: {sanitize_line(state.error)}{stale}")
            if state.fetched_at is None:
                continue
        if server.kind != "ollama":
            lines.append(f"{head}, read-only: " + (", ".join(sanitize_line(m) for m in state.listed) or "no models"))
            continue
        disk = ""
        if state.disk is not None:
            disk = (f"  models {format_bytes(state.models_bytes)}, disk {format_bytes(state.disk.free_bytes)} free"
                    f" of {format_bytes(state.disk.total_bytes)}")  # fmt: skip
        lines.append(head + disk)
        table = [("NAME", "SIZE", "PARAMS", "QUANT", "FAMILY", "MODIFIED", "LOADED")]
        for model in state.installed:
            modified = "—" if model.modified_at is None else format_age((now - model.modified_at).total_seconds())
            table.append((
                sanitize_line(model.name), format_bytes(model.size_bytes), sanitize_line(model.parameter_size) or "—",
                sanitize_line(model.quantization) or "—", sanitize_line(model.family) or "—", modified,
                _loaded_text(state.is_loaded(model.name), now),
            ))  # fmt: skip
        if len(table) == 1:
            lines.append("  no models installed")
            continue
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    return "\n".join(lines) + "\n"


def _loaded_text(loaded: LoadedModel | None, now: datetime) -> str:
    """As `ollama ps` shows it: `5.4 GB 100% GPU, 4m 12s left`."""
    if loaded is None:
        return ""
    left = loaded.keep_alive_left_s(now)
    until = "kept loaded" if left is None else f"{format_duration(left)} left"
    return f"{format_bytes(loaded.size_bytes)} {loaded.processor}, {until}"


# --- pull ---------------------------------------------------------------------------------------


def pull_command(runtime: Runtime, vm: str, model: str, *, out: TextIO, err: TextIO) -> int:
    return asyncio.run(_pull(runtime, vm, model, out, err))


async def _pull(runtime: Runtime, vm: str, model: str, out: TextIO, err: TextIO) -> int:
    if problem := _refusal(runtime, vm, model, "pull"):
        return _usage(err, problem)
    async with _library(runtime) as (library, powers):
        if problem := _unreachable(runtime, powers, vm):
            return _usage(err, problem)
        from aiconsole.services.ollama_models import ModelError

        server = next(s for s in library.servers if s.vm == vm and s.kind == "ollama")
        try:
            client = await library.client_for(server)
        except ModelError as exc:
            print(f"aiconsole: pull of {model} on {vm} failed: {exc}", file=err)
            return EXIT_FAILED
        return await pull_with_progress(client, model, out, err, hourly_usd=server.hourly_usd, vm=vm)


async def pull_with_progress(
    client, model: str, out: TextIO, err: TextIO, *, hourly_usd: float = 0.0, vm: str = "",
    clock: Callable[[], float] = time.monotonic, tracker: PullTracker | None = None,
) -> int:  # fmt: skip
    """Read `client.pulling(model)`, showing progress: a line redrawn in place on a terminal
    (at most 4 times a second), plain lines when piped. Returns the exit status; `tracker`
    (made here when None) holds the pull's status afterwards."""
    from aiconsole.services.ollama_models import ModelError

    tracker = tracker or PullTracker(model, clock(), hourly_usd)
    show = _TerminalProgress(out) if out.isatty() else _PipedProgress(out)
    where = f" on {vm}" if vm else ""
    try:
        async with client.pulling(model, tracker.events) as parts:
            async for part in parts:  # the hot loop: tens of thousands of events a second
                now = clock()
                tracker.feed(now, part.status or "", part.digest, part.total, part.completed)
                show.update(tracker, now)
        if not tracker.end(clock()):
            raise ModelError(f"pulling {model}: {tracker.status().error}", retryable=True)
    except ModelError as exc:
        tracker.fail(clock(), str(exc))
        show.finish(tracker.status())
        retry = " (retry: the download resumes where it stopped)" if exc.retryable else ""
        print(f"aiconsole: pull of {model}{where} failed: {exc}{retry}", file=err)
        return EXIT_FAILED
    except (KeyboardInterrupt, asyncio.CancelledError):
        tracker.cancel(clock())
        show.finish(tracker.status())
        raise
    show.finish(tracker.status())
    return EXIT_OK


class _TerminalProgress:
    """One line, redrawn in place with `\\r`, at most every PROGRESS_EVERY_S."""

    def __init__(self, out: TextIO) -> None:
        self._out, self._next = out, 0.0

    def update(self, tracker: PullTracker, now: float) -> None:
        if now < self._next:
            return
        self._next = now + PROGRESS_EVERY_S
        self._draw(tracker.status(now))

    def _draw(self, status: PullStatus) -> None:
        self._out.write("\r\x1b[K" + sanitize_line(status.summary()))
        self._out.flush()

    def finish(self, status: PullStatus) -> None:
        self._draw(status)
        self._out.write("\n")
        self._out.flush()


class _PipedProgress:
    """A line per status change (`pulling manifest`, each layer, `verifying`...), and the
    progress at most every PIPED_EVERY_S: a log, not an animation."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._status, self._next = "", 0.0

    def update(self, tracker: PullTracker, now: float) -> None:
        text = tracker.status_text
        if text != self._status:
            self._status = text
            self._next = now + PIPED_EVERY_S
            self._out.write(sanitize_line(text) + "\n")
        elif now >= self._next:
            self._next = now + PIPED_EVERY_S
            self._out.write(sanitize_line(tracker.status(now).summary()) + "\n")

    def finish(self, status: PullStatus) -> None:
        if status.state in (PullState.SUCCEEDED, PullState.CANCELLED):  # a failure goes to stderr
            self._out.write(sanitize_line(status.summary()) + "\n")
        self._out.flush()


# --- rm -------------------------------------------------------------------------------------------


def rm_command(
    runtime: Runtime, vm: str, model: str, *, assume_yes: bool, out: TextIO, err: TextIO,
    ask: Callable[[str], str] = input,
) -> int:  # fmt: skip
    return asyncio.run(_rm(runtime, vm, model, assume_yes, out, err, ask))


async def _rm(runtime: Runtime, vm: str, model: str, assume_yes: bool, out: TextIO, err: TextIO, ask) -> int:
    from aiconsole.services.ollama_models import ModelError

    if problem := _refusal(runtime, vm, model, "delete"):
        return _usage(err, problem)
    async with _library(runtime) as (library, powers):
        if problem := _unreachable(runtime, powers, vm):
            return _usage(err, problem)
        await library.refresh(vm)
        state = library.snapshot().server(vm)
        size = next((m.size_bytes for m in (state.installed if state else ()) if same_model(m.name, model)), None)
        if not assume_yes:
            if not sys.stdin.isatty():
                return _usage(err, f"not deleting {model} from {vm} without --yes (no terminal to ask on)")
            freed = f" (frees {format_bytes(size)})" if size is not None else ""
            answer = await asyncio.to_thread(ask, f"Delete {sanitize_line(model)} from {vm}{freed}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Not deleted.", file=out)
                return EXIT_FAILED
        try:
            await library.delete(vm, model)
        except ModelError as exc:
            print(f"aiconsole: {exc}", file=err)
            return EXIT_FAILED
        freed = f", {format_bytes(size)} freed" if size is not None else ""
        print(f"deleted {sanitize_line(model)} from {vm}{freed}", file=out)
        return EXIT_OK

