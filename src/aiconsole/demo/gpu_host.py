"""The demo's GPU VM behind SSH: a `LoopbackSshServer` handler whose nvidia-smi answers like the real one.

One `GpuHost` per VM (its seed, load and GPU count). As a handler it answers:
- `nvidia-smi --query-gpu=... -lms N` (or `--loop-ms=N`): a `smi_round` every N ms, for
  as long as the channel stays open, like the real long-running command;
- `nvidia-smi --query-gpu=...` without a loop: one round;
- `nvidia-smi --query-compute-apps=...`: `compute_apps` (one process per busy GPU);
- `nvidia-smi -L`: the GPU list;
- `df -Pk PATH...`: POSIX df lines for its disk (`disk_gb`, `disk_used_gb`): Ollama's
  service folder and `/` exist, other paths are "No such file or directory";
- `who`: its `logins` (none by default);
- anything else: "command not found", exit 127.
Readings come from `gpu_sim` at the time of the injectable `clock` (seconds).

`flaky=True` makes the host drop its connection now and then (the demo's unreliable VM):
`serve()` then runs `flap_connections` beside the server, which every ~`flap_every_s`
cuts every connection and refuses new ones for `flap_down_s`.

    host = GpuHost(seed=3, load=TRAINING_LOAD, count=1, flaky=True)
    async with host.serve(directory) as server:   # a LoopbackSshServer
        ...  # server.target, server.known_hosts_path, server.client_key_path
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiconsole.demo.gpu_sim import (
    INFERENCE_LOAD,
    GpuLoad,
    SimulatedGpu,
    compute_apps,
    demo_gpus,
    interval_ms,
    smi_round,
)
from aiconsole.demo.ssh_server import Logins, LoopbackSshServer, not_found

if TYPE_CHECKING:
    import asyncssh

__all__ = ["GpuHost", "flap_connections"]

Sleep = Callable[[float], Awaitable[Any]]


@dataclass
class GpuHost:
    """One simulated GPU VM; call it as the `LoopbackSshServer` handler, or `serve()` it."""

    seed: int
    load: GpuLoad = INFERENCE_LOAD
    count: int = 1
    process: tuple[int, str] = (4242, "ollama")
    """(first pid, name) of the process each busy GPU lists in `--query-compute-apps`."""
    clock: Callable[[], float] = time.time
    """Seconds; the simulated readings are a function of it."""
    flaky: bool = False
    flap_every_s: float = 45.0
    """About how often a flaky host drops its connection (jittered by +-20 %)."""
    flap_down_s: float = 2.0
    """How long a flaky host then refuses new connections."""
    disk_gb: float = 70.0
    """Its SSD (TensorDock's inference VM: 70 GB)."""
    disk_used_gb: float = 31.5
    logins: Logins = field(default_factory=Logins)
    """What its `who` answers: no login session unless set."""
    gpus: tuple[SimulatedGpu, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.gpus = demo_gpus(self.seed, self.load, self.count)

    async def __call__(self, command: str, process: asyncssh.SSHServerProcess) -> int | None:
        words = command.split()
        if words[:1] == ["df"]:
            return self._df(words[1:], process)
        if words[:1] == ["who"]:
            return await self.logins.answer(process)
        if not words or words[0] != "nvidia-smi":
            return await not_found(command, process)
        if any(word.startswith("--query-compute-apps") for word in words):
            process.stdout.write(compute_apps(self.gpus, self.clock(), self.process).encode())
            return 0
        if any(word.startswith("--query-gpu") for word in words):
            if any(word == "-lms" or word.startswith("--loop-ms") for word in words):
                await self._stream(process, interval_ms(command) / 1000)
            else:
                process.stdout.write(smi_round(self.gpus, self.clock()).encode())
            return 0
        if "-L" in words:
            listing = "".join(f"GPU {gpu.index}: {gpu.name} (UUID: {gpu.uuid})\n" for gpu in self.gpus)
            process.stdout.write(listing.encode())
            return 0
        process.stderr.write(b"demo nvidia-smi: only --query-gpu, --query-compute-apps and -L are simulated\n")
        return 2

    def _df(self, args: list[str], process: asyncssh.SSHServerProcess) -> int:
        total = int(self.disk_gb * 1e9 / 1024)
        used = int(self.disk_used_gb * 1e9 / 1024)
        lines = ["Filesystem     1024-blocks     Used Available Capacity Mounted on\n"]
        status = 0
        for path in (arg for arg in args if not arg.startswith("-") and arg != "2>/dev/null"):
            if path == "/" or path.startswith("/usr/share/ollama"):
                lines.append(f"/dev/vda1      {total:>11} {used:>8} {total - used:>9} {100 * used // total:>7}% /\n")
            else:
                process.stderr.write(f"df: {path}: No such file or directory\n".encode())
                status = 1
        process.stdout.write("".join(lines).encode())
        return status

    async def _stream(self, process: asyncssh.SSHServerProcess, period_s: float) -> None:
        """Until the channel closes (the write or drain then raises, as SIGPIPE ends nvidia-smi)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            process.stdout.write(smi_round(self.gpus, self.clock()).encode())
            await process.stdout.drain()
            due += period_s
            delay = due - loop.time()
            if delay < 0:  # fell behind (a stalled loop): carry on from now rather than burst
                due, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def serve(self, directory: Path, *, sleep: Sleep = asyncio.sleep) -> AsyncIterator[LoopbackSshServer]:
        """A started `LoopbackSshServer` answering as this host (and flapping, if flaky)."""
        async with LoopbackSshServer(directory, self) as server:
            flapping = None
            if self.flaky:
                flapping = asyncio.create_task(
                    flap_connections(server, every_s=self.flap_every_s, down_s=self.flap_down_s,
                                     sleep=sleep, rng=random.Random(self.seed)),
                    name=f"flap-{server.port}",
                )  # fmt: skip
            try:
                yield server
            finally:
                if flapping is not None:
                    flapping.cancel()
                    with suppress(asyncio.CancelledError):
                        await flapping


async def flap_connections(
    server: LoopbackSshServer,
    *,
    every_s: float = 45.0,
    down_s: float = 2.0,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> None:
    """Until cancelled: every ~`every_s` (+-20 %), cut every connection and refuse new ones for `down_s`."""
    rng = rng or random.Random()
    while True:
        await sleep(every_s * (0.8 + 0.4 * rng.random()))
        await server.refuse_connections()
        server.drop_connections()
        try:
            await sleep(down_s)
        finally:
            await server.accept_connections()
