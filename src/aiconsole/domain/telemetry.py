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


@dataclass(frozen=True, slots=True)
class GpuHistory:
    """The last minutes of one GPU, oldest first, one point per sample (None = unknown).

    Immutable sequences: tuples, or the feeds' `SeriesWindow`s (views without a copy)."""

    util_pct: Sequence[float | None] = ()
    temp_c: Sequence[float | None] = ()
    mem_pct: Sequence[float | None] = ()


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
