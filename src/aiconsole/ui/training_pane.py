"""The Training tab: the fleet's MLflow runs, one run's metrics charted live, its VM's GPU beneath.

    ┌ runs ───────────────┐┌ lora-r16 RUNNING 10m 12s · operator · training/mlflow ──────┐
    │ training/mlflow     ││ last metric 2s ago                                          │
    │ ● lora-r16   10m12s ││ train_loss ■ lora-r16 min 0.41 max 2.31 last 0.45           │
    │ ✓ lora-r8    40m00s ││ ⠉⠒⠤⣀ (braille chart)                                         │
    └─────────────────────┘│ temp ▂▃▅▇  VRAM ▅▅▆▆  power ▇▇▆▇ (same span)                   │

The runs come from the `TrainingWatch` (services/training.py), which reads every server in
the background (a RUNNING run is an activity signal for the idle timer, whichever tab
shows); the console's 1 s tick redraws the list from its snapshot. The shown run and the
pinned one are tailed here while the tab shows: one `RunFollower` poll each per `tail_s`,
fetching only the points logged since the last poll. A failed poll keeps the points shown
and says they are stale, with the error, until a poll succeeds again.

Every name, key, param and tag comes from MLflow and is untrusted: sanitised, and drawn as
`Content`, never as markup.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Input, Static

from aiconsole.domain.chart import GpuPoint
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.training import (
    ServerRuns,
    TrainingSnapshot,
    next_status_filter,
)
from aiconsole.ui.bindings import binding
from aiconsole.ui.training_lines import params_content, run_header, run_list_lines
from aiconsole.ui.training_state import RunCache, RunKey, RunPoints, TrainingView
from aiconsole.ui.widgets.metric_chart import GpuTimeline, MetricChart
from aiconsole.ui.widgets.selectable_lines import SelectableLines

if TYPE_CHECKING:
    from aiconsole.services.gpu_timeline import GpuTimeline as Timeline
    from aiconsole.services.training import TrainingWatch

log = logging.getLogger(__name__)

MUTED = "$foreground-muted"
MAX_STRIP_COLUMNS = 200
"""More columns than a GPU strip will ever have: the step at which a bucket is repeated."""
STARTING = "Starting the MLflow watch (after telemetry)…"
NO_SERVERS = (
    'No MLflow service in the config: add a [[vm.service]] with kind = "mlflow" to a VM (docs/configuration.md).'
)


@dataclass(frozen=True)
class TrainingPaneOptions:
    tail_s: float = 3.0
    stale_after_s: float = 45.0
    """The runs list of a server older than this (3 readings at the default 15 s) is stale."""

    @classmethod
    def of(cls, settings) -> TrainingPaneOptions:
        training = settings.training
        return cls(tail_s=training.tail_s, stale_after_s=3 * training.refresh_s)


class RunList(SelectableLines):
    """The runs, grouped by server, with the Training tab's own keys to move."""

    DEFAULT_CSS = "RunList { width: 100%; height: 1fr; }"
    BINDINGS = [binding("run-next", "move(1)", show=False), binding("run-previous", "move(-1)", show=False)]


class TrainingPane(Vertical):
    DEFAULT_CSS = """
    TrainingPane { height: 1fr; }
    TrainingPane > #training-status { height: auto; max-height: 3; padding: 0 1; }
    TrainingPane > Horizontal { height: 1fr; }
    TrainingPane #runs-column { width: 32; height: 1fr; border-right: vkey $panel-lighten-2; }
    TrainingPane #runs-filter { display: none; height: 1; border: none; padding: 0 1; }
    TrainingPane #runs-filter.-shown { display: block; }
    TrainingPane #run-detail { width: 1fr; padding: 0 0 0 1; }
    TrainingPane #run-header { height: auto; max-height: 4; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainingPane #run-params { height: 1fr; display: none; }
    TrainingPane.-params #run-params { display: block; }
    TrainingPane.-params MetricChart, TrainingPane.-params GpuTimeline { display: none; }
    """

    BINDINGS = [
        binding("run-compare", "compare", label="Compare"),
        binding("metric-next", "metric(1)", label="Metric"),
        binding("metric-previous", "metric(-1)", show=False),
        binding("chart-log", "log_scale", label="Log"),
        binding("chart-x-axis", "x_axis", label="Axis"),
        binding("run-params", "params", label="Params"),
        binding("runs-status", "status_filter", label="Status"),
        binding("runs-filter", "name_filter", label="Filter"),
        binding("runs-refresh", "refresh", label="Refresh", show=False),
    ]

    def __init__(self, options: TrainingPaneOptions | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.options = options or TrainingPaneOptions()
        self.watch: TrainingWatch | None = None
        self.timeline: Timeline | None = None
        self.view = TrainingView()
        self.cache = RunCache()
        self.snapshot: TrainingSnapshot | None = None
        self._status = STARTING
        self._visible = False
        self._servers: dict[RunKey, ServerRuns] = {}

    def compose(self) -> ComposeResult:
        status = Static(Content.styled(self._status, MUTED), id="training-status", markup=False)
        status.display = bool(self._status)
        yield status
        with Horizontal():
            with Vertical(id="runs-column"):
                yield Input(placeholder="run name…", id="runs-filter")
                yield RunList(Content.styled("no runs yet", MUTED), id="runs")
            with Vertical(id="run-detail"):
                yield Static("", id="run-header", markup=False)
                yield MetricChart(id="chart")
                yield GpuTimeline(id="gpu-timeline")
                with VerticalScroll(id="run-params"):
                    yield Static("", id="run-params-body", markup=False)

    # -- feeding -------------------------------------------------------------------------

    @property
    def focus_target(self):
        return self.query_one(RunList)

    def use_watch(self, watch: TrainingWatch, timeline: Timeline | None) -> None:
        """The watch runs: the list fills on the next tick (now, if the tab shows)."""
        self.watch, self.timeline = watch, timeline
        self._status = "" if watch.servers else NO_SERVERS
        if self._visible:
            watch.refresh_soon()
            self.draw()
            self._follow()

    def failed(self, error: object) -> None:
        self.watch = None
        self._status = sanitize_line(f"The Training tab is off: {error}", 300)
        self._say_status()

    def shown(self) -> None:
        """The tab came into view: read the servers now and follow the shown run."""
        self._visible = True
        if self.watch is not None:
            self.watch.refresh_soon()
            self._follow()

    def hidden(self) -> None:
        self._visible = False
        self.workers.cancel_group(self, "training-tail")

    # -- drawing -------------------------------------------------------------------------

    def draw(self) -> None:
        """The console's tick: the list from the watch's snapshot, the shown run's header."""
        watch = self.watch
        self._say_status()
        if watch is None:
            return
        self.snapshot = snapshot = watch.snapshot()
        lines, items, servers = run_list_lines(snapshot, self.view, self.options.stale_after_s)
        self._servers = servers
        self.query_one(RunList).show(lines, items)
        self._draw_detail(snapshot.at)

    def _say_status(self) -> None:
        if not self.is_mounted:  # told before it composed (telemetry off): compose says it
            return
        status = self.query_one("#training-status", Static)
        status.display = bool(self._status)
        status.update(Content.styled(self._status, MUTED))

    @property
    def selected(self) -> RunKey | None:
        key = self.query_one(RunList).selected
        return key if isinstance(key, tuple) else None

    def _draw_detail(self, now: datetime) -> None:
        key = self.selected
        shown = self._points(key)
        header = self.query_one("#run-header", Static)
        if shown is None or key is None:
            header.update(Content.styled("Select a run (up/down).", MUTED))
            self.query_one(MetricChart).show((), title="", log_y=self.view.log_y, x_kind=self.view.x_kind)
            return
        run = shown.run or self._listed_run(key)
        pinned = self._points(self.view.pinned) if self.view.pinned != key else None
        header.update(run_header(run, shown, pinned, now, self.options.tail_s))
        if self.view.params:
            self.query_one("#run-params-body", Static).update(params_content(run))
            return
        self._draw_chart(shown, pinned, now)

    def _draw_chart(self, shown: RunPoints, pinned: RunPoints | None, now: datetime) -> None:
        view = self.view
        runs = [shown] + ([pinned] if pinned is not None else [])
        metrics = shown.metrics()
        metric = view.metric_for(metrics)
        chart = self.query_one(MetricChart)
        if metric is None:
            chart.show((), title="", log_y=view.log_y, x_kind=view.x_kind)
            self.query_one(GpuTimeline).show((), 0.0, 0.0)
            return
        series = [points.series(metric, view.x_kind) for points in runs]
        note = f"metric {metrics.index(metric) + 1}/{len(metrics)} (m/n)"
        chart.show(series, title=sanitize_line(metric, 80), log_y=view.log_y, x_kind=view.x_kind, note=note)
        self._draw_gpu(shown, series, now)

    def _draw_gpu(self, shown: RunPoints, series, now: datetime) -> None:
        """The VM's GPU over the shown run's span, in seconds since it started: against time,
        the chart's own x span (every series'), so each column lines up with the chart's;
        against steps, the run's whole time span."""
        strips = self.query_one(GpuTimeline)
        if self.timeline is None or shown.run is None:
            strips.show((), 0.0, 0.0)
            return
        start = shown.start_s
        end = shown.run.end_time.timestamp() if shown.run.end_time else now.timestamp()
        drawn = [s.xs for s in series if len(s.xs)]
        if self.view.x_kind == "time" and drawn:
            x_min, x_max = min(xs[0] for xs in drawn), max(xs[-1] for xs in drawn)
        else:
            x_min, x_max = 0.0, end - start
        strips.show(self._gpu_points(shown.server.vm, start, x_min, x_max, now.timestamp()), x_min, x_max)

    def _gpu_points(self, vm: str, start: float, x_min: float, x_max: float, now_s: float) -> list[GpuPoint]:
        """The timeline's buckets as points in the chart's seconds. A bucket stands for its whole
        width, so it is repeated across it (at most ~MAX_STRIP_COLUMNS steps over the span):
        a column narrower than a bucket shows it rather than a gap."""
        timeline = self.timeline
        assert timeline is not None
        bucket = timeline.bucket_s
        step = min(bucket, max((x_max - x_min) / MAX_STRIP_COLUMNS, 0.5))
        points = []
        for p in timeline.window(vm, start + x_min, start + x_max):
            at, end = p.at_s, min(p.at_s + bucket * 0.999, now_s)
            while True:
                points.append(GpuPoint(at - start, p.temp_c, p.vram_used_mib, p.vram_total_mib, p.power_w))
                if at >= end:
                    break
                at = min(at + step, end)
        return points

    def _points(self, key: RunKey | None) -> RunPoints | None:
        if key is None:
            return None
        server = self._servers.get(key)
        if server is None:  # not listed (filtered out, or its server gone): only what is kept
            return self.cache.get(key)
        return self.cache.get_or_add(server.server, key[2])

    def _listed_run(self, key: RunKey):
        server = self._servers.get(key)
        if server is None:
            return None
        return next((run for run in server.runs if run.id == key[2]), None)

    # -- following -----------------------------------------------------------------------

    def on_selectable_lines_selected(self, event: SelectableLines.Selected) -> None:
        if self.snapshot is not None:
            self._draw_detail(self.snapshot.at)
        self._follow()

    def _follow(self) -> None:
        if self._visible and self.watch is not None and self.selected is not None:
            self._tail(self.selected, self.view.pinned)

    @work(exclusive=True, group="training-tail", exit_on_error=False)
    async def _tail(self, shown: RunKey, pinned: RunKey | None) -> None:
        """Poll the shown and the pinned run every `tail_s` until the selection changes
        (a new worker replaces this one) or the tab hides. A finished run, once read to its
        end, is not asked again."""
        watch = self.watch
        assert watch is not None
        followers = {}
        for key in dict.fromkeys(k for k in (shown, pinned) if k is not None):
            points = self._points(key)
            if points is not None:
                # One follower per run for as long as its points are kept: a new one would
                # read the whole history again, and the points would be there twice.
                if points.follower is None:
                    points.follower = watch.follow(points.server, key[2])
                followers[key] = points
        while followers:
            for key, points in list(followers.items()):
                await self._poll(points)
                if points.follower.done:
                    del followers[key]
            if self.snapshot is not None:
                self._draw_detail(watch.now())
            await asyncio.sleep(self.options.tail_s)

    async def _poll(self, points: RunPoints) -> None:
        from aiconsole.services.training import TrainingError

        try:
            update = await points.follower.poll()
        except TrainingError as error:
            points.fail(error.detail)
            return
        except Exception as error:  # a bug or a library surprise: shown as stale, never fatal
            log.exception("tailing %s failed", points.run_id)
            points.fail(sanitize_line(f"{type(error).__name__}: {error}", 200))
            return
        if self.watch is not None:
            points.apply(update, self.watch.now())

    # -- actions -------------------------------------------------------------------------

    def action_compare(self) -> None:
        key = self.selected
        if key is None:
            self.notify("Select a run first (up/down).", severity="warning")
            return
        self.view.pinned = None if self.view.pinned == key else key  # the header says which
        self._redraw_and_follow()

    def action_metric(self, step: int) -> None:
        shown = self._points(self.selected)
        if shown is not None:
            self.view.step_metric(shown.metrics(), step)
            self._redraw()

    def action_log_scale(self) -> None:
        self.view.log_y = not self.view.log_y
        self._redraw()

    def action_x_axis(self) -> None:
        self.view.x_kind = "step" if self.view.x_kind == "time" else "time"
        self._redraw()

    def action_params(self) -> None:
        self.view.params = not self.view.params
        self.set_class(self.view.params, "-params")
        self._redraw()

    def action_status_filter(self) -> None:
        self.view.status = next_status_filter(self.view.status)
        self._redraw()

    def action_name_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.add_class("-shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.view.name = event.value
        self._redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(RunList).focus()

    def on_key(self, event) -> None:
        box = self.query_one("#runs-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.remove_class("-shown")
            self.query_one(RunList).focus()

    def action_refresh(self) -> None:
        if self.watch is not None:
            self.watch.refresh_soon()
            self.notify("Reading every MLflow server again…", timeout=2)

    def _redraw(self) -> None:
        if self.watch is not None:
            self.draw()

    def _redraw_and_follow(self) -> None:
        self._redraw()
        self._follow()

    def commands(self) -> list[tuple[str, str, object]]:
        """(title, help, callback) for the palette."""
        return [
            (
                "Training: compare",
                "Pin the selected run; the next one you select is charted with it",
                self.action_compare,
            ),
            ("Training: next metric", "Chart the run's next metric", lambda: self.action_metric(1)),
            ("Training: log scale", "Log scale on/off", self.action_log_scale),
            ("Training: steps or time", "Chart against steps or time since start", self.action_x_axis),
            ("Training: params and tags", "Show the run's params and tags", self.action_params),
            ("Training: status filter", "All, RUNNING, FINISHED, FAILED, KILLED", self.action_status_filter),
            ("Training: filter by name", "Type part of a run's name", self.action_name_filter),
            ("Training: refresh", "Read every MLflow server again now", self.action_refresh),
        ]
