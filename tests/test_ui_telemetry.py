"""The console with telemetry on: live GPU gauges on the running VMs' panes, over SSH.

The demo fleet's SSH servers (simulated RTX 4090s) on loopback are the peers.
"""

from __future__ import annotations

import asyncio

from ui_helpers import StoppedClock, demo_env, fast_fleet

from aiconsole.domain.telemetry import FeedState
from aiconsole.runtime import DEMO_SOURCE, demo_runtime
from aiconsole.ui.app import AiConsoleApp
from aiconsole.ui.widgets.vm_card import VmCard


async def test_running_vms_show_gauges_stopped_ones_none_and_gpu_use_resets_idle(tmp_path) -> None:
    fleet, clock = fast_fleet(), StoppedClock()
    app = AiConsoleApp(
        lambda: demo_runtime(demo_env(tmp_path), clock=clock, fleet=fleet, transition_poll_seconds=0.1),
        source=DEMO_SOURCE,
    )
    async with app.run_test(size=(80, 40)) as pilot:
        async with asyncio.timeout(20):
            while app.hub is None:
                await pilot.pause(0.1)
            hub = app.hub
            while hub.snapshot().host("inference").state is not FeedState.LIVE:
                await pilot.pause(0.1)
            while hub.snapshot().host("brain").state is not FeedState.NO_GPU:
                await pilot.pause(0.1)
            inference = app.query_one("#vm-inference", VmCard)
            while "last: gpu" not in inference.render().plain:  # the hub reports busy GPUs each second
                await pilot.pause(0.2)
                app.fleet.redraw()
        await pilot.pause()
        cards = {card.vm_name: card.render().plain for card in app.query(VmCard)}
        assert "GPU0 4090" in cards["inference"] and "VRAM" in cards["inference"]
        assert "GPU0" not in cards["training"], "a stopped VM has no GPU block"
        assert "no GPU" in cards["brain"]
        assert "last: gpu: GPU busy" in cards["inference"], "GPU use is an activity signal"
        assert hub.snapshot().host("training").state is FeedState.OFF
        assert fleet.telemetry.servers["training"].connections_made == 0, "a stopped VM opens no connection"
