"""`TrainingWatch`: the fleet's MLflow servers, read in the background for the tab, the idle
timer and the stop guard.

    watch = TrainingWatch(servers, endpoints, TrainingOptions.of(settings.training),
                          on_activity=lambda vm, detail, unknown=False: monitor.note_activity(
                              vm, "mlflow", detail, lease_s=45, unknown=unknown))
    await watch.run(monitor.powers)          # every refresh_s: each server whose VM runs
    watch.snapshot()                         # TrainingSnapshot: runs per server, errors, ages
    check = await watch.stop_check("training")   # fresh: RUNNING runs, or who could not be asked
    tail = watch.follow(server, run_id)      # the tab's live chart: await tail.poll()

Why in the background and not only while the tab shows: a RUNNING run is an activity
signal for its VM's idle timer, and the timer must hear it whichever tab is open. A server
that cannot be read keeps its last runs (marked stale with the error), and a VM that had a
RUNNING run keeps being reported busy while its MLflow cannot be read: unknown never
counts as idle. A stopped VM's server is not asked (nothing listens there).

Each server is reached where `Endpoints` says (an SSH forward for `via_ssh`), asked anew
for every reading: a reconnect may move the forward's port, and the client follows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from aiconsole.config_file import SecretError
from aiconsole.config_secrets import resolve_secret
from aiconsole.domain.mlflow import RUNNING
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.training import (
    ServerRuns,
    StopCheck,
    TrackingServer,
    TrainingSnapshot,
    activity_detail,
    with_error,
    with_runs,
)
from aiconsole.services.clock import utc_now
from aiconsole.services.ssh_errors import SshError

if TYPE_CHECKING:
    from aiconsole.services.endpoints import Endpoints
    from aiconsole.services.mlflow_client import MlflowClient, RunTail, RunUpdate

__all__ = ["RunFollower", "TrainingError", "TrainingOptions", "TrainingWatch"]

log = logging.getLogger(__name__)

RUNNING_FILTER = f"attributes.status = '{RUNNING}'"


class TrainingError(Exception):
    """A server could not be reached or read; sanitised, and never holding a secret.

    `message` names the server ("training/mlflow: …") for the CLI; `detail` is the same
    without it, for the tab, which shows the server's name beside it already."""

    def __init__(self, server: TrackingServer, detail: str, retryable: bool = True) -> None:
        super().__init__(f"{server.label}: {detail}")
        self.message = f"{server.label}: {detail}"
        self.detail = detail
        self.retryable = retryable


@dataclass(frozen=True)
class TrainingOptions:
    refresh_s: float = 15.0
    max_runs: int = 200
    stop_check_timeout_s: float = 10.0
    reach_timeout_s: float = 15.0
    """How long to wait for a VM's SSH connection (and so its forward) before a reading fails."""

    @classmethod
    def of(cls, section) -> TrainingOptions:
        """From the config's `[training]` section."""
        return cls(section.refresh_s, section.max_runs, section.stop_check_timeout_s)


class TrainingWatch:
    def __init__(
        self,
        servers: Sequence[TrackingServer],
        endpoints: Endpoints,
        options: TrainingOptions | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_activity: Callable[..., None] = lambda vm, detail, unknown=False: None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`environ` holds the servers' secret variables only (see `assembly.build_training`)."""
        self.servers = tuple(servers)
        self.endpoints = endpoints
        self.options = options or TrainingOptions()
        self._environ = dict(environ or {})
        self._clock = clock
        self._on_activity = on_activity
        self.on_change = on_change
        self._state: dict[tuple[str, str], ServerRuns] = {(s.vm, s.service): ServerRuns(s) for s in self.servers}
        self._clients: dict[tuple[str, str], MlflowClient] = {}
        self._wake = asyncio.Event()

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> TrainingSnapshot:
        return TrainingSnapshot(self._clock(), tuple(self._state.values()))

    def now(self) -> datetime:
        return self._clock()

    async def run(self, powers: Callable[[], Mapping[str, PowerState]]) -> None:
        """Read every server whose VM runs, every `refresh_s` (sooner after `refresh_soon`)."""
        while True:
            self._wake.clear()
            await self.read_all(powers())
            with suppress(TimeoutError):
                async with asyncio.timeout(self.options.refresh_s):
                    await self._wake.wait()

    def refresh_soon(self) -> None:
        self._wake.set()

    async def read_all(self, powers: Mapping[str, PowerState]) -> None:
        """One reading of each server whose VM runs (at once); the others are marked not running."""
        reading = []
        for server in self.servers:
            if powers.get(server.vm) is PowerState.RUNNING:
                reading.append(self._read_and_report(server))
            else:
                key = (server.vm, server.service)
                if self._state[key].vm_running:  # its last runs stay, marked "VM stopped"
                    self._state[key] = replace(self._state[key], error="", vm_running=False)
        await asyncio.gather(*reading)
        self.on_change()

    async def _read_and_report(self, server: TrackingServer) -> None:
        key = (server.vm, server.service)
        previous = self._state[key]
        try:
            experiments, runs = await self.read(server)
        except Exception as error:  # TrainingError, or a bug: shown on the tab, the loop goes on
            if not isinstance(error, TrainingError):
                log.exception("reading %s failed", server.label)
                error = TrainingError(server, sanitize_line(f"{type(error).__name__}: {error}"))
            self._state[key] = with_error(previous, error.detail)
            # Unknown is never idle: the VM counts as busy while its MLflow cannot be read,
            # naming the runs last seen going, if any.
            if previous.running:
                detail = activity_detail(previous.running) + " (last seen; MLflow unreachable)"
            else:
                detail = f"MLflow unreachable ({server.service})"
            self._on_activity(server.vm, detail, unknown=True)
            return
        self._state[key] = current = with_runs(previous, experiments, runs, self._clock())
        if current.running:
            self._on_activity(server.vm, activity_detail(current.running))

    async def read(self, server: TrackingServer, *, running_only: bool = False):
        """(experiments, runs) of one server, newest runs first; raises TrainingError."""
        from aiconsole.services.mlflow_client import MlflowError

        client = await self.client(server)
        try:
            experiments = await client.experiments()
            ids = [experiment.id for experiment in experiments]
            if not ids:
                return experiments, []
            runs = await client.runs(ids, filter=RUNNING_FILTER if running_only else "", limit=self.options.max_runs)
        except MlflowError as error:
            raise TrainingError(server, error.message, error.retryable) from None
        return experiments, runs

    # -- the stop guard ----------------------------------------------------------------------

    async def stop_check(self, vm: str) -> StopCheck:
        """The RUNNING runs on `vm` now, asked fresh of each of its servers; a server that
        cannot answer within `stop_check_timeout_s` is listed as unreadable (never as clear)."""
        running, unreadable = [], []
        for server in (s for s in self.servers if s.vm == vm):
            try:
                async with asyncio.timeout(self.options.stop_check_timeout_s):
                    _, runs = await self.read(server, running_only=True)
            except TimeoutError:
                unreadable.append((server, f"no answer within {self.options.stop_check_timeout_s:g} s"))
                continue
            except TrainingError as error:
                unreadable.append((server, error.detail))
                continue
            running += [(server, run) for run in runs if run.is_running]
        return StopCheck(vm, tuple(running), tuple(unreadable))

    # -- tails -----------------------------------------------------------------------------

    def follow(self, server: TrackingServer, run_id: str, keys: Sequence[str] | None = None) -> RunFollower:
        return RunFollower(self, server, run_id, keys)

    # -- clients ---------------------------------------------------------------------------

    async def client(self, server: TrackingServer) -> MlflowClient:
        """The client for `server` at its current URL (a new one when the forward moved)."""
        url = await self._url(server)
        key = (server.vm, server.service)
        client = self._clients.get(key)
        if client is not None and client.base_url == url.rstrip("/"):
            return client
        if client is not None:
            with suppress(Exception):
                await client.aclose()
        client = self._clients[key] = self._new_client(server, url)
        return client

    def _new_client(self, server: TrackingServer, url: str) -> MlflowClient:
        from aiconsole.services.mlflow_client import MlflowClient

        token = basic = None
        if server.api_key_env:
            try:
                secret = resolve_secret(server.api_key_env, self._environ)
            except SecretError as error:
                raise TrainingError(server, str(error), retryable=False) from None
            if server.username:
                basic = (server.username, secret)
            else:
                token = secret
        return MlflowClient(url, token=token, basic=basic)

    async def _url(self, server: TrackingServer) -> str:
        timeout = self.options.reach_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self.endpoints.url(server.vm, server.service)
        except TimeoutError:
            raise TrainingError(server, f"no SSH connection to {server.vm} within {timeout:g} s") from None
        except SshError as error:
            raise TrainingError(server, sanitize_line(str(error))) from None

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with suppress(Exception):
                await client.aclose()


class RunFollower:
    """One run's metrics, tailed through the watch's client for its server (which follows the
    SSH forward if it moves). Raises TrainingError on a failed poll; the next poll goes on
    from where the last good one ended."""

    def __init__(self, watch: TrainingWatch, server: TrackingServer, run_id: str, keys: Sequence[str] | None) -> None:
        self.watch, self.server, self.run_id = watch, server, run_id
        self._keys = keys
        self._tail: RunTail | None = None

    @property
    def done(self) -> bool:
        return self._tail is not None and self._tail.done

    async def poll(self) -> RunUpdate:
        from aiconsole.services.mlflow_client import MlflowError, RunTail

        client = await self.watch.client(self.server)
        if self._tail is None:
            self._tail = RunTail(client, self.run_id, self._keys)
        else:
            self._tail.use_client(client)
        try:
            return await self._tail.poll()
        except MlflowError as error:
            raise TrainingError(self.server, error.message, error.retryable) from None
