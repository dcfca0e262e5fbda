"""What the Training tab holds between polls: each followed run's points, and the view's choices.

No Textual here: the pane (training_pane.py) owns one `RunPoints` per run it follows and
hands their series to the chart. Points arrive through `RunFollower.poll()` (only what is
new after the first load), so a run of 100,000 steps is read once and then a few points
at a time; the lists here only grow at their end.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiconsole.domain.chart import ChartSeries
from aiconsole.domain.mlflow import MetricPoint, Run
from aiconsole.domain.training import STATUS_FILTERS, TrackingServer, run_label

PREFERRED_METRICS = ("train_loss", "loss", "eval_loss", "val_loss", "perplexity", "eval_accuracy", "accuracy")
"""Charted first, in this order; the run's other metrics follow by name."""
KEEP_RUNS = 4
"""Runs whose points stay in memory (the shown, the pinned, and two to go back to)."""

RunKey = tuple[str, str, str]
"""(vm, service, run id)."""


@dataclass(eq=False)
class MetricTrack:
    """One metric of one run: steps, times (epoch s) and values, oldest first."""

    steps: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    _elapsed: tuple[float, list[float]] | None = None
    """(start, times - start), grown with `times`: the chart is drawn every second, and a new
    list of 100,000 points each time would also make it replot what did not move."""

    def extend(self, points: Iterable[MetricPoint], *, reset: bool = False) -> None:
        if reset:
            self.steps, self.times, self.values, self._elapsed = [], [], [], None
        for point in points:
            self.steps.append(float(point.step))
            self.times.append(point.timestamp.timestamp())
            self.values.append(point.value)

    def elapsed(self, start: float) -> list[float]:
        """Seconds since `start` of each point: the same list, grown, while `start` holds."""
        if self._elapsed is None or self._elapsed[0] != start:
            self._elapsed = (start, [])
        shifted = self._elapsed[1]
        shifted.extend(t - start for t in self.times[len(shifted) :])
        return shifted


@dataclass(eq=False)
class RunPoints:
    """A followed run: its latest state and the points of each metric read so far."""

    server: TrackingServer
    run_id: str
    run: Run | None = None
    tracks: dict[str, MetricTrack] = field(default_factory=dict)
    polled_at: datetime | None = None
    """The last poll that succeeded."""
    error: str = ""
    """The last poll's failure ("" after a success): the chart shows its points as stale."""
    follower: object | None = None
    """The run's `RunFollower`, made on first use and kept with the points it brought."""

    def apply(self, update, at: datetime) -> None:
        """A `RunUpdate` from `RunFollower.poll()`."""
        self.run, self.polled_at, self.error = update.run, at, ""
        for key, tail in update.metrics.items():
            if tail.points or tail.reset:
                self.tracks.setdefault(key, MetricTrack()).extend(tail.points, reset=tail.reset)

    def fail(self, message: str) -> None:
        self.error = message

    def metrics(self) -> list[str]:
        return ordered_metrics(set(self.tracks) | set(self.run.latest if self.run else ()))

    def series(self, key: str, x_kind: str) -> ChartSeries:
        """The metric as chart series: against steps, or seconds since the run started."""
        label = run_label(self.run) if self.run else self.run_id[:12]
        track = self.tracks.get(key)
        if track is None:
            return ChartSeries(label, (), ())
        if x_kind == "step":
            return ChartSeries(label, track.steps, track.values)
        return ChartSeries(label, track.elapsed(self.start_s), track.values)

    @property
    def start_s(self) -> float:
        """When the run started (epoch s): its first point's time if MLflow has no start."""
        if self.run is not None and self.run.start_time is not None:
            return self.run.start_time.timestamp()
        firsts = [track.times[0] for track in self.tracks.values() if track.times]
        return min(firsts) if firsts else 0.0


def ordered_metrics(keys: Iterable[str]) -> list[str]:
    keys = set(keys)
    first = [key for key in PREFERRED_METRICS if key in keys]
    return first + sorted(keys - set(first))


class RunCache(OrderedDict[RunKey, RunPoints]):
    """The followed runs, least recently shown dropped first (their points can be many)."""

    def get_or_add(self, server: TrackingServer, run_id: str) -> RunPoints:
        key = (server.vm, server.service, run_id)
        points = self.get(key)
        if points is None:
            points = self[key] = RunPoints(server, run_id)
        self.move_to_end(key)
        while len(self) > KEEP_RUNS:
            self.popitem(last=False)
        return points


@dataclass
class TrainingView:
    """The operator's choices on the tab (kept while it hides)."""

    status: str = STATUS_FILTERS[0]
    name: str = ""
    metric: str | None = None
    """The charted metric; None: the run's first (PREFERRED_METRICS order)."""
    log_y: bool = False
    x_kind: str = "step"
    """"step" or "time" (seconds since each run started; lines up with the GPU strips)."""
    params: bool = False
    """Show the params and tags instead of the chart."""
    pinned: RunKey | None = None
    """The run every other run is compared with on the chart."""

    def step_metric(self, metrics: list[str], step: int) -> None:
        if not metrics:
            return
        index = metrics.index(self.metric) if self.metric in metrics else 0
        self.metric = metrics[(index + step) % len(metrics)]

    def metric_for(self, metrics: list[str]) -> str | None:
        return self.metric if self.metric in metrics else (metrics[0] if metrics else None)
