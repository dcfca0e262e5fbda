"""GPU threshold levels with hysteresis, the crossings worth one notification, and busyness.

A level goes UP as soon as a value reaches a threshold, and comes DOWN only once the
value is below that threshold minus a margin, so a temperature hovering at 75 °C gives
one warning, not one per sample. The caller keeps the levels between frames (a plain
dict) and passes them back in; nothing here holds state or reads a clock.

Unknown values (None, e.g. `[N/A]`) keep the previous level: flipping to OK would send
a false "recovered", flipping up would invent an alarm. Showing that the value is
unknown or stale is the caller's job (it has the sample's age).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiconsole.domain.gpu import GpuFrame, GpuSample


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


class GpuMetric(StrEnum):
    TEMP = "temp"
    VRAM = "vram"


_RANK = {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 2}
_TEMP, _VRAM = GpuMetric.TEMP.value, GpuMetric.VRAM.value

LevelKey = tuple[str, str]
"""(GPU uuid, metric) — uuid rather than index: indices can change across reboots."""


@dataclass(frozen=True, slots=True)
class GpuThresholds:
    """Where GPU gauges turn warning and critical (defaults from FLEET.md)."""

    temp_warn_c: float = 75.0
    temp_critical_c: float = 85.0
    mem_warn_pct: float = 80.0
    mem_critical_pct: float = 95.0
    hysteresis_c: float = 3.0
    """A temperature level is left only below its threshold minus this."""
    hysteresis_pct: float = 3.0
    """A VRAM level is left only below its threshold minus this many percentage points."""

    def __post_init__(self) -> None:
        if not 0 <= self.temp_warn_c <= self.temp_critical_c:
            raise ValueError("temp_warn_c must be >= 0 and <= temp_critical_c")
        if not 0 <= self.mem_warn_pct <= self.mem_critical_pct:
            raise ValueError("mem_warn_pct must be >= 0 and <= mem_critical_pct")
        if self.hysteresis_c < 0 or self.hysteresis_pct < 0:
            raise ValueError("hysteresis must not be negative")


def _level(value: float | None, warn: float, critical: float, margin: float, previous: Level) -> Level:
    if value is None:
        return previous
    held = _RANK[previous]
    # A level already reached is held down to threshold - margin; one above is reached at the threshold.
    if value >= critical - (margin if held >= 2 else 0.0):
        return Level.CRITICAL
    if value >= warn - (margin if held >= 1 else 0.0):
        return Level.WARNING
    return Level.OK


def temp_level(temp_c: float | None, thresholds: GpuThresholds, previous: Level = Level.OK) -> Level:
    """The temperature level after `previous`; `previous` again when the value is unknown."""
    t = thresholds
    return _level(temp_c, t.temp_warn_c, t.temp_critical_c, t.hysteresis_c, previous)


def mem_percent(used_mib: float | None, total_mib: float | None) -> float | None:
    """VRAM used in percent, or None when unknown (or a total of 0, as on some MIG setups)."""
    if used_mib is None or not total_mib:
        return None
    return 100.0 * used_mib / total_mib


def mem_level(
    used_mib: float | None,
    total_mib: float | None,
    thresholds: GpuThresholds,
    previous: Level = Level.OK,
) -> Level:
    """The VRAM level after `previous`; `previous` again when used or total is unknown."""
    return _pct_level(mem_percent(used_mib, total_mib), thresholds, previous)


@dataclass(frozen=True, slots=True)
class LevelCrossing:
    """A GPU metric moved to another level: notify once. `gpu_name` is already sanitised."""

    gpu_uuid: str
    gpu_index: int
    gpu_name: str
    metric: GpuMetric
    from_level: Level
    to_level: Level
    value: float
    """°C for temp, percent for vram."""
    at: datetime

    @property
    def rising(self) -> bool:
        return _RANK[self.to_level] > _RANK[self.from_level]


def gpu_key(sample: GpuSample) -> str:
    """The GPU's identity for levels: its uuid, or its index when the tool gave no uuid."""
    return sample.uuid or f"index:{sample.index}"


def crossings(
    previous_levels: Mapping[LevelKey, Level],
    frame: GpuFrame,
    thresholds: GpuThresholds,
) -> tuple[Mapping[LevelKey, Level], list[LevelCrossing]]:
    """New levels after `frame`, and the crossings to notify (one per change, not per sample).

    A GPU missing from the frame keeps its level, so one that drops out and comes back
    at the same level raises nothing. A GPU seen for the first time starts from OK: one
    that is already hot is notified. A missing key means OK.

    When no level changed (nearly every frame) the previous mapping itself comes back:
    this runs for every frame of every host, and copying the levels each time was most
    of its cost. `previous_levels` is never modified.
    """
    levels: dict[LevelKey, Level] | None = None
    found: list[LevelCrossing] = []
    t = thresholds
    for gpu in frame.gpus:
        uuid = gpu_key(gpu)
        temp_key, mem_key = (uuid, _TEMP), (uuid, _VRAM)
        mem = mem_percent(gpu.mem_used_mib, gpu.mem_total_mib)
        for key, value, warn, critical, margin, metric in (
            (temp_key, gpu.temp_c, t.temp_warn_c, t.temp_critical_c, t.hysteresis_c, GpuMetric.TEMP),
            (mem_key, mem, t.mem_warn_pct, t.mem_critical_pct, t.hysteresis_pct, GpuMetric.VRAM),
        ):
            before = (levels or previous_levels).get(key, Level.OK)
            after = _level(value, warn, critical, margin, before)
            if after is not before and value is not None:
                if levels is None:
                    levels = dict(previous_levels)
                levels[key] = after
                found.append(LevelCrossing(uuid, gpu.index, gpu.name, metric, before, after, value, gpu.at))
    return (previous_levels if levels is None else levels), found


def _pct_level(pct: float | None, thresholds: GpuThresholds, previous: Level) -> Level:
    t = thresholds
    return _level(pct, t.mem_warn_pct, t.mem_critical_pct, t.hysteresis_pct, previous)


def is_gpu_busy(frame: GpuFrame, util_threshold_pct: float = 10.0) -> bool | None:
    """True if any GPU is above the level, False if all are known and at or below it, else None.

    None means unknown (a GPU's utilisation is unreadable, or the frame has no GPU): the
    idle timer must treat it as busy, because unknown never counts as idle. A GPU above
    the level decides True even when another is unknown.
    """
    unknown = not frame.gpus
    for gpu in frame.gpus:
        if gpu.util_pct is None:
            unknown = True
        elif gpu.util_pct > util_threshold_pct:
            return True
    return None if unknown else False
