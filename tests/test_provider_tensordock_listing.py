"""The VMs of one TensorDock account read their power from one shared `GET /instances`
(`SharedListing`), against FakeTensorDock over real HTTP on loopback: one request per round,
coalesced, with each VM's own `GET /instances/{id}` as the fallback and for start/stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from aiconsole.assembly import LISTING_SHARE_OF_POLL, ProviderBuilder, build_monitor
from aiconsole.config import settings_from_toml_text
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.power import PowerState
from aiconsole.domain.secret import Secret
from aiconsole.services.fleet import FleetMonitor
from aiconsole.services.ledger import Ledger
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind
from aiconsole.services.providers.shared_listing import SharedListing
from aiconsole.services.providers.tensordock import TensorDockProvider
from providers_conftest import FakeClock

KEY = "td-listing-secret-0123456789"
OTHER_KEY = "td-listing-other-9876543210"
IDS = ("1a2b3c4d-inference", "5e6f7a8b-training", "9c0d1e2f-sdxl")
LIST = ("GET", "/api/v2/instances")


def own(instance_id: str) -> tuple[str, str]:
    return ("GET", f"/api/v2/instances/{instance_id}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock):
    async with FakeTensorDock(KEY, start_seconds=20, stop_seconds=12, clock=clock) as fake:
        for number, instance_id in enumerate(IDS):
            fake.add_instance(instance_id, f"vm-{number}", "Running" if number % 2 == 0 else "Stopped")
        yield fake


@pytest.fixture
async def account(fake, clock):
    """Providers for `IDS` (or the ids given) sharing one listing, as ProviderBuilder makes them."""
    made: list[TensorDockProvider] = []
    shared = SharedListing(clock=clock)

    def account(ids=IDS, *, key: str = KEY, **options) -> list[TensorDockProvider]:
        options = {"poll_interval": 3.0, "sleep": clock.sleep, "clock": clock, "listing_max_age": 12.0} | options
        providers = [TensorDockProvider(i, Secret(key), fake.url, shared_listing=shared, **options) for i in ids]
        made.extend(providers)
        return providers

    yield account
    for provider in made:
        await provider.aclose()


async def test_the_only_vm_of_its_account_reads_itself_until_another_joins(fake, account):
    (alone,) = account(IDS[:1])
    await alone.status()
    assert fake.requests == [own(IDS[0])]  # one request either way, and its own answer is exact
    (joined,) = account(IDS[1:2])
    await alone.status()
    await joined.status()
    assert fake.requests == [own(IDS[0]), LIST]
    await joined.aclose()
    await alone.status()
    assert fake.requests == [own(IDS[0]), LIST, own(IDS[0])]


async def test_one_round_of_three_vms_makes_one_list_request(fake, account):
    providers = account()
    statuses = [await provider.status() for provider in providers]
    assert [(s.power, s.raw_state, s.label) for s in statuses] == [
        (PowerState.RUNNING, "Running", "vm-0"),
        (PowerState.STOPPED, "Stopped", "vm-1"),
        (PowerState.RUNNING, "Running", "vm-2"),
    ]
    assert fake.requests == [LIST]


async def test_a_listing_is_shared_within_its_window_and_asked_again_past_it(fake, account, clock):
    first, second, third = account()
    await first.status()
    clock.now += 5.0  # the same round, polled a little later: shared
    fake.instances[IDS[1]].status = "Running"
    assert (await second.status()).power is PowerState.STOPPED
    assert fake.requests == [LIST]
    clock.now += 7.0  # 12 s: as old as the window allows, so asked again, and the new state
    fake.instances[IDS[2]].status = "Stopped"
    assert (await third.status()).power is PowerState.STOPPED
    assert fake.requests == [LIST, LIST]


async def test_a_state_read_from_a_listing_is_as_old_as_the_listing(fake, account, clock):
    first, second = account(IDS[:2])
    assert (await first.status()).age_s == 0.0  # asked for now
    clock.now += 5.0
    assert (await second.status()).age_s == 5.0  # the same listing: what it shows is 5 s old
    (alone,) = account(IDS[2:])
    await first.aclose(), await second.aclose()  # the account has one VM left: it reads itself
    clock.now += 1.0
    assert (await alone.status()).age_s == 0.0
    assert fake.requests[-1] == own(IDS[2])


async def test_a_vm_never_reads_the_same_listing_twice(fake, account):
    first, second = account(IDS[:2])
    await first.status()
    fake.instances[IDS[0]].status = "Stopped"
    assert (await first.status()).power is PowerState.STOPPED  # its next poll, or a refresh: asked anew
    assert (await second.status()).power is PowerState.STOPPED  # the newest listing, shared
    assert fake.requests == [LIST, LIST]


async def test_concurrent_statuses_wait_on_the_one_request_in_flight(fake, account):
    fake.faults.delay_next(0.2)  # real time: every caller arrives while the list is on its way
    providers = account()
    statuses = await asyncio.gather(*(provider.status() for provider in providers * 3))
    assert [s.label for s in statuses] == ["vm-0", "vm-1", "vm-2"] * 3
    assert fake.requests == [LIST]


async def test_a_cancelled_caller_does_not_cancel_the_request_for_the_others(fake, account):
    fake.faults.delay_next(0.2)
    first, second = account(IDS[:2])
    cancelled = asyncio.create_task(first.status())
    await asyncio.sleep(0.05)  # its request is on its way
    waiting = asyncio.create_task(second.status())
    await asyncio.sleep(0)
    cancelled.cancel()
    assert (await waiting).label == "vm-1"
    assert fake.requests == [LIST]


async def test_a_vm_missing_from_the_list_reads_itself(fake, account):
    providers = account()
    # The list lags a new instance, or is one page of several: IDS[1] is not on it.
    partial = [fake._jsonapi(fake.instances[i]) for i in (IDS[0], IDS[2])]
    fake.faults.garble_next(body={"data": {"instances": partial}})
    statuses = [await provider.status() for provider in providers]
    assert [(s.label, s.power) for s in statuses] == [
        ("vm-0", PowerState.RUNNING),
        ("vm-1", PowerState.STOPPED),
        ("vm-2", PowerState.RUNNING),
    ]
    assert fake.requests == [LIST, own(IDS[1])]


async def test_a_vm_listed_without_a_status_reads_itself(fake, account):
    providers = account()
    listed = [fake._jsonapi(instance) for instance in fake.instances.values()]
    listed[1]["attributes"] = {"name": "vm-1"}
    fake.faults.garble_next(body={"data": {"instances": listed}})
    assert [(await p.status()).label for p in providers] == ["vm-0", "vm-1", "vm-2"]
    assert fake.requests == [LIST, own(IDS[1])]


@pytest.mark.parametrize(
    "fault",
    [
        lambda fake: fake.faults.fail_next(503),
        lambda fake: fake.faults.fail_next(429, times=5, headers={"Retry-After": "1"}),
        lambda fake: fake.faults.fail_next(404),
        lambda fake: fake.faults.drop_next(),
        lambda fake: fake.faults.garble_next(body=b"<html>maintenance</html>"),
        lambda fake: fake.faults.garble_next(body={"data": {"instances": "not a list"}}),
        lambda fake: fake.faults.garble_next(body={"data": {"instances": [{"attributes": {"status": "running"}}]}}),
    ],
)
async def test_a_failed_or_unreadable_listing_falls_back_to_each_vm_reading_itself(fake, account, fault):
    fault(fake)
    providers = account()
    statuses = [await provider.status() for provider in providers]
    assert [s.label for s in statuses] == ["vm-0", "vm-1", "vm-2"]
    lists = [request for request in fake.requests if request == LIST]
    assert fake.requests == [*lists, *(own(i) for i in IDS)]  # one failed list (429: and its retries)


async def test_errors_read_as_today_when_the_list_and_the_own_read_fail(fake, account):
    fake.faults.fail_next(503, times=2)  # the list, then the VM's own read
    provider, silent = account(IDS[:2])
    with pytest.raises(ProviderError) as caught:
        await provider.status()
    assert caught.value.kind is ProviderErrorKind.SERVER and "HTTP 503" in caught.value.message
    assert fake.requests == [LIST, own(IDS[0])]

    fake.instances[IDS[1]].status = ""
    with pytest.raises(ProviderError) as caught:
        await silent.status()
    assert caught.value.kind is ProviderErrorKind.MALFORMED
    assert caught.value.message.startswith(f"TensorDock answered without a status for instance {IDS[1]}")


async def test_a_rejected_key_is_every_vms_error_without_a_read_each(fake, account):
    providers = account(key="wrong-key")
    for provider in providers:
        with pytest.raises(ProviderError) as caught:
            await provider.status()
        assert caught.value.kind is ProviderErrorKind.AUTH
        assert caught.value.message.startswith("TensorDock rejected the API key (HTTP 401)")
        assert "wrong-key" not in caught.value.message
    assert fake.requests == [LIST]


async def test_after_a_stop_no_status_reads_the_listing_from_before_it(fake, account, clock):
    (provider, other) = account(IDS[:2], listing_max_age=1000.0)  # only the order can protect here
    assert (await provider.status()).power is PowerState.RUNNING
    seen: list[PowerState] = []

    async def fleet_poll() -> None:  # what the fleet reads while the stop is under way
        seen.append((await provider.status()).power)

    clock.before_sleep = fleet_poll
    await provider.stop()
    clock.before_sleep = None
    assert seen and PowerState.RUNNING not in seen
    assert (await provider.status()).power is PowerState.STOPPED
    assert (await other.status()).power is PowerState.STOPPED  # other VMs may use any listing in its window


async def test_a_listing_asked_while_the_stop_request_is_on_its_way_is_not_used_after_it(fake, account):
    provider, other = account(IDS[:2], listing_max_age=1000.0)
    # Faults are played in the order requests arrive: the stop's own read goes through, its POST
    # is slow, the listing another VM asks for meanwhile goes through, and the stop's first check
    # is slow.
    for seconds in (0, 0.4, 0, 1.0):
        fake.faults.delay_next(seconds)
    stopping = asyncio.create_task(provider.stop())
    await asyncio.sleep(0.15)
    await other.status()  # the listing shows the VM running: true then, the stop has not landed
    await asyncio.sleep(0.45)  # the POST is answered; the stop's first check is not
    assert ("POST", f"/api/v2/instances/{IDS[0]}/stop") in fake.requests
    assert (await provider.status()).power is PowerState.STOPPING
    assert fake.requests.count(LIST) == 2 and not stopping.done()
    await stopping


async def test_a_listing_asked_before_the_stops_last_check_is_not_used_after_it(fake, account, clock):
    provider, other = account(IDS[:2], listing_max_age=1000.0)

    async def other_vm_polls() -> None:  # each listing shows the VM "stopping"
        await other.status()

    clock.before_sleep = other_vm_polls
    await provider.stop()  # its last own check saw it stopped, after the last listing was asked
    clock.before_sleep = None
    assert (await provider.status()).power is PowerState.STOPPED


async def test_a_listing_on_its_way_during_a_stop_is_not_used_after_it(fake, account, clock):
    provider, other = account(IDS[:2], listing_max_age=1000.0)
    fake.list_latency = 0.5  # asked before the stop, answered after it: it shows the VM running
    before = asyncio.create_task(other.status())
    await asyncio.sleep(0.05)
    await provider.stop()
    fake.list_latency = 0.0
    assert fake.requests[0] == LIST and not before.done()
    await before
    assert (await provider.status()).power is PowerState.STOPPED
    assert fake.requests.count(LIST) == 2


async def test_a_status_waiting_on_a_listing_from_before_a_stop_reads_the_vm_alone(fake, account):
    provider, _ = account(IDS[:2], listing_max_age=1000.0)
    fake.list_latency = 0.5  # the fleet's poll is on its way when the stop is asked for
    polling = asyncio.create_task(provider.status())
    await asyncio.sleep(0.05)
    await provider.stop()
    fake.list_latency = 0.0
    assert (await polling).power is PowerState.STOPPED  # not the "running" the slow list shows
    assert fake.requests[-1] == own(IDS[0])


async def test_start_and_stop_read_their_own_instance_not_the_listing(fake, account):
    _, provider = account(IDS[:2], listing_max_age=1000.0)
    assert (await provider.status()).power is PowerState.STOPPED
    fake.instances[IDS[1]].status = "Running"  # started elsewhere since the listing
    await provider.stop()
    assert ("POST", f"/api/v2/instances/{IDS[1]}/stop") in fake.requests
    assert fake.instances[IDS[1]].status in ("Stopped", "StoppedDisassociated")


async def test_a_vm_in_transition_asks_for_a_listing_newer_than_its_transition_poll(fake, account, clock):
    moving, steady = account(IDS[:2])
    fake.instances[IDS[0]].status = "stopping"
    assert (await moving.status()).power is PowerState.STOPPING
    await steady.status()
    clock.now += 3.0
    await steady.status()  # a newer listing, still "stopping"
    fake.instances[IDS[0]].status = "Stopped"
    clock.now += 2.9  # the fleet looks at a VM in transition every 3 s: this listing is from before
    assert (await moving.status()).power is PowerState.STOPPED
    assert fake.requests == [LIST, LIST, LIST]


# --- ProviderBuilder: one listing per account ---------------------------------------------------


def config(first: FakeTensorDock, second: FakeTensorDock) -> str:
    vms = [(f"a{n}", i, "TD_KEY", first.url) for n, i in enumerate(IDS)]
    vms += [("b0", "b-first", "TD_OTHER", second.url), ("b1", "b-second", "TD_OTHER", second.url)]
    return "\n".join(
        f"""
[[vm]]
name = "{name}"
provider = "tensordock"
poll_seconds = 20
[vm.tensordock]
instance_id = "{instance_id}"
api_key_env = "{env}"
api_url = "{url}"
"""
        for name, instance_id, env, url in vms
    )


async def test_builder_shares_one_listing_per_account(fake):
    async with FakeTensorDock(OTHER_KEY) as second:
        second.add_instance("b-first", "other-account", "Running")
        second.add_instance("b-second", "other-too", "Stopped")
        settings = settings_from_toml_text(config(fake, second))
        build = ProviderBuilder({"TD_KEY": KEY, "TD_OTHER": OTHER_KEY})
        providers = [build(vm) for vm in settings.vm]
        try:
            statuses = await asyncio.gather(*(provider.status() for provider in providers))
            assert [s.label for s in statuses] == ["vm-0", "vm-1", "vm-2", "other-account", "other-too"]
            assert fake.requests == [LIST] and second.requests == [LIST]
            assert all(p._listing_max_age == LISTING_SHARE_OF_POLL * 20 for p in providers)
        finally:
            for provider in providers:
                await provider.aclose()


async def test_the_fleet_dates_a_state_read_from_a_listing_when_the_listing_was_asked(fake, tmp_path):
    """The pane's "checked … ago" and the ledger's power intervals count from when TensorDock
    was asked, not from when a VM happened to read the account's listing."""
    async with FakeTensorDock(OTHER_KEY) as second:
        settings = settings_from_toml_text(config(fake, second))
        settings.vm[:] = settings.vm[:2]  # a0 and a1: one account
        now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        monitor = FleetMonitor(settings, Ledger.open(tmp_path / "l.sqlite3"), ProviderBuilder({"TD_KEY": KEY}),
                               tz=UTC, clock=lambda: now)  # fmt: skip
        try:
            await monitor.open()
            await monitor.refresh("a0")  # asks for the listing
            await asyncio.sleep(0.3)  # real time: the listing's age is measured on the monotonic clock
            await monitor.refresh("a1")  # reads the same one
            checked = {vm.name: vm.checked_at for vm in monitor.snapshot().vms}
            assert fake.requests == [LIST]
            assert checked["a0"] is not None and checked["a1"] is not None
            assert now - checked["a0"] < timedelta(seconds=0.3)
            assert timedelta(seconds=0.3) <= now - checked["a1"] < timedelta(seconds=LISTING_SHARE_OF_POLL * 20)
            opened = monitor.ledger.intervals("a1")
            assert [(i.state, i.start) for i in opened] == [(PowerState.STOPPED, checked["a1"])]
        finally:
            await monitor.close()


async def test_a_monitor_on_its_own_clock_measures_the_listings_age_on_it(fake, tmp_path):
    """Tests and a demo on a fixed clock: real time passing must not date observations
    earlier than a clock that stands still (a snapshot read "3m 59s" under load)."""
    async with FakeTensorDock(OTHER_KEY) as second:
        settings = settings_from_toml_text(config(fake, second))
        settings.vm[:] = settings.vm[:2]
        now = [datetime(2026, 11, 23, 12, 0, tzinfo=UTC)]
        monitor = build_monitor(settings, Ledger.open(tmp_path / "l.sqlite3"), {"TD_KEY": KEY}, clock=lambda: now[0])
        try:
            await monitor.open()
            await monitor.refresh("a0")
            await asyncio.sleep(0.3)  # real time passes; the monitor's clock does not
            await monitor.refresh("a1")
            assert {vm.name: vm.checked_at for vm in monitor.snapshot().vms} == {"a0": now[0], "a1": now[0]}
            now[0] += timedelta(seconds=5)  # the monitor's clock moves: the listing is 5 s old on it
            await monitor.refresh("a0")  # a0 read that listing already: it asks for a new one
            now[0] += timedelta(seconds=2)
            await monitor.refresh("a1")  # the new listing, asked 2 s ago by the monitor's clock
            checked = {vm.name: vm.checked_at for vm in monitor.snapshot().vms}
            assert checked["a1"] == now[0] - timedelta(seconds=2) == checked["a0"]
            assert fake.requests == [LIST, LIST]
        finally:
            await monitor.close()
