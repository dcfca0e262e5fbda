"""The telemetry hub: a GPU feed and service checks for every VM that is running.

It follows the fleet: a VM whose power is `running` (always-on hosts report running)
and that has an `ssh` target gets its feed (one persistent SSH connection, one
long-running nvidia-smi); when it stops, its feed is cancelled and its connection
closed, so a stopped VM opens no connection. Services are checked on their kind's
path every `health_interval_s`, through the VM's SSH forward when `via_ssh` is set.
The UI and the CLI read one immutable `TelemetrySnapshot` at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from aiconsole.domain.gpu_levels import GpuThresholds, LevelCrossing
from aiconsole.domain.health import HealthTarget, ServiceHealth, unchecked
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import FeedState, HostOutline, HostTelemetry, TelemetrySnapshot
from aiconsole.services.endpoints import Endpoints
from aiconsole.services.gpu_feed import LocalGpuFeed, RemoteGpuFeed, RoundBatcher
from aiconsole.services.gpu_feed_base import GpuFeed, utc_now
from aiconsole.services.gpu_timeline import GpuTimeline
from aiconsole.services.health import HealthChecker
from aiconsole.services.ssh import SshError, SshPool
from aiconsole.services.tasks import cancel_until_done

log = logging.getLogger(__name__)

_T = TypeVar("_T", HostOutline, HostTelemetry)


def thresholds_from(gpu_settings) -> GpuThresholds:
    return GpuThresholds(
        temp_warn_c=gpu_settings.temp_warn_c,
        temp_critical_c=gpu_settings.temp_critical_c,
        mem_warn_pct=gpu_settings.mem_warn_pct,
        mem_critical_pct=gpu_settings.mem_critical_pct,
    )


class TelemetryHub:
    def __init__(
        self,
        settings,
        pool: SshPool,
        *,
        checker: HealthChecker | None = None,
        local: LocalGpuFeed | None = None,
        clock: Callable[[], datetime] = utc_now,
        health_interval_s: float = 10.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.endpoints = Endpoints(pool)
        for vm in settings.vm:
            self.endpoints.add_vm(vm)
        self.checker = checker or HealthChecker()
        self.local = local
        self._clock = clock
        self._health_interval_s = health_interval_s
        self._on_change = on_change
        self._thresholds = thresholds_from(settings.gpu)
        self._batcher = RoundBatcher()  # the feeds' rounds, taken together a few times a second
        self._feeds: dict[str, RemoteGpuFeed] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._health: dict[str, tuple[ServiceHealth, ...]] = {
            vm.name: tuple(unchecked(s.name, s.kind, str(s.url)) for s in vm.service) for vm in settings.vm
        }
        self._running: set[str] = set()
        self._unchecked: set[str] = set()
        """Running VMs whose services were not checked since they started or connected."""
        self._check_soon = asyncio.Event()
        self.timeline = GpuTimeline()
        """Each VM's GPUs over the last day at a coarse step (the Training tab's GPU strips)."""
        self._merged: dict[str, tuple[HostTelemetry | None, tuple[ServiceHealth, ...], HostTelemetry]] = {}
        self._outlines: dict[str, tuple[HostOutline | None, tuple[ServiceHealth, ...], HostOutline]] = {}

    # -- following the fleet ---------------------------------------------------------------

    def follow(self, power: Mapping[str, PowerState]) -> None:
        """Start feeds for VMs that run (by name: their power) and have an `ssh` target; stop the others'."""
        for vm in self.settings.vm:
            running = power.get(vm.name) is PowerState.RUNNING
            if running and vm.name not in self._running and vm.service:
                self._unchecked.add(vm.name)  # just seen running: its services are checked now,
                self._check_soon.set()  # not up to `health_interval_s` later
            (self._running.add if running else self._running.discard)(vm.name)
            if running and vm.ssh and vm.name not in self._tasks:
                self._start_feed(vm)
            elif not running and vm.name in self._tasks:
                self._stop_feed(vm.name)
            if not running:  # results from before it stopped would read as current
                self._health[vm.name] = tuple(unchecked(s.name, s.kind, str(s.url)) for s in vm.service)

    def _start_feed(self, vm) -> None:
        gpu = self.settings.gpu
        feed = RemoteGpuFeed(
            vm.name,
            self.pool,
            vm.ssh,
            interval_s=gpu.interval_s,
            processes_interval_s=gpu.processes_interval_s,
            thresholds=self._thresholds,
            busy_util_pct=gpu.busy_util_pct,
            on_change=self._feed_changed,
            clock=self._clock,
            batcher=self._batcher,
        )
        self._feeds[vm.name] = feed
        self._tasks[vm.name] = asyncio.get_running_loop().create_task(feed.run(), name=f"gpu-feed-{vm.name}")

    def _feed_changed(self, feed: GpuFeed) -> None:
        # The first frame means the SSH connection is up: services behind its forwards can answer now.
        if feed.host in self._unchecked and feed.state is FeedState.LIVE:
            self._check_soon.set()
        self._on_change()

    def _stop_feed(self, name: str) -> None:
        task = self._tasks.pop(name)
        self._feeds.pop(name, None)
        asyncio.get_running_loop().create_task(self._close_feed(name, task), name=f"ssh-close-{name}")

    async def _close_feed(self, name: str, task: asyncio.Task[None]) -> None:
        await cancel_until_done(task)
        await self.pool.close(name)  # never raises

    async def run(
        self,
        powers: Callable[[], Mapping[str, PowerState]],
        on_gpu: Callable[[str, bool | None, datetime, str], None] = lambda vm, busy, at, why: None,
        *,
        health_checks: bool = True,
    ) -> None:
        """Follow the fleet once a second and check services, until cancelled.

        `on_gpu(vm, busy, at, why)` is called each second for every running VM with a feed:
        busy True when a GPU is above the busy level (the idle timer's activity signal),
        None when that cannot be told (`why` says what: stale, not connected), which the
        idle timer counts as busy. Not called for an idle GPU, nor for a host without one.
        `health_checks=False`: no service checks (`aiconsole watch`, which never draws them:
        at 100 VMs they were ~40 % of its CPU, docs/performance.md).
        """
        async with asyncio.TaskGroup() as group:
            if self.local is not None:
                group.create_task(self.local.run(), name="gpu-feed-local")
            if health_checks:
                group.create_task(self._check_services_forever(), name="health-checks")
            while True:
                self.follow(powers())
                now = self._clock()
                for vm, (busy, why) in self.gpu_activity(now).items():
                    on_gpu(vm, busy, now, why)
                self.record_timeline()
                await asyncio.sleep(1.0)

    def record_timeline(self) -> None:
        """Every remote VM's latest frame into the long timeline (a frame already in it is skipped)."""
        for name, feed in self._feeds.items():
            frame = feed.last_frame
            if frame is not None:
                self.timeline.record(name, frame.at.timestamp(), frame.gpus)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._feeds.clear()
        await cancel_until_done(*tasks)
        await self.pool.aclose()
        with suppress(Exception):
            await self.checker.aclose()

    # -- service health --------------------------------------------------------------------

    async def _check_services_forever(self) -> None:
        while True:
            self._check_soon.clear()
            await self.check_services()
            with suppress(TimeoutError):  # a VM that starts or connects cuts the wait short
                await asyncio.wait_for(self._check_soon.wait(), self._health_interval_s)

    async def check_services(self) -> None:
        """Check every service of every running VM once; a VM that is not running is not asked."""
        for vm in self.settings.vm:
            if vm.name in self._running and vm.service:
                health = tuple(await self._check_vm(vm))
                self._health[vm.name] = health
                if all(h.checked_at is not None for h in health):
                    self._unchecked.discard(vm.name)  # every service was asked (no forward missing)
        self._on_change()

    async def _check_vm(self, vm) -> list[ServiceHealth]:
        targets: list[HealthTarget] = []
        failed: list[ServiceHealth] = []
        for service in vm.service:
            try:
                url = await self.endpoints.url(vm.name, service.name, wait=False)
            except SshError as error:  # no connection yet: the forward cannot exist
                failed.append(replace(unchecked(service.name, service.kind, str(service.url)), error=sanitize_line(str(error))))
                continue
            targets.append(HealthTarget(service.name, service.kind, url, shown_as=str(service.url)))
        checked = await self.checker.check_all(targets) if targets else []
        by_name = {health.name: health for health in [*checked, *failed]}
        return [by_name[service.name] for service in vm.service]

    # -- reading ---------------------------------------------------------------------------

    def feed(self, name: str) -> GpuFeed | None:
        return self.local if self.local is not None and name == self.local.host else self._feeds.get(name)

    def snapshot(self) -> TelemetrySnapshot:
        """Every host's outline now; a host's GPU views are built when the snapshot is asked
        for them (`TelemetrySnapshot.host`), so a tick that draws 3 hosts builds 3.

        The snapshot keeps the feeds and service results of this moment: read later (after
        `aclose`, or once a VM stopped), it still shows the hosts it outlined."""
        now = self._clock()
        feeds: dict[str, GpuFeed] = dict(self._feeds)
        health = dict(self._health)
        if self.local is not None:
            feeds[self.local.host] = self.local
        names = [vm.name for vm in self.settings.vm] + ([self.local.host] if self.local is not None else [])
        outlines = [self._outline(name, feeds.get(name), health, now) for name in names]
        return TelemetrySnapshot.lazy(now, outlines, lambda name: self._host(name, feeds.get(name), health, now))

    def _outline(self, name: str, feed: GpuFeed | None, health: dict, now: datetime) -> HostOutline:
        base = feed.outline(now) if feed is not None else None
        return self._with_services(self._outlines, name, base, health.get(name, ()), HostOutline)

    def _host(self, name: str, feed: GpuFeed | None, health: dict, now: datetime) -> HostTelemetry:
        base = feed.view(now) if feed is not None else None
        return self._with_services(self._merged, name, base, health.get(name, ()), HostTelemetry)

    def _with_services(
        self,
        cache: dict[str, tuple[_T | None, tuple[ServiceHealth, ...], _T]],
        name: str,
        base: _T | None,
        services: tuple[ServiceHealth, ...],
        make: Callable[..., _T],
    ) -> _T:
        """`base` (a feed's outline or view; None: no feed) with the host's services: the
        same object while neither changed, so readers can skip repainting by identity."""
        merged = cache.get(name)
        if merged is not None and merged[0] is base and merged[1] is services:
            return merged[2]
        if base is None:
            result = make(name, FeedState.OFF, services=services)
        else:
            result = replace(base, services=services) if services else base
        cache[name] = (base, services, result)
        return result

    def gpu_activity(self, now: datetime) -> dict[str, tuple[bool | None, str]]:
        """Per running VM whose GPU says something to the idle timer: (True, "GPU busy"), or
        (None, why it cannot be told). An idle GPU, and a host without GPU, say nothing."""
        found: dict[str, tuple[bool | None, str]] = {}
        for name, feed in self._feeds.items():
            busy = feed.busy(now)
            if busy:
                found[name] = (True, "GPU busy")
            elif busy is None:
                outline = feed.outline(now)
                if outline.state is FeedState.NO_GPU:
                    continue
                # Short: the pane lists it beside the other reasons; the GPUs tab has the whole message.
                found[name] = (None, f"GPU {outline.state.value}")
        return found

    def take_crossings(self) -> list[tuple[str, LevelCrossing]]:
        """(host, crossing) for every threshold crossed since the last call: notify each once."""
        feeds = [*self._feeds.values(), *([self.local] if self.local is not None else [])]
        return [(feed.host, crossing) for feed in feeds for crossing in feed.take_crossings()]
