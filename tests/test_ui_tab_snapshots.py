"""Whole-app pictures of the GPUs and Services tabs with telemetry on (80x24, stored under
snapshots/test_ui_tab_snapshots/).

The app runs on the demo fleet with its real telemetry (SSH servers with simulated RTX
4090s, service fakes) until the hub reports live data and the services have been
checked once. Then the hub is stopped and what is drawn is pinned, so every run draws
the same picture: the states, messages and services the hub reported, with latencies
pinned, and each GPU replayed from the demo's simulation at fixed instants through the
real nvidia-smi parser and level hysteresis (`pinned`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from textual.pilot import Pilot

from aiconsole.demo.fleet import DemoFleet
from aiconsole.demo.gpu_sim import SimulatedGpu, smi_round
from aiconsole.domain.gpu import GpuFrame, GpuStreamParser
from aiconsole.domain.gpu_levels import GpuThresholds, Level, crossings, gpu_key, mem_percent
from aiconsole.domain.health import HealthState
from aiconsole.domain.telemetry import GpuHistory, GpuView, TelemetrySnapshot
from ui_helpers import FIXED_NOW, fast_fleet, fleet_ready, telemetry_app, telemetry_live, wait_until

SIZE = (80, 24)

REPLAY_FROM = 1_000_000.0
"""Simulated seconds: the GPUs are replayed from here (the demo's waves are pure functions of time)."""
REPLAY_SECONDS = 60
PINNED_LATENCY_MS = 4.0


class PinnedTelemetry:
    """A telemetry source that always answers the same snapshot (and no crossings)."""

    def __init__(self, snapshot: TelemetrySnapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self) -> TelemetrySnapshot:
        return self._snapshot

    def take_crossings(self) -> list:
        return []


def replayed_gpus(gpus: tuple[SimulatedGpu, ...], thresholds: GpuThresholds) -> tuple[GpuView, ...]:
    """The demo's GPUs over REPLAY_SECONDS, as nvidia-smi prints them, parsed by the real parser."""
    parser = GpuStreamParser()
    frames: list[GpuFrame] = []
    start = FIXED_NOW - timedelta(seconds=REPLAY_SECONDS - 1)
    for second in range(REPLAY_SECONDS):
        at = start + timedelta(seconds=second)
        frames += parser.feed(smi_round(gpus, REPLAY_FROM + second), at)
    frames += parser.flush(FIXED_NOW)
    levels: dict = {}
    for frame in frames:
        levels, _ = crossings(levels, frame, thresholds)
    views = []
    for sample in frames[-1].gpus:
        mine = [next(s for s in frame.gpus if s.index == sample.index) for frame in frames]
        history = GpuHistory(
            util_pct=tuple(s.util_pct for s in mine),
            temp_c=tuple(s.temp_c for s in mine),
            mem_pct=tuple(mem_percent(s.mem_used_mib, s.mem_total_mib) for s in mine),
        )
        key = gpu_key(sample)
        temp, vram = (levels.get((key, metric), Level.OK) for metric in ("temp", "vram"))
        views.append(GpuView(sample, temp, vram, stale=False, age_s=0.4, history=history))
    return tuple(views)


def pinned(live: TelemetrySnapshot, fleet: DemoFleet) -> TelemetrySnapshot:
    """What the hub reported (states, messages, services), with what moves with time pinned."""
    hosts = []
    for host in live.hosts:
        gpus = ()
        if host.gpus:
            gpus = replayed_gpus(fleet.telemetry.hosts[host.host].gpus, GpuThresholds())
        services = tuple(
            replace(
                service,
                latency_ms=None if service.latency_ms is None else PINNED_LATENCY_MS,
                checked_at=None if service.checked_at is None else FIXED_NOW,
            )
            for service in host.services
        )
        updated = FIXED_NOW if host.updated_at is not None else None
        hosts.append(replace(host, gpus=gpus, processes=(), services=services, updated_at=updated))
    return TelemetrySnapshot(FIXED_NOW, tuple(hosts))


def pin_after_live(fleet: DemoFleet, key: str) -> Callable[[Pilot], object]:
    """run_before: live telemetry (and services checked), then the hub stopped and its data pinned."""

    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await fleet_ready(pilot)
        await telemetry_live(pilot, services=True)
        live = app.hub.snapshot()
        states = {s.name: s.state for host in live.hosts for s in host.services}
        assert states == {
            "ollama": HealthState.UP,
            "open-webui": HealthState.UP,
            "mlflow": HealthState.UNKNOWN,  # training is stopped: not asked
            "localai": HealthState.STARTING,  # loading its model for the demo's first 20 s
            "knowledge-api": HealthState.UP,
        }
        app.workers.cancel_group(app, "telemetry")
        await wait_until(pilot, lambda: not any(w.group == "telemetry" for w in app.workers), what="the hub to stop")
        app.console_tabs.use_telemetry(PinnedTelemetry(pinned(live, fleet)))
        await pilot.press(key)
        await pilot.pause()
        app.clear_notifications()
        await pilot.pause()

    return run_before


def test_gpus_tab_with_live_telemetry(snap_compare, tmp_path: Path) -> None:
    """inference and homelab: one RTX 4090 each (60 s of history); training off; brain without GPU."""
    fleet = fast_fleet()
    app = telemetry_app(tmp_path, fleet=fleet)
    assert snap_compare(app, terminal_size=SIZE, run_before=pin_after_live(fleet, "2"))


def test_services_tab_with_live_telemetry(snap_compare, tmp_path: Path) -> None:
    """Up (with version), starting (LocalAI's 503 while loading), not checked (a stopped VM)."""
    fleet = fast_fleet()
    app = telemetry_app(tmp_path, fleet=fleet)
    assert snap_compare(app, terminal_size=SIZE, run_before=pin_after_live(fleet, "3"))
