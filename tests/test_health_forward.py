"""Health checks of `via_ssh` services, through a local port forward on the VM's SSH connection.

Everything is real: an asyncssh server on loopback (the "VM"), `SshPool.forward`, and the
service's health endpoint behind it (`FakeServiceHealth`), checked by `HealthChecker`.
"""

from __future__ import annotations

import pytest

from aiconsole.demo.health_api import FakeServiceHealth
from aiconsole.demo.ssh_server import LoopbackSshServer
from aiconsole.domain.health import HealthState, HealthTarget
from aiconsole.services.health import HealthChecker
from aiconsole.services.ssh import SshPool

SHOWN = "http://127.0.0.1:11434"
"""The service's URL as configured, i.e. as the VM sees it."""


@pytest.fixture
async def vm(tmp_path):
    async with LoopbackSshServer(tmp_path / "vm") as server:
        yield server


@pytest.fixture
async def pool(vm, tmp_path):
    async with SshPool(
        known_hosts=vm.known_hosts_path,
        config_file=tmp_path / "no-ssh-config",
        client_keys=[vm.client_key_path],
        use_agent=False,
    ) as pool:
        yield pool


@pytest.fixture
async def ollama():
    async with FakeServiceHealth("ollama") as fake:
        yield fake


async def _forwarded(pool: SshPool, vm: LoopbackSshServer, fake: FakeServiceHealth) -> str:
    port = int(fake.url.rsplit(":", 1)[1])
    host, local_port = await pool.forward("inference", vm.target, "127.0.0.1", port)
    assert local_port != port  # the check really goes through the forward
    return f"http://{host}:{local_port}"


async def test_service_up_through_a_port_forward(pool, vm, ollama) -> None:
    url = await _forwarded(pool, vm, ollama)
    async with HealthChecker(timeout_s=3.0) as checker:
        [health] = await checker.check_all([HealthTarget("ollama", "ollama", url, shown_as=SHOWN)])
    assert health.state is HealthState.UP, health.error
    assert health.version == "0.12.6" and health.latency_ms is not None
    assert health.url_shown == SHOWN
    assert ollama.requests == [("GET", "/api/version")]


async def test_loading_then_up_through_a_port_forward(pool, vm, ollama) -> None:
    url = await _forwarded(pool, vm, ollama)
    ollama.loading()
    async with HealthChecker(timeout_s=3.0) as checker:
        assert (await checker.check("ollama", "ollama", url)).state is HealthState.STARTING
        ollama.ready()
        assert (await checker.check("ollama", "ollama", url)).state is HealthState.UP


async def test_service_down_behind_a_live_forward_is_down(pool, vm, ollama) -> None:
    """The forward accepts the local connection, but the VM cannot reach the service."""
    url = await _forwarded(pool, vm, ollama)
    await ollama.go_down()
    async with HealthChecker(timeout_s=3.0) as checker:
        health = await checker.check("ollama", "ollama", url, shown_as=SHOWN)
    assert health.state is HealthState.DOWN and health.error
    assert health.url_shown == SHOWN
