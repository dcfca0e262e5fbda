"""Immutable snapshots of GPU telemetry and service health, one per tick, for the UI and CLI.

`services.telemetry` builds them from the live feeds; the panes and `status --json`
only read them. A value past its freshness (3 missed intervals) is kept, marked
stale, with its age: never shown as fresh, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
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
class TelemetrySnapshot:
    at: datetime
    hosts: tuple[HostTelemetry, ...] = ()

    def host(self, name: str) -> HostTelemetry | None:
        return next((host for host in self.hosts if host.host == name), None)
