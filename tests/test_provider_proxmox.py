"""ProxmoxProvider against FakeProxmox over real HTTP on loopback."""

from __future__ import annotations

import pytest
from providers_conftest import (
    HOSTILE_NAME,
    HOSTILE_NAME_SHOWN,
    FakeClock,
    has_no_control_chars,
    unused_loopback_url,
)

from aiconsole.demo.proxmox_api import FakeProxmox
from aiconsole.domain.power import PowerState
from aiconsole.domain.secret import Secret
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, VmProvider
from aiconsole.services.providers.proxmox import ProxmoxProvider

TOKEN_ID = "root@pam!aiconsole"
SECRET = "5f0c6a7e-1d2b-4c3d-8e9f-a0b1c2d3e4f5"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock):
    async with FakeProxmox(
        TOKEN_ID, SECRET, start_seconds=6, shutdown_seconds=8, stop_seconds=1, clock=clock
    ) as fake:
        fake.add_guest(101, "gpu-workstation")
        fake.add_guest(202, "qdrant", kind="lxc", status="running")
        yield fake


@pytest.fixture
async def make(fake, clock):
    made: list[ProxmoxProvider] = []

    def make(vmid: int = 101, *, secret: str = SECRET, url: str | None = None, **options) -> ProxmoxProvider:
        options = {
            "poll_interval": 2.0,
            "shutdown_timeout": 30.0,
            "sleep": clock.sleep,
            "clock": clock,
        } | options
        provider = ProxmoxProvider(url or fake.url, "pve", vmid, TOKEN_ID, Secret(secret), **options)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def expect_error(awaitable, kind: ProviderErrorKind) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    assert caught.value.kind is kind, caught.value.message
    assert SECRET not in caught.value.message
    assert has_no_control_chars(caught.value.message)
    return caught.value


def watch(provider: ProxmoxProvider, clock: FakeClock) -> list[PowerState]:
    """Record what status() says at every poll, as the fleet would see it."""
    seen: list[PowerState] = []

    async def observe() -> None:
        seen.append((await provider.status()).power)

    clock.before_sleep = observe
    return seen


async def test_is_a_vm_provider(make):
    provider = make()
    assert isinstance(provider, VmProvider)
    assert provider.kind == "proxmox" and provider.can_power
    assert SECRET not in repr(provider)


def test_unknown_guest_kind_is_refused():
    with pytest.raises(ValueError, match="qemu, lxc"):
        ProxmoxProvider("https://pve:8006", "pve", 101, TOKEN_ID, Secret(SECRET), guest="openvz")


@pytest.mark.parametrize(
    ("status", "qmpstatus", "power", "raw"),
    [
        ("running", "running", PowerState.RUNNING, "running"),
        ("running", "paused", PowerState.RUNNING, "running (paused)"),
        ("running", "suspended", PowerState.RUNNING, "running (suspended)"),
        ("running", "prelaunch", PowerState.STARTING, "running (prelaunch)"),
        ("running", "inmigrate", PowerState.STARTING, "running (inmigrate)"),
        ("running", "shutdown", PowerState.STOPPING, "running (shutdown)"),
        ("running", "io-error", PowerState.ERROR, "running (io-error)"),
        ("stopped", "stopped", PowerState.STOPPED, "stopped"),
        ("Stopped", None, PowerState.STOPPED, "Stopped"),
        ("migrating", None, PowerState.UNKNOWN, "migrating"),
    ],
)
async def test_status_maps_status_and_qmpstatus(fake, make, status, qmpstatus, power, raw):
    guest = fake.guests[("pve", "qemu", "101")]
    guest.status, guest.qmpstatus = status, qmpstatus
    result = await make().status()
    assert (result.power, result.raw_state, result.label) == (power, raw, "gpu-workstation")


async def test_lxc_status_has_no_qmpstatus(make):
    status = await make(202, guest="lxc").status()
    assert (status.power, status.raw_state, status.label) == (PowerState.RUNNING, "running", "qdrant")


async def test_lock_is_shown_in_detail(fake, make):
    fake.guests[("pve", "qemu", "101")].lock = "backup"
    assert (await make().status()).detail == "locked: backup"


async def test_api_url_without_api2_json_is_accepted(fake, make):
    root = fake.url.removesuffix("/api2/json")
    assert (await make(url=root).status()).power is PowerState.STOPPED


async def test_start_goes_through_starting_to_running(fake, make, clock):
    provider = make()
    seen = watch(provider, clock)
    await provider.start()
    assert PowerState.STARTING in seen
    assert (await provider.status()).power is PowerState.RUNNING
    assert ("POST", "/api2/json/nodes/pve/qemu/101/status/start") in fake.requests


async def test_lxc_start_reports_starting_while_still_stopped(fake, make, clock):
    fake.guests[("pve", "lxc", "202")].status = "stopped"
    provider = make(202, guest="lxc")
    seen = watch(provider, clock)
    await provider.start()
    assert seen and seen[0] is PowerState.STARTING
    assert (await provider.status()).power is PowerState.RUNNING


async def test_start_of_running_guest_sends_nothing(fake, make):
    fake.guests[("pve", "qemu", "101")].status = "running"
    await make().start()
    assert all(method == "GET" for method, _ in fake.requests)


async def test_failed_start_task_is_failed_with_exit_status(fake, make):
    fake.guests[("pve", "qemu", "101")].start_error = "TASK ERROR: storage 'tank' is not online"
    error = await expect_error(make().start(), ProviderErrorKind.FAILED)
    assert "storage 'tank' is not online" in error.message


async def test_graceful_stop_goes_through_stopping(fake, make, clock):
    fake.guests[("pve", "qemu", "101")].status = "running"
    provider = make()
    seen = watch(provider, clock)
    await provider.stop()
    assert PowerState.STOPPING in seen
    assert (await provider.status()).power is PowerState.STOPPED
    assert not provider.last_stop_was_forced
    assert ("POST", "/api2/json/nodes/pve/qemu/101/status/stop") not in fake.requests


async def test_guest_ignoring_acpi_is_force_stopped(fake, make, clock):
    guest = fake.guests[("pve", "qemu", "101")]
    guest.status, guest.ignore_acpi = "running", True
    provider = make(shutdown_timeout=30.0)
    started_at = clock.now
    await provider.stop()
    assert provider.last_stop_was_forced
    assert guest.status == "stopped"
    assert clock.now - started_at >= 30
    posts = [path.rsplit("/", 1)[-1] for method, path in fake.requests if method == "POST"]
    assert posts == ["shutdown", "stop"]
    shutdown_task = next(task for task in fake.tasks.values() if task.type == "qmshutdown")
    assert shutdown_task.status == "stopped"


async def test_forced_stop_on_pve_without_overrule_flag(fake, make):
    guest = fake.guests[("pve", "qemu", "101")]
    guest.status, guest.ignore_acpi = "running", True
    fake.supports_overrule = False
    provider = make()
    await provider.stop()
    posts = [path.rsplit("/", 1)[-1] for method, path in fake.requests if method == "POST"]
    assert posts == ["shutdown", "stop", "stop"]
    assert provider.last_stop_was_forced and guest.status == "stopped"


async def test_stop_of_stopped_guest_sends_nothing(fake, make):
    await make().stop()
    assert all(method == "GET" for method, _ in fake.requests)


async def test_stop_past_op_timeout_is_timeout(fake, make):
    guest = fake.guests[("pve", "qemu", "101")]
    guest.status, guest.ignore_acpi = "running", True
    fake.stop_seconds = 10_000
    error = await expect_error(make(shutdown_timeout=10, op_timeout=60).stop(), ProviderErrorKind.TIMEOUT)
    assert "stopped" in error.message


async def test_missing_token_and_wrong_secret_are_auth(make):
    error = await expect_error(make(secret="wrong").status(), ProviderErrorKind.AUTH)
    assert error.message == f"Proxmox rejected the API token {TOKEN_ID} (HTTP 401): invalid token value!"


async def test_missing_guest_is_not_found(make):
    error = await expect_error(make(999).status(), ProviderErrorKind.NOT_FOUND)
    assert "999" in error.message and "does not exist" in error.message


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(fake, make, status):
    fake.faults.fail_next(status, body={"data": None}, reason="proxy loop detected")
    error = await expect_error(make().status(), ProviderErrorKind.SERVER)
    assert f"HTTP {status}" in error.message and "proxy loop detected" in error.message


async def test_429_is_backed_off(fake, make, clock):
    fake.faults.fail_next(429, headers={"Retry-After": "2"})
    assert (await make().status()).power is PowerState.STOPPED
    assert clock.slept == [2.0]


async def test_persistent_429_is_rate_limited(fake, make):
    fake.faults.fail_next(429, times=20)
    await expect_error(make().status(), ProviderErrorKind.RATE_LIMITED)


async def test_slow_answer_is_timeout(fake, make):
    fake.faults.delay_next(2.0)
    await expect_error(make(request_timeout=0.1).status(), ProviderErrorKind.TIMEOUT)


@pytest.mark.parametrize(
    "body",
    [b"<html>pveproxy</html>", {"data": None}, {"data": {"qmpstatus": "running"}}, {"status": "running"}],
)
async def test_malformed_status_bodies(fake, make, body):
    fake.faults.garble_next(body=body)
    await expect_error(make().status(), ProviderErrorKind.MALFORMED)


async def test_start_answer_without_upid_is_malformed(fake, make):
    fake.faults.delay_next(0)  # start's own status check goes through untouched
    fake.faults.garble_next(body={"data": None})
    error = await expect_error(make().start(), ProviderErrorKind.MALFORMED)
    assert "UPID" in error.message


async def test_connection_refused_is_connect(make):
    error = await expect_error(make(url=unused_loopback_url()).status(), ProviderErrorKind.CONNECT)
    assert error.message.startswith("Cannot reach Proxmox")


async def test_hostile_name_is_sanitised(fake, make):
    fake.guests[("pve", "qemu", "101")].name = HOSTILE_NAME
    status = await make().status()
    assert status.label == HOSTILE_NAME_SHOWN and has_no_control_chars(status.label)
