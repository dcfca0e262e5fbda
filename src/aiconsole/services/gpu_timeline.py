"""Each VM's GPU temperature, VRAM and power over hours, at a coarse step, for the Training tab.

The feeds keep five minutes of per-second history for the gauges; a training run lasts hours,
and its chart wants the GPU beside it over the same span. So the hub hands every VM's latest
frame here once a second, and this keeps one point per `bucket_s` per VM: the hottest GPU,
the VRAM used and total across GPUs, the power drawn across GPUs (each the bucket's maximum:
a spike is what the operator looks for). 24 hours at 30 s are 2,880 points per VM.

It covers what this console saw since it started: a run begun before that has a gap first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiconsole.domain.gpu import GpuSample
from aiconsole.domain.telemetry import GpuTimelinePoint

DEFAULT_BUCKET_S = 30.0
DEFAULT_SPAN_S = 24 * 3600.0


@dataclass(slots=True)
class _Bucket:
    """One bucket of one VM, filled while it is the newest; readers get frozen copies."""

    at_s: float
    """The bucket's start, epoch seconds."""
    temp_c: float | None = None
    vram_used_mib: float | None = None
    vram_total_mib: float | None = None
    power_w: float | None = None


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class GpuTimeline:
    def __init__(self, *, bucket_s: float = DEFAULT_BUCKET_S, span_s: float = DEFAULT_SPAN_S) -> None:
        if bucket_s <= 0 or span_s < bucket_s:
            raise ValueError(f"need 0 < bucket_s <= span_s, got {bucket_s}, {span_s}")
        self.bucket_s = bucket_s
        self._points: dict[str, deque[_Bucket]] = {}
        self._length = int(span_s // bucket_s) + 1
        self._last_at: dict[str, float] = {}

    def record(self, vm: str, at_s: float, gpus: Sequence[GpuSample]) -> None:
        """One frame of `vm` (all its GPUs at `at_s`); a frame already recorded is skipped."""
        if not gpus or self._last_at.get(vm) == at_s:
            return
        self._last_at[vm] = at_s
        points = self._points.get(vm)
        if points is None:
            points = self._points[vm] = deque(maxlen=self._length)
        start = at_s - at_s % self.bucket_s
        if not points or points[-1].at_s != start:
            if points and points[-1].at_s > start:
                return  # the clock went back: keep the timeline ordered
            points.append(_Bucket(start))
        point = points[-1]
        point.temp_c = _max(point.temp_c, max((g.temp_c for g in gpus if g.temp_c is not None), default=None))
        point.vram_used_mib = _max(point.vram_used_mib, _sum(g.mem_used_mib for g in gpus))
        point.vram_total_mib = _max(point.vram_total_mib, _sum(g.mem_total_mib for g in gpus))
        point.power_w = _max(point.power_w, _sum(g.power_w for g in gpus))

    def window(self, vm: str, start_s: float, end_s: float) -> list[GpuTimelinePoint]:
        """The points of `vm` whose bucket overlaps [start_s, end_s], oldest first."""
        points = self._points.get(vm, ())
        return [
            GpuTimelinePoint(p.at_s, p.temp_c, p.vram_used_mib, p.vram_total_mib, p.power_w)
            for p in points
            if p.at_s + self.bucket_s >= start_s and p.at_s <= end_s
        ]
