"""The fleet's model library: every VM's Ollama (and OpenAI-compatible) models, and pulls.

`ModelLibrary` knows each VM's model servers from the config, reaches them where
`Endpoints` says (an `ollama` service with `via_ssh` through its SSH forward, asked anew
each time: a reconnect may move the port), and keeps for each server the last good
answer with its time and the last error, so the screen shows old data as stale, never
as fresh. Pulls run as tasks of their own (several at once), each folded into a
`PullTracker`; while one runs, `on_activity(vm, detail)` is called about once a second
(the idle timer's "model pull" signal). Disk space comes from `df` over the VM's SSH
connection.

Import after the first frame: it imports the `ollama` client (and httpx).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from aiconsole.domain.model_server import ModelServer
from aiconsole.domain.models import (
    InstalledModel,
    LoadedModel,
    ModelDetails,
    PullStatus,
    PullTracker,
    same_model,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.clock import utc_now
from aiconsole.services.ollama_models import ModelError, ModelTimeouts, OllamaModels, checked_name
from aiconsole.services.ssh_errors import SshError
from aiconsole.services.tasks import cancel_until_done
from aiconsole.services.tls import shared_ssl_context

if TYPE_CHECKING:
    from aiconsole.services.endpoints import Endpoints
    from aiconsole.services.ssh import SshPool

__all__ = ["DiskUsage", "ModelLibrary", "ModelServer", "ModelsSnapshot", "PullJob", "ServerModels", "df_command"]

STALE_AFTER_S = 90.0
"""A server's lists older than this are shown stale (three refreshes of the tab's 30 s)."""
ACTIVITY_EVERY_S = 1.0
MODEL_DIRS = ("/usr/share/ollama/.ollama/models", "~/.ollama/models", "/")
"""Where Ollama keeps models: the Linux service's folder, a user install's, else the root disk."""


def df_command(dirs: tuple[str, ...] = MODEL_DIRS) -> str:
    """`df -Pk` over the candidates: POSIX output in KiB (GNU, BSD and macOS alike); the
    first line printed is the first folder that exists."""
    return "df -Pk " + " ".join(dirs) + " 2>/dev/null"


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    used_bytes: int
    free_bytes: int
    mount: str = ""


@dataclass(frozen=True)
class ServerModels:
    """What one server holds, as last read."""

    server: ModelServer
    installed: tuple[InstalledModel, ...] = ()
    loaded: tuple[LoadedModel, ...] = ()
    listed: tuple[str, ...] = ()
    """Model ids of an OpenAI-compatible server."""
    disk: DiskUsage | None = None
    fetched_at: datetime | None = None
    """When the lists above were read; None: never."""
    error: str = ""
    """Why the last refresh failed (sanitised); empty when it worked."""
    refreshing: bool = False

    @property
    def vm(self) -> str:
        return self.server.vm

    def stale(self, now: datetime) -> bool:
        """Old data: the last refresh failed, or it is older than STALE_AFTER_S."""
        if self.fetched_at is None:
            return False  # nothing to show, so nothing shown as fresh
        return bool(self.error) or (now - self.fetched_at).total_seconds() > STALE_AFTER_S

    def is_loaded(self, name: str) -> LoadedModel | None:
        return next((item for item in self.loaded if same_model(item.name, name)), None)

    @property
    def models_bytes(self) -> int:
        """Disk the installed models take (layers shared between models counted once each)."""
        return sum(model.size_bytes for model in self.installed)


@dataclass
class PullJob:
    """One pull in progress or finished."""

    vm: str
    model: str
    tracker: PullTracker
    task: asyncio.Task[None] | None = None
    retryable: bool = False

    def status(self, now: float) -> PullStatus:
        return self.tracker.status(now)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


@dataclass(frozen=True)
class ModelsSnapshot:
    at: datetime
    servers: tuple[ServerModels, ...]
    pulls: tuple[PullStatus, ...] = ()
    pull_vms: tuple[str, ...] = ()
    """The VM of each entry of `pulls`."""

    def server(self, vm: str) -> ServerModels | None:
        return next((item for item in self.servers if item.vm == vm and item.server.kind == "ollama"), None)


@dataclass
class ModelLibrary:
    """Every model server of the fleet; see the module's docstring."""

    servers: list[ModelServer]
    endpoints: Endpoints
    pool: SshPool | None = None
    on_activity: Callable[[str, str], None] = lambda vm, detail: None
    timeouts: ModelTimeouts = ModelTimeouts()
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = utc_now
    reach_timeout_s: float = 30.0
    """How long to wait for a VM's SSH connection (and forward) before saying it is unreachable."""
    environ: dict[str, str] = field(default_factory=dict, repr=False)
    """API keys of `openai` services, by their `api_key_env` name (never shown)."""
    _state: dict[tuple[str, str], ServerModels] = field(default_factory=dict)
    _clients: dict[tuple[str, str], OllamaModels] = field(default_factory=dict)
    _pulls: dict[tuple[str, str], PullJob] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for server in self.servers:
            self._state[(server.vm, server.service)] = ServerModels(server)

    # --- reading -----------------------------------------------------------------------------

    def snapshot(self) -> ModelsSnapshot:
        now = self.clock()
        jobs = list(self._pulls.values())
        return ModelsSnapshot(
            self.wall_clock(), tuple(self._state.values()),
            tuple(job.status(now) for job in jobs), tuple(job.vm for job in jobs),
        )  # fmt: skip

    async def refresh(self, vm: str | None = None) -> None:
        """Read every server (of `vm`) again, concurrently; failures are kept, never raised."""
        await asyncio.gather(*(self._refresh(server) for server in self.servers if vm in (None, server.vm)))

    async def _refresh(self, server: ModelServer) -> None:
        key = (server.vm, server.service)
        self._state[key] = replace(self._state[key], refreshing=True)
        try:
            if server.kind == "ollama":
                client = await self.client_for(server)
                installed, loaded, disk = await asyncio.gather(client.installed(), client.loaded(), self._disk(server))
                fresh = replace(self._state[key], installed=installed, loaded=loaded, disk=disk or self._state[key].disk)
            else:
                fresh = replace(self._state[key], listed=await self._openai_models(server))
            self._state[key] = replace(fresh, fetched_at=self.wall_clock(), error="")
        except (ModelError, httpx.HTTPError) as exc:
            self._state[key] = replace(self._state[key], error=sanitize_line(str(exc)))
        finally:  # a cancelled refresh too: never left "refreshing" for good
            self._state[key] = replace(self._state[key], refreshing=False)

    async def details(self, vm: str, model: str) -> ModelDetails:
        return await (await self.client_for(self._ollama(vm))).details(model)

    # --- changing ----------------------------------------------------------------------------

    def pull(self, vm: str, model: str) -> PullJob:
        """Start pulling `model` on `vm` (returns at once); raises ModelError for a bad name
        or when the same model is already being pulled there."""
        server = self._ollama(vm)
        name = checked_name(model)
        if any(job.vm == vm and job.running and same_model(job.model, name) for job in self._pulls.values()):
            raise ModelError(f"{name} is already being pulled on {vm}")
        job = PullJob(vm, name, PullTracker(name, self.clock(), server.hourly_usd))
        job.task = asyncio.get_running_loop().create_task(self._run_pull(server, job), name=f"pull-{vm}-{name}")
        self._pulls[(vm, name)] = job
        return job

    def _job(self, vm: str, model: str) -> PullJob | None:
        return next((job for job in self._pulls.values() if job.vm == vm and same_model(job.model, model)), None)

    def cancel_pull(self, vm: str, model: str) -> bool:
        job = self._job(vm, model)
        if job is None or not job.running:
            return False
        assert job.task is not None
        job.task.cancel()
        return True

    def forget_pull(self, vm: str, model: str) -> None:
        """Drop a finished pull from the list (a running one stays)."""
        job = self._job(vm, model)
        if job is not None and not job.running:
            del self._pulls[(vm, job.model)]

    async def delete(self, vm: str, model: str) -> None:
        await (await self.client_for(self._ollama(vm))).delete(model)
        await self.refresh(vm)

    async def unload(self, vm: str, model: str) -> None:
        await (await self.client_for(self._ollama(vm))).unload(model)
        await self.refresh(vm)

    async def aclose(self) -> None:
        await cancel_until_done(*(job.task for job in self._pulls.values() if job.task is not None))
        for client in self._clients.values():
            with suppress(Exception):
                await client.close()
        self._clients.clear()

    # --- inside --------------------------------------------------------------------------------

    async def _run_pull(self, server: ModelServer, job: PullJob) -> None:
        tracker, last_signal, succeeded = job.tracker, float("-inf"), False
        try:
            client = await self.client_for(server)
            async with client.pulling(job.model, tracker.events) as parts:
                async for part in parts:
                    now = self.clock()
                    tracker.feed(now, part.status or "", part.digest, part.total, part.completed)
                    if now - last_signal >= ACTIVITY_EVERY_S:
                        last_signal = now
                        self.on_activity(job.vm, f"pulling {job.model}")
            succeeded = tracker.end(self.clock())
            job.retryable = not succeeded  # a stream that stopped short: pulling again resumes
        except ModelError as exc:
            tracker.fail(self.clock(), str(exc))
            job.retryable = exc.retryable
        except asyncio.CancelledError:
            tracker.cancel(self.clock())
            raise
        if succeeded:
            await self.refresh(server.vm)

    def _ollama(self, vm: str) -> ModelServer:
        server = next((s for s in self.servers if s.vm == vm and s.kind == "ollama"), None)
        if server is None:
            raise ModelError(f"no ollama service on VM {vm!r} in the config")
        return server

    async def client_for(self, server: ModelServer) -> OllamaModels:
        """The client for the server's URL now (a forward's port may move after a reconnect);
        raises ModelError when the VM cannot be reached within `reach_timeout_s`."""
        url = (await self._url(server)).rstrip("/")
        key = (server.vm, server.service)
        client = self._clients.get(key)
        if client is None or client.url != url:
            if client is not None:
                with suppress(Exception):
                    await client.close()
            client = self._clients[key] = OllamaModels(url, self.timeouts)
        return client

    async def _url(self, server: ModelServer) -> str:
        try:
            async with asyncio.timeout(self.reach_timeout_s):
                return await self.endpoints.url(server.vm, server.service)
        except TimeoutError:
            raise ModelError(f"{server.vm}: no SSH connection within {self.reach_timeout_s:g} s", retryable=True) from None
        except SshError as exc:
            raise ModelError(f"{server.vm}: {exc}", retryable=True) from None

    async def _disk(self, server: ModelServer) -> DiskUsage | None:
        """Free disk where the models live (`df` over SSH); None without SSH or on failure
        (the lists matter more than the disk line, so this never fails a refresh)."""
        if self.pool is None or server.ssh is None:
            return None
        try:
            result = await self.pool.run(server.vm, server.ssh, df_command(), timeout=10.0)
        except SshError:
            return None
        return parse_df(result.stdout)

    async def _openai_models(self, server: ModelServer) -> tuple[str, ...]:
        """`GET <base>/v1/models` (the base may already end in /v1)."""
        base = (await self._url(server)).rstrip("/")
        url = base + ("/models" if base.endswith("/v1") else "/v1/models")
        headers = {}
        if server.api_key_env and self.environ.get(server.api_key_env):
            headers["Authorization"] = f"Bearer {self.environ[server.api_key_env]}"
        timeout = httpx.Timeout(self.timeouts.read_s, connect=self.timeouts.connect_s)
        # A client per refresh, so the shared SSL context matters most here (services/tls.py).
        async with httpx.AsyncClient(timeout=timeout, verify=shared_ssl_context()) as client:
            response = await client.get(url, headers=headers)
        if response.status_code != 200:
            raise ModelError(f"{server.service}: HTTP {response.status_code} from /v1/models")
        try:
            data = response.json()["data"]
            return tuple(sorted(str(item["id"]) for item in data))
        except (ValueError, KeyError, TypeError):
            raise ModelError(f"{server.service}: /v1/models did not answer an OpenAI model list") from None


def parse_df(text: str) -> DiskUsage | None:
    """The first data line of `df -Pk`: filesystem, KiB blocks, used, available, capacity, mount."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and all(f.isdigit() for f in fields[1:4]):
            total, used, free = (int(f) * 1024 for f in fields[1:4])
            return DiskUsage(total, used, free, " ".join(fields[5:]))
    return None

