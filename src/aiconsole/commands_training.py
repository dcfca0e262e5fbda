"""The CLI's side of MLflow: a watch of its own for one command, and the stop guard of `vm stop`.

`vm stop` on a VM with an `mlflow` service first asks that server for RUNNING runs. With
one going (or a server that cannot be asked), `--yes` is not enough: the command names the
run and needs `--force`, or, on a terminal, a second answer that types the VM's name.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, TextIO

from aiconsole.domain.fleet import VmSnapshot
from aiconsole.domain.format import format_usd
from aiconsole.domain.training import StopCheck

if TYPE_CHECKING:
    from aiconsole.assembly import Runtime
    from aiconsole.services.training import TrainingWatch


@asynccontextmanager
async def training_watch(runtime: Runtime, environ: Mapping[str, str] = os.environ) -> AsyncIterator[TrainingWatch]:
    """A `TrainingWatch` on an SSH pool of its own (closed after): for one CLI command."""
    from aiconsole.assembly import build_training
    from aiconsole.services.endpoints import Endpoints

    pool = runtime.build_ssh_pool()
    endpoints = Endpoints(pool)
    for vm in runtime.settings.vm:
        endpoints.add_vm(vm)
    watch = build_training(runtime.settings, endpoints, environ=environ)
    try:
        yield watch
    finally:
        await watch.aclose()
        with suppress(Exception):
            await pool.aclose()


async def stop_check(runtime: Runtime, name: str, environ: Mapping[str, str] = os.environ) -> StopCheck:
    """What runs on `name` now. A VM without an `mlflow` service is clear without asking
    (and without importing asyncssh)."""
    from aiconsole.assembly import tracks_runs

    if not tracks_runs(runtime.settings, name):
        return StopCheck(name)
    async with training_watch(runtime, environ) as watch:
        return await watch.stop_check(name)


async def confirm_guarded_stop(
    vm: VmSnapshot,
    check: StopCheck,
    *,
    force: bool,
    out: TextIO,
    err: TextIO,
    ask: Callable[[str], str],
    now,
) -> bool:
    """True to stop a VM with work on it: `--force`, or both answers on a terminal."""
    for line in check.warnings(now):
        print(f"aiconsole: {line}", file=err)
    if force:
        print(f"Stopping {vm.name} anyway (--force).", file=err)
        return True
    if not sys.stdin.isatty():
        print(f"aiconsole: not stopping {vm.name}: add --force to stop it anyway (--yes is not enough)", file=err)
        return False
    first = await asyncio.to_thread(ask, f"Stop {vm.name} anyway and end what runs there? [y/N] ")
    if first.strip().lower() not in ("y", "yes"):
        print("Not stopped.", file=out)
        return False
    second = await asyncio.to_thread(
        ask, f"Type the VM's name to confirm ({format_usd(vm.hourly_usd)}/h stops, the run ends): "
    )
    if second.strip() != vm.name:
        print("Not stopped (the name did not match).", file=out)
        return False
    return True
