"""Immutable snapshots of GPU telemetry and service health, one per tick, for the UI and CLI.

`services.telemetry` builds them from the live feeds; the panes and `status --json`
only read them. A value past its freshness (3 missed intervals) is kept, marked
stale, with its age: never shown as fresh, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiconsole.domain.gpu import GpuProcess, GpuSample
from aiconsole.domain.gpu_levels import Level
from aiconsole.domain.health import ServiceHealth
from aiconsole.domain.series import SeriesWindow

STALE_AFTER_INTERVALS = 3
LOCAL_HOST = "local"
"""The name telemetry of the machine the console runs on (NVML) goes under."""


class FeedState(StrEnum):
    OFF = "off"  # the VM is not running, or has no `ssh` target: nothing is connected
    CONNECTING = "connecting"
    LIVE = "live"
    STALE = "stale"  # connected or not, the last sample is older than its freshness
    NO_GPU = "no-gpu"  # the host has no NVIDIA GPU or driver: not an error
    ERROR = "error"  # the feed failed; `message` says why (sanitised)
    REFUSED = "refused"  # the SSH host key was refused; `message` says how to accept it


class GpuHistory:
    """The last minutes of one GPU, oldest first, one point per sample (None = unknown).

    Immutable. `util_pct`, `temp_c` and `mem_pct` are sequences (tuples, or the feeds'
    `SeriesWindow`s). The feeds make one per GPU per sample with `of_series`, which keeps
    the three point lists and builds a window only when read: the GPU view reads the
    histories of the rows on screen, not of all 800 GPUs.
    """

    __slots__ = ("_end", "_lists", "_start", "_windows")

    def __init__(
        self,
        util_pct: Sequence[float | None] = (),
        temp_c: Sequence[float | None] = (),
        mem_pct: Sequence[float | None] = (),
    ) -> None:
        self._windows: tuple[Sequence[float | None], ...] | None = (util_pct, temp_c, mem_pct)
        self._lists: tuple[list[float | None], ...] = ()
        self._start = self._end = 0

    @classmethod
    def of_series(
        cls, util: list[float | None], temp: list[float | None], mem: list[float | None], start: int, end: int
    ) -> GpuHistory:
        """Points `[start, end)` of three append-only lists (see domain/series.py), read lazily."""
        history = cls.__new__(cls)
        history._windows = None
        history._lists, history._start, history._end = (util, temp, mem), start, end
        return history

    def _series(self) -> tuple[Sequence[float | None], ...]:
        windows = self._windows
        if windows is None:
            windows = self._windows = tuple(SeriesWindow(points, self._start, self._end) for points in self._lists)
        return windows

    @property
    def util_pct(self) -> Sequence[float | None]:
        return self._series()[0]

    @property
    def temp_c(self) -> Sequence[float | None]:
        return self._series()[1]

    @property
    def mem_pct(self) -> Sequence[float | None]:
        return self._series()[2]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GpuHistory):
            return NotImplemented
        return other is self or self._series() == other._series()

    def __hash__(self) -> int:
        return hash(tuple(tuple(series) for series in self._series()))

    def __repr__(self) -> str:
        util, temp, mem = self._series()
        return f"GpuHistory(util_pct={tuple(util)!r}, temp_c={tuple(temp)!r}, mem_pct={tuple(mem)!r})"


@dataclass(frozen=True, slots=True)
class GpuTimelinePoint:
    """A VM's GPUs over one bucket of a long timeline (services/gpu_timeline.py): the
    hottest GPU, VRAM used and total summed over GPUs, power summed; each the bucket's max."""

    at_s: float
    """The bucket's start, epoch seconds."""
    temp_c: float | None = None
    vram_used_mib: float | None = None
    vram_total_mib: float | None = None
    power_w: float | None = None


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as the panes show it: its latest sample, levels, freshness and history."""

    sample: GpuSample
    temp_level: Level
    mem_level: Level
    stale: bool
    age_s: float
    history: GpuHistory = GpuHistory()


@dataclass(frozen=True, slots=True)
class HostTelemetry:
    """Everything live about one host (a VM, or the local machine)."""

    host: str
    state: FeedState
    message: str = ""
    gpus: tuple[GpuView, ...] = ()
    processes: tuple[GpuProcess, ...] = ()
    services: tuple[ServiceHealth, ...] = ()
    updated_at: datetime | None = None
    """When the last GPU sample arrived; None before the first."""


@dataclass(frozen=True, slots=True)
class HostOutline:
    """A host without its GPU views: what a list of every host needs (its rows, its state).

    Cheap to take for 100 hosts every second, where building every host's GPU views is
    not: a view of 800 GPUs draws the 20 rows on screen."""

    host: str
    state: FeedState
    message: str = ""
    gpu_indices: tuple[int, ...] = ()
    """The indices of the GPUs `HostTelemetry.gpus` holds, in its order."""
    services: tuple[ServiceHealth, ...] = ()

    @classmethod
    def of(cls, host: HostTelemetry) -> HostOutline:
        indices = tuple(view.sample.index for view in host.gpus)
        return cls(host.host, host.state, host.message, indices, host.services)


HostBuilder = Callable[[str], "HostTelemetry | None"]


class TelemetrySnapshot:
    """The fleet's telemetry at `at`: an outline of every host, and each host in full on demand.

    Made from finished `HostTelemetry`s (the CLI, tests), or by the hub with
    `TelemetrySnapshot.lazy`: then a host's GPU views are built when first asked for
    (`host(name)`, or all of them through `hosts`), once per snapshot. The console's
    tick takes a snapshot every second but draws a few hosts: the GPU rows and VM panes
    on screen. A host built later than `at` (a row scrolled into view between two ticks)
    shows the feed as it is then, aged from `at`: newer, never older, than the outline.
    """

    __slots__ = ("_build", "_built", "_by_name", "_hosts", "at", "outlines")

    def __init__(self, at: datetime, hosts: Sequence[HostTelemetry] = ()) -> None:
        self.at = at
        self._hosts: tuple[HostTelemetry, ...] | None = tuple(hosts)
        self.outlines: tuple[HostOutline, ...] = tuple(HostOutline.of(host) for host in self._hosts)
        self._built: dict[str, HostTelemetry | None] = {host.host: host for host in self._hosts}
        self._build: HostBuilder | None = None
        self._by_name: dict[str, HostOutline] | None = None

    @classmethod
    def lazy(cls, at: datetime, outlines: Sequence[HostOutline], build: HostBuilder) -> TelemetrySnapshot:
        """A snapshot whose hosts are built by `build(name)` when first read."""
        snapshot = cls(at)
        snapshot.outlines = tuple(outlines)
        snapshot._hosts = None
        snapshot._build = build
        return snapshot

    @property
    def hosts(self) -> tuple[HostTelemetry, ...]:
        """Every host in full (builds those not built yet)."""
        if self._hosts is None:
            hosts = (self.host(outline.host) for outline in self.outlines)
            self._hosts = tuple(host for host in hosts if host is not None)
        return self._hosts

    def outline(self, name: str) -> HostOutline | None:
        by_name = self._by_name
        if by_name is None:
            by_name = self._by_name = {outline.host: outline for outline in self.outlines}
        return by_name.get(name)

    def host(self, name: str) -> HostTelemetry | None:
        built = self._built
        if name in built:
            return built[name]
        host = None
        if self._build is not None and self.outline(name) is not None:
            host = self._build(name)
        built[name] = host
        return host

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelemetrySnapshot):
            return NotImplemented
        return self.at == other.at and self.hosts == other.hosts

    __hash__ = None  # type: ignore[assignment]  # equal by content, which may still be built

    def __repr__(self) -> str:
        return f"TelemetrySnapshot(at={self.at!r}, hosts={len(self.outlines)})"
