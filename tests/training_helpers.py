"""The Training tab alone in an app, fed by a real `TrainingWatch` against the demo's FakeMlflow.

The fake and the watch share one clock that stands still unless the test moves it, so the
runs, their durations and the "last metric" ages are the same on every run (snapshots). The
GPU timeline is filled with a fixed, made-up history over the running run's span.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from textual.app import App, ComposeResult
from textual.widgets import Footer

from aiconsole.demo.mlflow_api import FakeMlflow
from aiconsole.domain.gpu import GpuSample
from aiconsole.domain.power import PowerState
from aiconsole.domain.training import TrackingServer
from aiconsole.services.endpoints import Endpoints
from aiconsole.services.gpu_timeline import GpuTimeline
from aiconsole.services.training import TrainingOptions, TrainingWatch
from aiconsole.ui.training_pane import TrainingPane, TrainingPaneOptions
from providers_conftest import FakeClock

NOW = 1_795_000_000.0
"""2026-11-18 11:06:40 UTC."""
SERVER = TrackingServer("training", "mlflow", hourly_usd=0.35)
RUNNING = {"training": PowerState.RUNNING}


def gpu_timeline(start_s: float, end_s: float, timeline: GpuTimeline | None = None) -> GpuTimeline:
    """A made-up, fixed GPU history from `start_s` (the run's start) to `end_s`: warming up
    to ~76 °C, VRAM filling, power near its limit (added to `timeline` if given)."""
    timeline = timeline or GpuTimeline()
    at = start_s
    while at <= end_s:
        x = min(1.0, (at - start_s) / 600.0)
        temp = 45 + 31 * (1 - math.exp(-6 * x)) + 2 * math.sin(40 * x)
        vram = 2000 + 19_000 * min(1.0, 4 * x)
        power = 120 + 270 * min(1.0, 5 * x) + 15 * math.sin(25 * x)
        stamp = datetime.fromtimestamp(at, UTC)
        timeline.record(
            "training", at, [GpuSample(0, "GPU-0", "RTX 4090", temp, vram, 24564.0, 97.0, power, 450.0, stamp)]
        )
        at += 30.0
    return timeline


class TrainingTab(App[None]):
    """The Training tab and its footer, fed by `watch` (its list read once at mount, then by
    the test: `read_all`), drawn twice a second as the console's tick would."""

    def __init__(self, watch: TrainingWatch, timeline: GpuTimeline | None, *, tail_s: float = 0.2) -> None:
        super().__init__()
        self.watch, self.timeline = watch, timeline
        self.pane = TrainingPane(TrainingPaneOptions(tail_s=tail_s), id="training")

    def compose(self) -> ComposeResult:
        yield self.pane
        yield Footer()

    async def on_mount(self) -> None:
        await self.watch.read_all(RUNNING)
        self.pane.use_watch(self.watch, self.timeline)
        self.pane.shown()
        self.pane.draw()
        self.pane.focus_target.focus()
        # On the screen, as the console's tick is on ConsoleTabs: a timer stops when its owner
        # closes, and the screen closes before the tab's widgets are removed. On the app it
        # would go on ticking while they go, and a draw then finds its widgets gone (NoMatches).
        self.screen.set_interval(0.5, self.pane.draw)

    async def on_unmount(self) -> None:
        await self.watch.aclose()


class TrainingApp(TrainingTab):
    """The tab on the demo's FakeMlflow; `move_on(s)` moves the fake's runs and the GPU on."""

    def __init__(self, fake: FakeMlflow, clock: FakeClock, *, tail_s: float = 0.2, timeline: bool = True) -> None:
        self.fake, self.clock = fake, clock
        now = lambda: datetime.fromtimestamp(clock(), UTC)
        start = fake.running.start_ms / 1000
        super().__init__(
            watch_on(fake.url, clock=now), gpu_timeline(start, clock()) if timeline else None, tail_s=tail_s
        )

    async def move_on(self, seconds: float) -> None:
        """Time passes: the run logs more steps, the GPU more samples, and the watch reads again
        (as its own loop would every `refresh_s`)."""
        self.clock.now += seconds
        if self.timeline is not None:
            gpu_timeline(self.fake.running.start_ms / 1000, self.clock(), self.timeline)
        await self.watch.read_all(RUNNING)

    async def on_mount(self) -> None:
        await self.fake.start()
        await super().on_mount()

    async def on_unmount(self) -> None:
        await super().on_unmount()
        await self.fake.close()


def watch_on(url: str, **options) -> TrainingWatch:
    """A watch of the one server `SERVER` at `url`."""
    endpoints = Endpoints()
    endpoints.add(SERVER.vm, SERVER.service, url)
    return TrainingWatch([SERVER], endpoints, TrainingOptions(), **options)


def training_app(**options) -> TrainingApp:
    clock = FakeClock(NOW)
    fake = FakeMlflow(clock=clock, step_every_s=2.0, running_for_s=600.0)
    fake.server.bind()
    return TrainingApp(fake, clock, **options)
