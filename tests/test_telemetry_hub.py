"""The telemetry hub follows the fleet: feeds and checks only for VMs that run.

Real peers on loopback: a `LoopbackSshServer` whose nvidia-smi is a simulated RTX 4090
(`demo.gpu_host`), and a fake Ollama reached through the VM's SSH port forward.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from aiconsole.config import settings_from_toml_text
from aiconsole.demo.gpu_host import GpuHost
from aiconsole.demo.gpu_sim import TRAINING_LOAD
from aiconsole.demo.health_api import FakeServiceHealth
from aiconsole.domain.fleet import BudgetSnapshot, FleetSnapshot, IdleStatus, VmSnapshot
from aiconsole.domain.health import HealthState
from aiconsole.domain.power import PowerState
from aiconsole.domain.telemetry import FeedState, HostOutline
from aiconsole.services.ssh import SshPool
from aiconsole.services.telemetry import TelemetryHub

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)


def fleet(**power: PowerState) -> FleetSnapshot:
    vms = tuple(
        VmSnapshot(name, "tensordock", state, 0.35, 0, 0, 0, IdleStatus(None, None), 30, True)
        for name, state in power.items()
    )
    return FleetSnapshot(NOW, vms, BudgetSnapshot(5, 50, 0, 0))


def config(ssh_target: str, ollama_port: int) -> str:
    return f"""
[gpu]
interval_s = 0.2
local = false

[[vm]]
name = "training"
provider = "static"
ssh = "{ssh_target}"
[[vm.service]]
name = "ollama"
kind = "ollama"
url = "http://127.0.0.1:{ollama_port}"
via_ssh = true

[[vm]]
name = "stopped-one"
provider = "static"
ssh = "{ssh_target}"
"""


def ssh_pool(server, tmp_path: Path, **options) -> SshPool:
    """A pool that trusts only `server` (its host key and client key), no agent, no ssh config."""
    return SshPool(
        known_hosts=server.known_hosts_path, config_file=tmp_path / "none", client_keys=[server.client_key_path],
        use_agent=False, **options,
    )  # fmt: skip


async def wait_until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_running_vm_gets_gpus_and_services_and_a_stopped_one_opens_no_connection(tmp_path: Path) -> None:
    host = GpuHost(seed=3, load=TRAINING_LOAD, count=2)
    async with host.serve(tmp_path / "ssh") as server, FakeServiceHealth("ollama") as ollama:
        port = int(ollama.url.rsplit(":", 1)[1].split("/")[0])
        settings = settings_from_toml_text(config(server.target, port), "test.toml")
        pool = ssh_pool(server, tmp_path, backoff_base_s=0.05, backoff_max_s=0.2)
        hub = TelemetryHub(settings, pool, health_interval_s=0.2)
        current = fleet(training=PowerState.RUNNING, **{"stopped-one": PowerState.STOPPED})
        runner = asyncio.create_task(hub.run(lambda: current.powers()))
        try:
            await wait_until(lambda: hub.snapshot().host("training").state is FeedState.LIVE)
            await wait_until(lambda: hub.snapshot().host("training").services[0].state is HealthState.UP)
            taken = hub.snapshot()
            training = taken.host("training")
            assert [gpu.sample.name for gpu in training.gpus] == ["NVIDIA GeForce RTX 4090"] * 2
            later = hub.snapshot()  # read only after the VM stopped: it still shows this moment's hosts
            assert later.outline("training") == HostOutline.of(training) and later.outline("training").gpu_indices == (0, 1)
            assert training.services[0].version == "0.12.6"
            assert training.services[0].url_shown == f"http://127.0.0.1:{port}"
            assert hub.snapshot().host("stopped-one").state is FeedState.OFF
            assert server.connections_made == 1, "only the running VM connects"
            assert hub.gpu_activity(NOW)["training"] == (True, "GPU busy")  # the training load keeps it above 10 %

            current = fleet(training=PowerState.STOPPED, **{"stopped-one": PowerState.STOPPED})
            await wait_until(lambda: hub.snapshot().host("training").state is FeedState.OFF, timeout=5)
            await wait_until(lambda: server.running_commands == 0, timeout=5)
            stopped_later = later.host("training")
            assert stopped_later is not None and [gpu.sample.index for gpu in stopped_later.gpus] == [0, 1]
            assert stopped_later.services[0].state is HealthState.UP
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await hub.aclose()


async def test_services_are_checked_as_soon_as_a_vm_runs_and_its_ssh_forward_is_up(tmp_path: Path) -> None:
    # An hour between rounds: only the VM starting (then connecting) can explain a prompt check.
    host = GpuHost(seed=3, load=TRAINING_LOAD)
    async with host.serve(tmp_path / "ssh") as server, FakeServiceHealth("ollama") as ollama:
        port = int(ollama.url.rsplit(":", 1)[1].split("/")[0])
        settings = settings_from_toml_text(config(server.target, port), "test.toml")
        pool = ssh_pool(server, tmp_path)
        hub = TelemetryHub(settings, pool, health_interval_s=3600)
        current = fleet(training=PowerState.STOPPED)
        runner = asyncio.create_task(hub.run(lambda: current.powers()))
        try:
            await asyncio.sleep(0.3)  # the first round has run: nothing was running
            assert hub.snapshot().host("training").services[0].state is HealthState.UNKNOWN
            current = fleet(training=PowerState.RUNNING)
            await wait_until(lambda: hub.snapshot().host("training").services[0].state is HealthState.UP, timeout=5)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await hub.aclose()


async def test_without_health_checks_the_gpus_come_and_no_service_is_asked(tmp_path: Path) -> None:
    """`aiconsole watch` runs the hub so: the GPU feed is the idle timer's; health goes unshown."""
    host = GpuHost(seed=3, load=TRAINING_LOAD)
    async with host.serve(tmp_path / "ssh") as server, FakeServiceHealth("ollama") as ollama:
        port = int(ollama.url.rsplit(":", 1)[1].split("/")[0])
        settings = settings_from_toml_text(config(server.target, port), "test.toml")
        pool = ssh_pool(server, tmp_path)
        hub = TelemetryHub(settings, pool, health_interval_s=0.1)
        current = fleet(training=PowerState.RUNNING)
        runner = asyncio.create_task(hub.run(lambda: current.powers(), health_checks=False))
        try:
            await wait_until(lambda: hub.snapshot().host("training").state is FeedState.LIVE)
            await asyncio.sleep(0.5)  # five health intervals: the connecting VM would have been checked
            assert ollama.server.requests_served == 0
            assert hub.snapshot().host("training").services[0].state is HealthState.UNKNOWN
            assert hub.gpu_activity(NOW)["training"] == (True, "GPU busy")
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await hub.aclose()


def test_gpu_activity_resets_the_idle_timer_and_is_saved_at_most_once_a_minute(tmp_path: Path) -> None:
    from datetime import timedelta

    from aiconsole.services.fleet import FleetMonitor
    from aiconsole.services.ledger import Ledger

    settings = settings_from_toml_text('[[vm]]\nname = "gpu-box"\nprovider = "static"\n', "t.toml")
    ledger = Ledger.open(tmp_path / "ledger.sqlite3")
    clock = [NOW]
    monitor = FleetMonitor(settings, ledger, lambda vm: None, tz=UTC, clock=lambda: clock[0])
    writes = []
    original = ledger.record_activity
    ledger.record_activity = lambda *args, **kw: (writes.append(args), original(*args, **kw))[1]
    for second in range(0, 130):
        clock[0] = NOW + timedelta(seconds=second)
        monitor.note_activity("gpu-box", "gpu", "GPU busy", clock[0])
    assert [args[2] for args in writes] == [NOW, NOW + timedelta(seconds=60), NOW + timedelta(seconds=120)]
    assert ledger.last_activity("gpu-box").at == NOW + timedelta(seconds=120)
    signal = monitor._states["gpu-box"].signals["gpu"]
    assert signal.at == NOW + timedelta(seconds=129) and signal.detail == "GPU busy"
    monitor.note_activity("no-such-vm", "gpu", "ignored")  # unknown VMs are ignored, not an error
