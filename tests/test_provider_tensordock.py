"""TensorDockProvider against FakeTensorDock over real HTTP on loopback."""

from __future__ import annotations

import pytest
from providers_conftest import (
    HOSTILE_NAME,
    HOSTILE_NAME_SHOWN,
    FakeClock,
    has_no_control_chars,
    unused_loopback_url,
)

from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.power import PowerState
from aiconsole.domain.secret import Secret
from aiconsole.services.providers._http import RateLimiter, RetryPolicy
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, VmProvider
from aiconsole.services.providers.tensordock import TensorDockProvider, power_from_word

KEY = "td-secret-key-0123456789"
INSTANCE = "0b9a6c1e-5d2f-4c39-9f3e-7a1d2b3c4d5e"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock):
    async with FakeTensorDock(KEY, start_seconds=20, stop_seconds=12, clock=clock) as fake:
        fake.add_instance(INSTANCE, "inference")
        yield fake


@pytest.fixture
async def make(fake, clock):
    made: list[TensorDockProvider] = []

    def make(
        instance_id: str = INSTANCE, key: str = KEY, url: str | None = None, **options
    ) -> TensorDockProvider:
        options = {"poll_interval": 5.0, "op_timeout": 300.0, "sleep": clock.sleep, "clock": clock} | options
        provider = TensorDockProvider(instance_id, Secret(key), url or fake.url, **options)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def expect_error(awaitable, kind: ProviderErrorKind) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    assert caught.value.kind is kind, caught.value.message
    assert KEY not in caught.value.message
    assert has_no_control_chars(caught.value.message)
    return caught.value


async def test_is_a_vm_provider(make):
    provider = make()
    assert isinstance(provider, VmProvider)
    assert provider.kind == "tensordock" and provider.can_power
    assert KEY not in repr(provider) and KEY not in str(vars(provider))


@pytest.mark.parametrize(
    ("word", "power"),
    [
        ("running", PowerState.RUNNING),
        ("RUNNING", PowerState.RUNNING),
        ("Stopped", PowerState.STOPPED),
        ("StoppedDisassociated", PowerState.STOPPED),
        ("stopped_disassociated", PowerState.STOPPED),
        ("starting", PowerState.STARTING),
        ("Stopping", PowerState.STOPPING),
        ("error", PowerState.ERROR),
        ("deleting", PowerState.UNKNOWN),
        ("Hibernating", PowerState.UNKNOWN),
    ],
)
async def test_status_maps_words_case_insensitively(fake, make, word, power):
    fake.instances[INSTANCE].status = word
    status = await make().status()
    assert status.power is power
    assert status.raw_state == word  # the provider's own word is kept for display
    assert status.label == "inference"


@pytest.mark.parametrize("shape", ["flat", "data", "jsonapi"])
async def test_status_reads_every_documented_shape(fake, make, shape):
    fake.shape = shape
    fake.instances[INSTANCE].status = "Running"
    status = await make().status()
    assert (status.power, status.label) == (PowerState.RUNNING, "inference")


def test_power_from_word_ignores_separators():
    assert power_from_word(" Stopped-Disassociated ") is PowerState.STOPPED


async def test_start_goes_through_starting_to_running(fake, make, clock):
    provider = make()
    seen: list[PowerState] = []

    async def observe() -> None:  # what the fleet sees while the start is under way
        seen.append((await provider.status()).power)

    clock.before_sleep = observe
    started_at = clock.now
    await provider.start()
    assert (await provider.status()).power is PowerState.RUNNING
    assert PowerState.STARTING in seen
    assert fake.served_states[-1] == "running" and "starting" in fake.served_states
    assert clock.now - started_at >= fake.start_seconds
    assert ("POST", f"/api/v2/instances/{INSTANCE}/start") in fake.requests


async def test_stop_goes_through_stopping_and_folds_both_stopped_words(fake, make, clock):
    fake.instances[INSTANCE].status = "running"
    provider = make()
    await provider.stop()
    assert "stopping" in fake.served_states
    assert fake.instances[INSTANCE].status == "StoppedDisassociated"
    assert (await provider.status()).power is PowerState.STOPPED
    await provider.start()
    await provider.stop()
    assert fake.instances[INSTANCE].status == "Stopped"
    assert (await provider.status()).power is PowerState.STOPPED


async def test_start_on_a_running_instance_sends_no_start(fake, make):
    fake.instances[INSTANCE].status = "Running"
    await make().start()
    assert all(method == "GET" for method, _ in fake.requests)


async def test_stop_while_starting_waits_for_running_then_stops(fake, make, clock):
    instance = fake.instances[INSTANCE]
    instance.status, instance.next_status, instance.changes_at = "starting", "running", clock.now + 10
    await make().stop()
    assert fake.served_states[0] == "starting" and "running" in fake.served_states
    assert fake.instances[INSTANCE].status == "StoppedDisassociated"


async def test_start_past_op_timeout_is_timeout(fake, make):
    fake.start_seconds = 10_000
    error = await expect_error(make(op_timeout=60).start(), ProviderErrorKind.TIMEOUT)
    assert "running" in error.message and "60 s" in error.message


async def test_error_state_during_start_fails(fake, make, clock):
    async def break_it() -> None:
        instance = fake.instances[INSTANCE]
        instance.status, instance.next_status = "error", None

    clock.before_sleep = break_it
    error = await expect_error(make().start(), ProviderErrorKind.FAILED)
    assert "error" in error.message


async def test_wrong_key_is_auth_with_server_message(make):
    error = await expect_error(make(key="wrong").status(), ProviderErrorKind.AUTH)
    assert error.message.startswith("TensorDock rejected the API key (HTTP 401)")
    assert "Invalid or missing API token" in error.message


async def test_server_echoing_the_key_never_shows_it(fake, make):
    fake.faults.fail_next(403, body={"error": f"key {KEY} is not allowed here"})
    error = await expect_error(make().status(), ProviderErrorKind.AUTH)
    assert "********" in error.message


async def test_unknown_instance_is_not_found(make):
    error = await expect_error(make("no-such-id").status(), ProviderErrorKind.NOT_FOUND)
    assert "no-such-id" in error.message


async def test_429_with_retry_after_backs_off_then_succeeds(fake, make, clock):
    fake.faults.fail_next(429, times=2, headers={"Retry-After": "7"})
    assert (await make().status()).power is PowerState.STOPPED
    assert clock.slept == [7.0, 7.0]


async def test_429_without_retry_after_backs_off_exponentially(fake, make, clock):
    fake.faults.fail_next(429, times=3)
    await make(retry=RetryPolicy(max_retries=4, backoff_base=0.5)).status()
    assert clock.slept == [0.5, 1.0, 2.0]


async def test_persistent_429_is_rate_limited(fake, make):
    fake.faults.fail_next(429, times=10)
    error = await expect_error(
        make(retry=RetryPolicy(max_retries=3)).status(), ProviderErrorKind.RATE_LIMITED
    )
    assert "429" in error.message
    assert len(fake.requests) == 4


async def test_server_side_rate_limit_is_waited_out(fake, make, clock):
    fake.rate_limit = 3
    provider = make(limiter=RateLimiter(1000, 60.0, clock=clock, sleep=clock.sleep))
    for _ in range(5):
        await provider.status()
    assert len(fake.requests) > 5  # some answers were 429s...
    assert clock.slept and sum(clock.slept) <= 60  # ...waited out using Retry-After


async def test_client_side_limiter_keeps_under_the_quota(fake, make, clock):
    fake.rate_limit = 3
    provider = make(limiter=RateLimiter(3, 60.0, clock=clock, sleep=clock.sleep))
    started_at = clock.now
    for _ in range(7):
        await provider.status()
    assert len(fake.requests) == 7  # never a 429 to retry
    assert clock.now - started_at >= 120


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(fake, make, status):
    fake.faults.fail_next(
        status, body=b"<html><h1>upstream down</h1></html>", headers={"Content-Type": "text/html"}
    )
    error = await expect_error(make().status(), ProviderErrorKind.SERVER)
    assert f"HTTP {status}" in error.message and "<html>" not in error.message


async def test_transient_server_error_during_start_is_ridden_out(fake, make, clock):
    provider = make()

    async def blip() -> None:
        if not fake.faults.pending and clock.slept == []:
            fake.faults.fail_next(503)

    clock.before_sleep = blip
    await provider.start()
    assert fake.instances[INSTANCE].status == "running"


async def test_persistent_server_errors_during_start_fail(fake, make, clock):
    provider = make()

    async def outage() -> None:
        fake.faults.fail_next(502, times=10)

    clock.before_sleep = outage
    await expect_error(provider.start(), ProviderErrorKind.SERVER)


async def test_slow_answer_is_timeout(fake, make):
    fake.faults.delay_next(2.0)
    error = await expect_error(make(request_timeout=0.1).status(), ProviderErrorKind.TIMEOUT)
    assert "0.1 s" in error.message


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b'{"data": {"type": "virtualmachine", "id": "x"',
        {"data": {"type": "virtualmachine", "id": INSTANCE, "attributes": {"name": "no status"}}},
        {"data": {"status": 3}},
        [1, 2, 3],
        "just a string",
    ],
)
async def test_malformed_bodies(fake, make, body):
    fake.faults.garble_next(body=body)
    await expect_error(make().status(), ProviderErrorKind.MALFORMED)


async def test_connection_refused_is_connect(make):
    error = await expect_error(
        make(url=unused_loopback_url() + "/api/v2").status(), ProviderErrorKind.CONNECT
    )
    assert error.message.startswith("Cannot reach TensorDock")


async def test_dropped_connection_is_connect(fake, make):
    fake.faults.drop_next()
    await expect_error(make().status(), ProviderErrorKind.CONNECT)


async def test_hostile_names_and_words_are_sanitised(fake, make):
    instance = fake.instances[INSTANCE]
    instance.name = HOSTILE_NAME
    instance.status = "\x1b[31mRunning\x07"
    status = await make().status()
    assert status.label == HOSTILE_NAME_SHOWN
    assert status.raw_state == "Running" and status.power is PowerState.RUNNING
    assert has_no_control_chars(status.label + status.raw_state)


async def test_hostile_error_message_is_sanitised(fake, make):
    fake.faults.fail_next(500, body={"errors": [{"detail": "\x1b]52;c;cHduZWQ=\x07boom\r\nline two"}]})
    error = await expect_error(make().status(), ProviderErrorKind.SERVER)
    assert error.message.endswith("boom line two")
