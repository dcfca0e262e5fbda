"""The demo fleet's SSH side: a simulated GPU VM behind SSH per host, and its services.

- inference: one RTX 4090 serving models (Ollama through SSH: a full `FakeOllama` with the
  operator's three models, two of them loaded; Open WebUI direct);
- training: one RTX 4090 flat out on a LoRA run, running hot (MLflow through SSH: a
  `FakeMlflow` with a finished and a running LoRA run whose loss keeps coming);
- homelab: a 4090 workstation that drops its connection now and then, with LocalAI
  (OpenAI-compatible chat, streamed as SSE) loading its model for the first 20 seconds;
- brain: no GPU at all (its nvidia-smi is "command not found"), a small API.

`who` on the inference VM lists an operator's SSH session the last 5 minutes of every 15;
on the others, no session.

Every port is bound when the fleet is made, before any event loop runs, so the demo's
config text can name them (see `DemoFleet`).
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from aiconsole.demo.gpu_host import GpuHost, flap_connections
from aiconsole.demo.gpu_sim import IDLE_LOAD, INFERENCE_LOAD, TRAINING_LOAD
from aiconsole.demo.health_api import FakeServiceHealth
from aiconsole.demo.mlflow_api import FakeMlflow
from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.demo.openai_api import FakeOpenAI
from aiconsole.demo.ssh_server import BareHost, Logins, LoopbackSshServer, who_line


@dataclass
class DemoService:
    vm: str
    name: str
    kind: str
    fake: FakeServiceHealth
    path: str = ""
    via_ssh: bool = False

    def toml(self) -> str:
        return (
            f'[[vm.service]]\nname = "{self.name}"\nkind = "{self.kind}"\n'
            f'url = "{self.fake.server.url}{self.path}"\nvia_ssh = {str(self.via_ssh).lower()}\n'
        )


class DemoTelemetry:
    """SSH servers and service fakes of the demo fleet; an async context manager."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.wall_clock: Callable[[], float] = time.time
        """Epoch seconds for what the fakes date (Ollama's keep-alives, the operator's login):
        a console on a fixed clock (tests) sets its own, so its leases and theirs agree."""
        now = lambda: self.wall_clock()  # read at each call: set after construction
        self.hosts = {
            "inference": GpuHost(seed=11, load=INFERENCE_LOAD, logins=_operator_logins(now)),
            "training": GpuHost(seed=12, load=TRAINING_LOAD, process=(5150, "python3")),
            "homelab": GpuHost(seed=13, load=IDLE_LOAD, process=(777, "local-ai"), flaky=True),
        }
        self.servers = {name: LoopbackSshServer(directory / name, host).bind() for name, host in self.hosts.items()}
        self.servers["brain"] = LoopbackSshServer(directory / "brain", BareHost()).bind()
        self.services = [
            DemoService("inference", "ollama", "ollama", _demo_ollama(now), via_ssh=True),
            DemoService("inference", "open-webui", "http", FakeServiceHealth("open-webui"), "/health"),
            DemoService("training", "mlflow", "mlflow", FakeMlflow(), via_ssh=True),
            DemoService("homelab", "localai", "openai", FakeOpenAI("localai", tokens_per_s=60.0)),
            DemoService("brain", "knowledge-api", "http", FakeServiceHealth("open-webui"), "/health"),
        ]
        for service in self.services:
            service.fake.server.bind()
        self._stack = AsyncExitStack()

    @property
    def known_hosts_path(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def client_keys(self) -> list[Path]:
        return [server.client_key_path for server in self.servers.values()]

    def ssh_target(self, vm: str) -> str:
        return self.servers[vm].target

    def services_toml(self, vm: str) -> str:
        return "".join(service.toml() for service in self.services if service.vm == vm)

    async def __aenter__(self) -> DemoTelemetry:
        # In a thread: this runs on the console's loop just after the panes painted.
        await asyncio.to_thread(importlib.import_module, "asyncssh")
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = "".join(server.known_hosts_line for server in self.servers.values())
        self.known_hosts_path.write_text(lines)
        for server in self.servers.values():
            await self._stack.enter_async_context(server)
        for service in self.services:
            await self._stack.enter_async_context(service.fake)
        ollama = next(s.fake for s in self.services if s.name == "ollama")
        for model, keep in _OPERATORS_LOADED.items():
            ollama.load(model, keep_alive=keep)
        localai = next(s.fake for s in self.services if s.name == "localai")
        localai.loading(20.0)  # like LocalAI loading its model after a start: 503, "starting"
        flapping = asyncio.create_task(
            flap_connections(self.servers["homelab"], every_s=45.0, down_s=3.0, rng=random.Random(13)),
            name="demo-flaky-homelab",
        )
        self._stack.push_async_callback(_cancel, flapping)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()


def _operator_logins(clock: Callable[[], float], period_s: float = 900.0, open_s: float = 300.0) -> Logins:
    """The operator's SSH login on the inference VM: open the last 5 minutes of every 15
    (by `clock`; a clock stopped on the quarter hour, as the tests' is, sees none)."""
    line = who_line("operator", "pts/0", clock(), "192.0.2.10")
    return Logins.of(line, shown=lambda: clock() % period_s >= period_s - open_s)


_OPERATORS_LOADED = {"deepseek-coder-v2:16b": -1, "llama3.1:8b": "1h"}
"""The operator's set in VRAM: deepseek-coder-v2 pinned (keep_alive -1), llama3.1 for an hour.
Loaded when the fleet starts, not when it is made: its keep-alive is dated by `wall_clock`,
which a console on a fixed clock sets in between."""


def _demo_ollama(clock: Callable[[], float]) -> FakeOllama:
    return FakeOllama(clock=clock)


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
