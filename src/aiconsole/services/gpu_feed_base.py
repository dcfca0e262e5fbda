"""`GpuFeed`: the live GPU telemetry of one host, kept privately and read out as `HostTelemetry`.

A source (`RemoteGpuFeed`, `LocalGpuFeed` in gpu_feed.py, or anything else) pushes
frames, processes and its link state in; the UI and the CLI read an immutable
`HostTelemetry` out with `view(now)`, the notifier drains `take_crossings()`, and the
idle timer asks `busy(now)`.

Cost is what shapes this module: `view()` is called once a second for every host (100
hosts x 8 GPUs in the benchmark), so it returns the same object until something shown
would change: a frame, a state, the processes, or freshness (a GPU turning stale; while
stale, its age ticking over a whole second). Histories are bounded `Series` (one point
per sample for `history_s`); a view holds windows over them, not copies, so building one
costs O(GPUs) however long the history (domain/series.py). Per frame the work is O(GPUs)
too: one level update (`crossings`, with hysteresis) and three appends per GPU.

Freshness: a GPU is stale when its last sample is older than `STALE_AFTER_INTERVALS`
intervals, or whenever the source is not live (a stream that ended cannot refresh it,
however recent the value). The host is STALE when it has values but its source is
reconnecting, or when the newest frame is past its freshness; REFUSED, ERROR, NO_GPU and
OFF win over STALE because their message says what to do, while the GPUs still show,
stale, with their age.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from aiconsole.domain.gpu import GpuFrame, GpuProcess, GpuSample
from aiconsole.domain.gpu_levels import (
    GpuMetric,
    GpuThresholds,
    Level,
    LevelCrossing,
    LevelKey,
    crossings,
    gpu_key,
    is_gpu_busy,
    mem_percent,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.series import Series
from aiconsole.domain.telemetry import (
    STALE_AFTER_INTERVALS,
    FeedState,
    GpuHistory,
    GpuView,
    HostOutline,
    HostTelemetry,
)
from aiconsole.services.clock import utc_now

__all__ = ["GpuFeed", "OnChange", "utc_now"]

log = logging.getLogger(__name__)

OnChange = Callable[["GpuFeed"], None]
"""Called (with the feed) when what `view()` shows changed: at most once per frame or state change."""

DEFAULT_HISTORY_S = 300.0
_MAX_QUEUED_CROSSINGS = 1000  # a notifier that stops draining must not grow memory
_MESSAGE_LIMIT = 300
_FOREVER = datetime.max.replace(tzinfo=UTC)
_TEMP = GpuMetric.TEMP.value
_VRAM = GpuMetric.VRAM.value


_POINTS: dict[float, float] = {}
_MAX_POINTS = 8192


def _point(value: float | None) -> float | None:
    """One shared float object per distinct history value (bounded).

    800 GPUs x 300 points x 3 series are 720k floats: as separate objects, 17 MB; nvidia-smi's
    values repeat (whole degrees and percent), so sharing them keeps the histories small."""
    if value is None:
        return None
    point = _POINTS.get(value)
    if point is None:
        if len(_POINTS) >= _MAX_POINTS:
            return value
        _POINTS[value] = point = value
    return point


def _mem_point(sample: GpuSample) -> float | None:
    # A tenth of a percent is finer than a history strip shows, and keeps the values few.
    pct = mem_percent(sample.mem_used_mib, sample.mem_total_mib)
    return None if pct is None else _point(round(pct, 1))


class _GpuTrack:
    """One GPU's latest sample and its history series (mutable, private to the feed)."""

    __slots__ = ("at_s", "history", "key", "mem", "sample", "temp", "util")

    def __init__(self, key: str, sample: GpuSample, at_s: float, length: int) -> None:
        self.key = key
        self.util, self.temp, self.mem = Series(length), Series(length), Series(length)
        self._append(sample, at_s)

    def add(self, sample: GpuSample, at_s: float) -> None:
        """`at_s`: `sample.at` as a timestamp (taken once per frame by the caller)."""
        if sample is self.sample:  # a round the parser reopened and emitted again: no new point
            return
        self._append(sample, at_s)

    def _append(self, sample: GpuSample, at_s: float) -> None:
        self.sample = sample
        self.at_s = at_s  # `_build` ages every GPU each second: floats, not timedeltas
        self.util.append(_point(sample.util_pct))
        self.temp.append(_point(sample.temp_c))
        self.mem.append(_mem_point(sample))
        self.history: GpuHistory | None = None

    def history_view(self) -> GpuHistory:
        if self.history is None:  # windows, not copies: O(1) whatever the history's length
            util, start, end = self.util.bounds()  # the three series grow in step: one start and end
            self.history = GpuHistory.of_series(util, self.temp.bounds()[0], self.mem.bounds()[0], start, end)
        return self.history


class GpuFeed:
    """The live GPU state of one host; sources write with `record_*`/`set_state`, readers `view`.

    Not thread-safe: use it from the event loop (sources that block, like NVML, hand
    their readings back to the loop first).
    """

    def __init__(
        self,
        host: str,
        *,
        interval_s: float = 1.0,
        thresholds: GpuThresholds | None = None,
        busy_util_pct: float = 10.0,
        history_s: float = DEFAULT_HISTORY_S,
        on_change: OnChange | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.host = host
        self.interval_s = interval_s
        self.thresholds = thresholds or GpuThresholds()
        self.busy_util_pct = busy_util_pct
        self.stale_after = timedelta(seconds=STALE_AFTER_INTERVALS * interval_s)
        self._stale_after_s = STALE_AFTER_INTERVALS * interval_s
        self.on_change = on_change
        self._history_len = max(2, math.ceil(history_s / interval_s))
        self._history_span = timedelta(seconds=history_s)
        self._link = FeedState.CONNECTING
        self._message = ""
        self._tracks: dict[str, _GpuTrack] = {}
        self._order: tuple[_GpuTrack, ...] = ()
        self._levels: Mapping[LevelKey, Level] = {}
        self._last_frame: GpuFrame | None = None
        self._processes: tuple[GpuProcess, ...] = ()
        self._crossings: deque[LevelCrossing] = deque(maxlen=_MAX_QUEUED_CROSSINGS)
        self._cache: HostTelemetry | None = None
        self._cache_until = _FOREVER
        self._outline: HostOutline | None = None  # the same object while nothing in it changed

    # --- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> FeedState:
        """The source's own state (LIVE once frames flow); `view().state` adds staleness."""
        return self._link

    @property
    def message(self) -> str:
        return self._message

    @property
    def last_frame(self) -> GpuFrame | None:
        return self._last_frame

    def view(self, now: datetime) -> HostTelemetry:
        """The host as it stands at `now`; the same object until something shown changes."""
        cache = self._cache
        if cache is not None and now < self._cache_until:
            return cache
        return self._build(now)

    def outline(self, now: datetime) -> HostOutline:
        """The host without its GPU views: state, message and GPU indices, for every host
        every second (a view is built only for the hosts drawn; see `TelemetrySnapshot`)."""
        state, message = self._host_state(now, bool(self._order))
        indices = tuple([track.sample.index for track in self._order])
        outline = self._outline
        if outline is None or (outline.state, outline.message, outline.gpu_indices) != (state, message, indices):
            outline = self._outline = HostOutline(self.host, state, message, indices)
        return outline

    def take_crossings(self) -> list[LevelCrossing]:
        """The level crossings since the last call, oldest first (one per crossing, not per sample)."""
        taken = list(self._crossings)
        self._crossings.clear()
        return taken

    def busy(self, now: datetime) -> bool | None:
        """Whether a GPU is above `busy_util_pct`, from the latest frame if it is fresh.

        None (unknown, which the idle timer counts as busy) before the first frame, while
        the source is not live or its frame is stale, when a GPU's utilisation is
        unreadable, and on a host without GPU (`view().state` says NO_GPU there: whether
        such a host's GPU signal matters is the caller's decision).
        """
        frame = self._last_frame
        if frame is None or self._link is not FeedState.LIVE or now - frame.at > self.stale_after:
            return None
        return is_gpu_busy(frame, self.busy_util_pct)

    # --- writing (the sources) --------------------------------------------------------------

    def record_frames(self, frames: Iterable[GpuFrame], *, live: bool = True) -> None:
        """Take complete frames in order; `live`: they come from a running source (state LIVE)."""
        last = None
        added = False
        tracks, length = self._tracks, self._history_len
        for frame in frames:
            self._levels, found = crossings(self._levels, frame, self.thresholds)
            if found:
                self._crossings.extend(found)
            frame_at = frame.at
            frame_s = frame_at.timestamp()  # the lines of a round share one time: one conversion
            for sample in frame.gpus:
                at_s = frame_s if sample.at is frame_at else sample.at.timestamp()
                key = gpu_key(sample)
                track = tracks.get(key)
                if track is None:
                    tracks[key] = _GpuTrack(key, sample, at_s, length)
                    added = True
                else:
                    track.add(sample, at_s)
            last = frame
        if last is None:
            return
        self._last_frame = last
        if len(tracks) > len(last.gpus):
            added |= self._forget_gone(last)
        if added:
            self._order = tuple(sorted(tracks.values(), key=lambda t: (t.sample.index, t.key)))
        if live and self._link is not FeedState.LIVE:
            self._set_link(FeedState.LIVE, "")
        self._changed()

    def record_processes(self, processes: tuple[GpuProcess, ...]) -> None:
        if processes != self._processes:
            self._processes = processes
            self._changed()

    def set_state(self, state: FeedState, message: str = "") -> None:
        """The source's state and why (sanitised here too: it may quote a remote's words)."""
        message = sanitize_line(message, _MESSAGE_LIMIT) if message else ""
        if state is self._link and message == self._message:
            return
        self._set_link(state, message)
        self._changed()

    # --- inside --------------------------------------------------------------------------------

    def _set_link(self, state: FeedState, message: str) -> None:
        previous, self._link, self._message = self._link, state, message
        if state is not previous:
            self._link_changed(state)

    def _link_changed(self, state: FeedState) -> None:
        """Hook for sources that wait for the feed to go live (or stop waiting)."""

    def _changed(self) -> None:
        self._cache = None
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:  # a repaint hook's bug must not end the feed
                log.exception("GPU feed listener for %s failed", self.host)

    def _forget_gone(self, frame: GpuFrame) -> bool:
        """Drop GPUs absent from frames for the whole history span; True if any went."""
        horizon = frame.at - self._history_span
        gone = [key for key, track in self._tracks.items() if track.sample.at < horizon]
        for key in gone:
            del self._tracks[key]
        if gone:
            self._levels = {level_key: level for level_key, level in self._levels.items() if level_key[0] not in gone}
        return bool(gone)

    def _build(self, now: datetime) -> HostTelemetry:
        # Runs for every host after every frame: 800 GPUs a second in the benchmark. Ages are
        # float seconds (a timedelta per step was a third of its cost).
        live = self._link is FeedState.LIVE
        stale_after_s, levels = self._stale_after_s, self._levels
        now_s = now.timestamp()
        until_s = math.inf
        views = []
        for track in self._order:
            age_s = now_s - track.at_s
            stale = not live or age_s > stale_after_s
            if age_s < 0.0:
                age_s = 0.0
            # Rebuild when this GPU turns stale, or (while stale) when its age passes a whole second.
            deadline = track.at_s + (math.floor(age_s) + 1 if stale else stale_after_s)
            if deadline < until_s:
                until_s = deadline
            key = track.key
            views.append(GpuView(
                track.sample, levels.get((key, _TEMP), Level.OK), levels.get((key, _VRAM), Level.OK),
                stale, age_s, track.history_view(),
            ))  # fmt: skip
        state, message = self._host_state(now, bool(views))
        last = self._last_frame
        telemetry = HostTelemetry(
            self.host, state, message, tuple(views), self._processes, updated_at=last.at if last else None
        )
        until = _FOREVER if until_s == math.inf else datetime.fromtimestamp(until_s, UTC)
        self._cache, self._cache_until = telemetry, until
        return telemetry

    def _host_state(self, now: datetime, has_gpus: bool) -> tuple[FeedState, str]:
        link, last = self._link, self._last_frame
        if link is FeedState.LIVE:
            if last is not None and now - last.at > self.stale_after:
                return FeedState.STALE, self._message or f"no new sample in {STALE_AFTER_INTERVALS} intervals"
            return FeedState.LIVE, self._message
        if link is FeedState.CONNECTING and has_gpus:
            return FeedState.STALE, self._message
        return link, self._message
