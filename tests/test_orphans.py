"""Orphans (issue 7): the pure reconciliation, the providers' list calls against the loopback
TensorDock and Proxmox fakes, and `OrphanScan` over a config pointing at them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from aiconsole.config import settings_from_toml_text
from aiconsole.demo.proxmox_api import FakeProxmox
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.orphans import (
    AccountScan,
    ConfiguredInstance,
    InstanceListing,
    OrphanReport,
    find_orphans,
    running_hourly_usd,
)
from aiconsole.domain.power import PowerState
from aiconsole.domain.secret import Secret
from aiconsole.services.orphans import OrphanScan, accounts_of, configured_instances
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind
from aiconsole.services.providers.proxmox import ProxmoxProvider
from aiconsole.services.providers.tensordock import TensorDockProvider
from providers_conftest import HOSTILE_NAME, HOSTILE_NAME_SHOWN, has_no_control_chars

TD_URL = "https://dashboard.tensordock.com/api/v2"
PVE_URL = "https://pve.lan:8006/api2/json"
KEY = "td-orphan-secret-0123456789abcdef"
OTHER_KEY = "td-orphan-other-fedcba9876543210"
TOKEN_ID = "root@pam!aiconsole"
TOKEN_SECRET = "pve-orphan-secret-5f1e2d3c"
INFERENCE, TRAINING, FORGOTTEN = "7c1e4a52-inference", "9f03b6d8-training", "5a0c1f2e-sdxl-test"
NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def listing(instance_id: str, power: PowerState = PowerState.RUNNING, **fields) -> InstanceListing:
    values = {"provider": "tensordock", "endpoint": TD_URL, "name": f"vm-{instance_id[:4]}", "hourly_usd": 0.35}
    return InstanceListing(instance_id=instance_id, power=power, **(values | fields))


def known(instance_id: str, vm: str = "inference", provider: str = "tensordock", endpoint: str = TD_URL):
    return ConfiguredInstance(vm, provider, endpoint, instance_id)


# --- the pure reconciliation ---------------------------------------------------------------------


def test_an_instance_a_vm_names_on_the_same_endpoint_is_known() -> None:
    listings = [listing(INFERENCE), listing(TRAINING, PowerState.STOPPED)]
    # A trailing slash on either side is the same API.
    configured = [known(INFERENCE, endpoint=TD_URL + "/"), known(TRAINING, "training")]
    assert find_orphans(listings, configured) == ()


def test_a_running_instance_the_config_does_not_know_is_an_orphan_with_its_price() -> None:
    forgotten = listing(FORGOTTEN + "-4090", name="sdxl-test")
    (orphan,) = find_orphans([listing(INFERENCE), forgotten], [known(INFERENCE)])
    assert orphan.instance == forgotten and orphan.running
    assert orphan.text == "orphan: TensorDock instance sdxl-test (5a0c1f2e…) running, $0.35/h — not in the config"
    assert running_hourly_usd([orphan]) == pytest.approx(0.35)


def test_the_same_id_on_another_endpoint_or_provider_is_not_known() -> None:
    elsewhere = listing(INFERENCE, endpoint="https://proxy.example/api/v2")
    as_proxmox = listing(INFERENCE, provider="proxmox", endpoint=TD_URL)
    orphans = find_orphans([elsewhere, as_proxmox], [known(INFERENCE)])
    assert {orphan.instance for orphan in orphans} == {elsewhere, as_proxmox}


def test_an_unknown_stopped_instance_is_reported_differently_and_costs_nothing() -> None:
    stopped = listing("1ab9d44d-9a1d-4b4c-bd72", PowerState.STOPPED, name="old-box", raw_state="StoppedDisassociated")
    running = listing(FORGOTTEN, hourly_usd=0.5)
    orphans = find_orphans([stopped, running], [])
    assert [orphan.instance for orphan in orphans] == [running, stopped]  # what bills comes first
    assert not orphans[1].running
    assert orphans[1].text == (
        "not in the config: TensorDock instance old-box (1ab9d44d…) stopped — no compute billed while stopped"
    )
    assert running_hourly_usd(orphans) == pytest.approx(0.5)
    report = OrphanReport(NOW, (), orphans)
    assert report.running == (orphans[0],) and report.hourly_usd == pytest.approx(0.5)


@pytest.mark.parametrize("power", [PowerState.STARTING, PowerState.STOPPING, PowerState.UNKNOWN, PowerState.ERROR])
def test_transitions_and_unreadable_states_count_as_running(power) -> None:
    (orphan,) = find_orphans([listing(FORGOTTEN, power, raw_state="deleting")], [])
    assert orphan.running and running_hourly_usd([orphan]) == pytest.approx(0.35)
    assert orphan.text.startswith("orphan: ")
    if not power.is_known:
        assert "in state 'deleting'" in orphan.text


def test_an_instance_listed_twice_is_one_orphan_and_the_dearest_comes_first() -> None:
    cheap, dear = listing("aaaa-cheap", hourly_usd=0.2), listing("bbbb-dear", hourly_usd=2.41)
    orphans = find_orphans([cheap, dear, cheap], [])
    assert [orphan.instance for orphan in orphans] == [dear, cheap]
    assert running_hourly_usd(orphans) == pytest.approx(2.61)


def test_a_proxmox_guest_is_known_by_vmid_and_has_no_price() -> None:
    guest = listing(
        "105", provider="proxmox", endpoint=PVE_URL, name="sd-box", hourly_usd=None, host="pve", guest="qemu"
    )
    ours = listing("101", provider="proxmox", endpoint=PVE_URL, hourly_usd=None)
    (orphan,) = find_orphans([guest, ours], [known("101", "homelab", "proxmox", PVE_URL)])
    assert orphan.instance == guest and orphan.running
    assert orphan.text == (
        "orphan: Proxmox qemu guest 105 (sd-box) on node pve running, no $/h (Proxmox lists no price) — not in the config"
    )
    assert running_hourly_usd([orphan]) == 0.0
    assert "(+1 without a listed price)" in OrphanReport(NOW, (), (orphan,)).summary


def test_the_summary_says_what_was_checked() -> None:
    ok = AccountScan("tensordock", "TensorDock key $K at x", ("inference",), listed=2)
    failed = AccountScan("proxmox", "Proxmox node pve at y", ("homelab",), error="HTTP 401")
    stopped = find_orphans([listing(FORGOTTEN, PowerState.STOPPED)], [])
    assert OrphanReport(NOW, (ok,), stopped).summary == "no orphans running (1 of 1 account listed)"
    assert OrphanReport(NOW, (ok, failed), ()).summary == (
        "no orphans running (1 of 2 accounts listed); 1 account could not be listed"
    )
    assert OrphanReport(NOW, (failed,), ()).summary.startswith("no account could be listed")
    assert OrphanReport(NOW, (failed,), ()).errors == (failed,)


# --- the providers' list calls, on loopback ------------------------------------------------------


@pytest.fixture
async def tensordock():
    async with FakeTensorDock(KEY) as fake:
        fake.add_instance(INFERENCE, "inference-rtx4090-eu", "Running")
        fake.add_instance(TRAINING, "training-rtx4090-eu", "StoppedDisassociated")
        fake.add_instance(FORGOTTEN, "sdxl-test", "Running", rate_hourly=0.35)
        yield fake


@pytest.fixture
async def proxmox():
    async with FakeProxmox(TOKEN_ID, TOKEN_SECRET) as fake:
        fake.add_guest(101, "gpu-workstation", status="running")
        fake.add_guest(105, "sd-box", status="running", qmpstatus="paused")
        fake.add_guest(200, "qdrant", kind="lxc", status="running")
        fake.add_guest(900, "ubuntu-template").template = True
        yield fake


async def td_listings(fake: FakeTensorDock, key: str = KEY) -> tuple[InstanceListing, ...]:
    provider = TensorDockProvider(INFERENCE, Secret(key), fake.url)
    try:
        return await provider.list_instances()
    finally:
        await provider.aclose()


async def pve_listings(fake: FakeProxmox, secret: str = TOKEN_SECRET, node: str = "pve"):
    provider = ProxmoxProvider(fake.url, node, 101, TOKEN_ID, Secret(secret))
    try:
        return await provider.list_instances()
    finally:
        await provider.aclose()


@pytest.mark.parametrize("shape", ["attributes", "data"])
async def test_tensordock_lists_every_instance_with_its_state_price_and_location(tensordock, shape) -> None:
    tensordock.list_shape = shape
    by_id = {item.instance_id: item for item in await td_listings(tensordock)}
    assert set(by_id) == {INFERENCE, TRAINING, FORGOTTEN}
    assert by_id[FORGOTTEN] == InstanceListing(
        "tensordock", tensordock.url, FORGOTTEN, "sdxl-test", PowerState.RUNNING, "Running", 0.35, "eu-west-1"
    )
    assert by_id[TRAINING].power is PowerState.STOPPED and by_id[TRAINING].raw_state == "StoppedDisassociated"
    assert tensordock.requests == [("GET", "/api/v2/instances")]  # one call for the whole account


async def test_a_deleted_instance_is_not_listed(tensordock) -> None:
    tensordock.instances[FORGOTTEN].status = "deleted"
    assert {item.instance_id for item in await td_listings(tensordock)} == {INFERENCE, TRAINING}


async def test_a_hostile_instance_name_is_listed_inert(tensordock) -> None:
    tensordock.instances[FORGOTTEN].name = HOSTILE_NAME
    (found,) = [item for item in await td_listings(tensordock) if item.instance_id == FORGOTTEN]
    assert found.name == HOSTILE_NAME_SHOWN
    (orphan,) = find_orphans([found], [])
    assert has_no_control_chars(orphan.text)


async def expect_error(awaitable, kind: ProviderErrorKind, *secrets: str) -> str:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    assert caught.value.kind is kind, caught.value.message
    assert not any(secret in caught.value.message for secret in secrets)
    assert has_no_control_chars(caught.value.message)
    return caught.value.message


async def test_tensordock_listing_failures_are_provider_errors(tensordock) -> None:
    message = await expect_error(td_listings(tensordock, OTHER_KEY), ProviderErrorKind.AUTH, OTHER_KEY, KEY)
    assert message.startswith("TensorDock rejected the API key (HTTP 401)")
    tensordock.faults.fail_next(503)
    await expect_error(td_listings(tensordock), ProviderErrorKind.SERVER, KEY)
    tensordock.faults.garble_next()
    await expect_error(td_listings(tensordock), ProviderErrorKind.MALFORMED, KEY)
    # JSON, but one instance rather than a list; then a list with an item that has no id.
    tensordock.faults.garble_next(body={"data": {"type": "virtualmachine", "id": INFERENCE, "attributes": {}}})
    message = await expect_error(td_listings(tensordock), ProviderErrorKind.MALFORMED, KEY)
    assert "without a list" in message
    tensordock.faults.garble_next(body={"data": {"instances": [{"attributes": {"name": "x", "status": "running"}}]}})
    message = await expect_error(td_listings(tensordock), ProviderErrorKind.MALFORMED, KEY)
    assert "without an id" in message


async def test_proxmox_lists_the_vms_and_containers_of_the_node(proxmox) -> None:
    by_id = {item.instance_id: item for item in await pve_listings(proxmox)}
    assert set(by_id) == {"101", "105", "200"}  # the template is left out
    assert by_id["105"] == InstanceListing(
        "proxmox", proxmox.url, "105", "sd-box", PowerState.RUNNING, "running (paused)", None, "pve", "qemu"
    )
    assert by_id["200"].guest == "lxc" and by_id["200"].power is PowerState.RUNNING  # its vmid was text
    assert [path for _, path in proxmox.requests] == ["/api2/json/nodes/pve/qemu", "/api2/json/nodes/pve/lxc"]


async def test_proxmox_listing_failures_are_provider_errors(proxmox) -> None:
    wrong = "pve-wrong-secret-000"
    message = await expect_error(pve_listings(proxmox, wrong), ProviderErrorKind.AUTH, wrong, TOKEN_SECRET)
    assert "rejected the API token root@pam!aiconsole (HTTP 401)" in message
    await expect_error(pve_listings(proxmox, node="pve2"), ProviderErrorKind.NOT_FOUND, TOKEN_SECRET)
    proxmox.faults.fail_next(500, reason="got timeout")
    await expect_error(pve_listings(proxmox), ProviderErrorKind.SERVER, TOKEN_SECRET)
    proxmox.faults.garble_next(body={"data": {"vmid": 101}})
    await expect_error(pve_listings(proxmox), ProviderErrorKind.MALFORMED, TOKEN_SECRET)


# --- OrphanScan over a config ----------------------------------------------------------------------


def fleet_config(tensordock: FakeTensorDock, proxmox: FakeProxmox, *, training_key_env: str = "TD_KEY") -> str:
    return f"""
[budget]
orphan_scan_minutes = 0.5

[[vm]]
name = "inference"
provider = "tensordock"
[vm.tensordock]
instance_id = "{INFERENCE}"
api_key_env = "TD_KEY"
api_url = "{tensordock.url}"

[[vm]]
name = "training"
provider = "tensordock"
[vm.tensordock]
instance_id = "{TRAINING}"
api_key_env = "{training_key_env}"
api_url = "{tensordock.url}/"

[[vm]]
name = "homelab"
provider = "proxmox"
[vm.proxmox]
api_url = "{proxmox.url.removesuffix("/api2/json")}"
node = "pve"
vmid = 101
token_id = "{TOKEN_ID}"
token_secret_env = "PVE_SECRET"

[[vm]]
name = "virsh-box"
provider = "command"
[vm.command]
status = "echo running"

[[vm]]
name = "brain"
provider = "static"
"""


@pytest.fixture
def environ() -> dict[str, str]:
    return {"TD_KEY": KEY, "PVE_SECRET": TOKEN_SECRET}


def scanner(tensordock, proxmox, environ, **options) -> OrphanScan:
    settings = settings_from_toml_text(fleet_config(tensordock, proxmox, **options.pop("config", {})))
    return OrphanScan(settings, environ, clock=lambda: NOW, **options)


async def test_two_vms_on_one_account_are_listed_once_and_static_or_command_vms_not_at_all(
    tensordock, proxmox, environ
) -> None:
    scan = scanner(tensordock, proxmox, environ)
    assert [(a.provider, [vm.name for vm in a.vms]) for a in scan.accounts] == [
        ("tensordock", ["inference", "training"]),
        ("proxmox", ["homelab"]),
    ]
    report = await scan.scan()
    assert report.at == NOW and report.errors == ()
    assert [(a.listed, a.error) for a in report.accounts] == [(3, None), (3, None)]
    assert [orphan.instance.instance_id for orphan in report.orphans] == [FORGOTTEN, "200", "105"]
    assert report.hourly_usd == pytest.approx(0.35)
    assert report.summary == "3 instances running that the config does not know: $0.35/h (+2 without a listed price)"
    assert tensordock.requests == [("GET", "/api/v2/instances")]
    assert sorted(path for _, path in proxmox.requests) == ["/api2/json/nodes/pve/lxc", "/api2/json/nodes/pve/qemu"]
    assert scan.interval_s == 30.0


async def test_an_account_that_cannot_be_listed_is_an_error_and_the_others_are_still_reconciled(
    tensordock, proxmox, environ
) -> None:
    wrong = "td-wrong-key-9876543210"
    scan = scanner(tensordock, proxmox, environ | {"TD_KEY": wrong})
    report = await scan.scan()
    (failed,) = report.errors
    assert failed.vms == ("inference", "training") and failed.account.startswith("TensorDock key $TD_KEY at ")
    assert failed.error.startswith("TensorDock rejected the API key (HTTP 401)")
    assert [orphan.instance.instance_id for orphan in report.orphans] == ["200", "105"]  # qdrant, sd-box: by name
    assert report.summary == (
        "2 instances running that the config does not know: $0.00/h (+2 without a listed price);"
        " 1 account could not be listed"
    )
    shown = repr(report) + repr(scan) + json.dumps([a.error for a in report.accounts])
    assert wrong not in shown and KEY not in shown and TOKEN_SECRET not in shown


@pytest.mark.parametrize("fault", ["503", "garbled", "dropped"])
async def test_server_errors_and_bodies_it_cannot_read_are_errors_not_crashes(tensordock, proxmox, environ, fault):
    {"503": lambda: tensordock.faults.fail_next(503), "garbled": tensordock.faults.garble_next,
     "dropped": tensordock.faults.drop_next}[fault]()  # fmt: skip
    report = await scanner(tensordock, proxmox, environ).scan()
    (failed,) = report.errors
    assert failed.provider == "tensordock" and failed.listed == 0
    expected = {"503": "server error (HTTP 503)", "garbled": "not JSON", "dropped": "Cannot reach TensorDock"}[fault]
    assert expected in failed.error, failed.error
    assert len(report.orphans) == 2  # Proxmox's


async def test_a_missing_secret_names_its_variable_and_asks_nothing(tensordock, proxmox) -> None:
    report = await scanner(tensordock, proxmox, {"TD_KEY": KEY}).scan()
    (failed,) = report.errors
    assert failed.provider == "proxmox" and "PVE_SECRET" in failed.error
    assert proxmox.requests == []
    assert [orphan.instance.instance_id for orphan in report.orphans] == [FORGOTTEN]


async def test_an_account_that_does_not_answer_in_time_is_an_error(tensordock, proxmox, environ) -> None:
    proxmox.faults.delay_next(5.0)
    report = await scanner(tensordock, proxmox, environ, account_timeout_s=0.3).scan()
    (failed,) = report.errors
    assert failed.provider == "proxmox" and failed.error == "no complete answer within 0.3 s"
    assert [orphan.instance.instance_id for orphan in report.orphans] == [FORGOTTEN]


async def test_two_key_variables_holding_one_key_list_twice_but_report_each_orphan_once(
    tensordock, proxmox, environ
) -> None:
    scan = scanner(tensordock, proxmox, environ | {"TD_KEY_2": KEY}, config={"training_key_env": "TD_KEY_2"})
    report = await scan.scan()
    assert [a.listed for a in report.accounts] == [3, 3, 3]
    assert [orphan.instance.instance_id for orphan in report.orphans] == [FORGOTTEN, "200", "105"]


def test_configured_instances_and_accounts_of_a_config_with_nothing_to_list() -> None:
    settings = settings_from_toml_text('[[vm]]\nname = "brain"\nprovider = "static"\n')
    assert configured_instances(settings) == () and accounts_of(settings) == ()


async def test_a_config_with_nothing_to_list_reports_once_and_returns() -> None:
    settings = settings_from_toml_text('[[vm]]\nname = "brain"\nprovider = "static"\n')
    reports: list[OrphanReport] = []
    await asyncio.wait_for(OrphanScan(settings, {}, clock=lambda: NOW).run(reports.append, 60.0), 5)
    assert [(r.accounts, r.orphans) for r in reports] == [((), ())]
    assert reports[0].summary == "nothing to reconcile: no TensorDock or Proxmox VM in the config"


async def test_run_scans_at_start_and_every_interval_and_survives_its_handler(tensordock, proxmox, environ) -> None:
    slept: list[float] = []
    reports: list[OrphanReport] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise asyncio.CancelledError

    async def on_report(report: OrphanReport) -> None:
        reports.append(report)
        if len(reports) == 1:
            raise RuntimeError("a handler bug")  # logged; the scans go on
        if len(reports) == 2:  # the forgotten instance is stopped between scans
            tensordock.instances[FORGOTTEN].status = "StoppedDisassociated"

    scan = scanner(tensordock, proxmox, environ, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await scan.run(on_report)
    assert slept == [30.0, 30.0, 30.0] and len(reports) == 3
    assert [len(report.running) for report in reports] == [3, 3, 2]
    assert tensordock.requests == [("GET", "/api/v2/instances")] * 3


async def test_an_interval_of_zero_scans_once(tensordock, proxmox, environ) -> None:
    reports: list[OrphanReport] = []
    await asyncio.wait_for(scanner(tensordock, proxmox, environ).run(reports.append, 0), 5)
    assert len(reports) == 1 and len(tensordock.requests) == 1


def test_the_scan_interval_is_a_budget_setting() -> None:
    assert settings_from_toml_text("").budget.orphan_scan_minutes == 5.0
    with pytest.raises(Exception, match="orphan_scan_minutes"):
        settings_from_toml_text("[budget]\norphan_scan_minutes = -1\n")
