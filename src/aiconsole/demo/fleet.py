"""The demo fleet: the operator's fleet from FLEET.md, served by loopback fakes.

`aiconsole --demo` (and the tests) drive these through the real provider clients:
a TensorDock v2 API with the `inference` (running) and `training` (stopped) GPU VMs,
a Proxmox host with a GPU workstation guest, and an always-on free-tier box. VMs take
a few seconds to start and stop, like real ones. The TensorDock account also runs a
forgotten `sdxl-test` 4090 that the config does not know: the orphan scan reports it.

Ports are bound when the fleet is created, before any event loop runs, so the config
text can name them; the servers start accepting when the monitor opens the fleet.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from aiconsole.demo.fleet_telemetry import DemoTelemetry
from aiconsole.demo.proxmox_api import FakeProxmox
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.power import PowerState

INFERENCE_ID = "7c1e4a52-inference-4090"
TRAINING_ID = "9f03b6d8-training-4090"
ORPHAN_ID = "5a0c1f2e-sdxl-test-4090"
"""A running instance on the demo's TensorDock account that its config does not name."""
PROXMOX_TOKEN_ID = "root@pam!aiconsole"
_VMS = ("inference", "training", "homelab", "brain")

_CONFIG_TEMPLATE = """\
# The demo fleet (generated): the shape of the operator's real fleet, on loopback.
[budget]
daily_usd = 5.0
monthly_usd = 50.0
timezone = "{timezone}"

[gpu]
local = false

[ssh]
known_hosts = "{known_hosts}"
config_file = "{ssh_config}"

[[vm]]
name = "inference"
provider = "tensordock"
hourly_usd = 0.35
idle_stop_minutes = 30
poll_seconds = 5
ssh = "{ssh_inference}"
[vm.tensordock]
instance_id = "{inference_id}"
api_key_env = "DEMO_TENSORDOCK_API_KEY"
api_url = "{tensordock_url}"
{services_inference}
[[vm]]
name = "training"
provider = "tensordock"
hourly_usd = 0.35
idle_stop_minutes = 30
poll_seconds = 5
ssh = "{ssh_training}"
[vm.tensordock]
instance_id = "{training_id}"
api_key_env = "DEMO_TENSORDOCK_API_KEY"
api_url = "{tensordock_url}"
{services_training}
[[vm]]
name = "homelab"
provider = "proxmox"
hourly_usd = 0.0
idle_stop_minutes = 120
poll_seconds = 5
ssh = "{ssh_homelab}"
[vm.proxmox]
api_url = "{proxmox_url}"
node = "pve"
vmid = 101
token_id = "{proxmox_token_id}"
token_secret_env = "DEMO_PROXMOX_TOKEN_SECRET"
verify_tls = false
shutdown_timeout_s = 20
{services_homelab}
[[vm]]
name = "brain"
provider = "static"
poll_seconds = 30
ssh = "{ssh_brain}"
{services_brain}"""


class DemoFleet:
    """The fake provider APIs of the demo; an async context manager that serves them."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        start_seconds: float = 4.0,
        stop_seconds: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        timezone: str = "UTC",
    ) -> None:
        self.timezone = timezone
        # Fresh random credentials per run: the demo never reads a real key.
        self.environ = {
            "DEMO_TENSORDOCK_API_KEY": secrets.token_urlsafe(24),
            "DEMO_PROXMOX_TOKEN_SECRET": secrets.token_urlsafe(24),
        }
        self.tensordock = FakeTensorDock(
            self.environ["DEMO_TENSORDOCK_API_KEY"], start_seconds=start_seconds, stop_seconds=stop_seconds, clock=clock
        )
        self.tensordock.add_instance(INFERENCE_ID, "inference-rtx4090-eu", "Running")
        self.tensordock.add_instance(TRAINING_ID, "training-rtx4090-eu", "StoppedDisassociated")
        self.tensordock.add_instance(ORPHAN_ID, "sdxl-test", "Running", rate_hourly=0.35)
        self.proxmox = FakeProxmox(
            PROXMOX_TOKEN_ID, self.environ["DEMO_PROXMOX_TOKEN_SECRET"],
            start_seconds=start_seconds / 2, shutdown_seconds=stop_seconds, clock=clock,
        )  # fmt: skip
        self.proxmox.add_guest(101, "gpu-workstation", node="pve", status="running")
        self.tensordock.server.bind()
        self.proxmox.server.bind()
        # The SSH servers' keys and known_hosts; a folder of our own is removed on exit.
        self._own_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="aiconsole-demo-")) if directory is None else directory
        self.telemetry = DemoTelemetry(self.directory / "ssh")

    @property
    def config_text(self) -> str:
        return _CONFIG_TEMPLATE.format(
            timezone=self.timezone,
            inference_id=INFERENCE_ID,
            training_id=TRAINING_ID,
            tensordock_url=self.tensordock.url,
            proxmox_url=self.proxmox.url,
            proxmox_token_id=PROXMOX_TOKEN_ID,
            known_hosts=self.telemetry.known_hosts_path,
            ssh_config=self.telemetry.directory / "no-ssh-config",
            **{f"ssh_{vm}": self.telemetry.ssh_target(vm) for vm in _VMS},
            **{f"services_{vm}": self.telemetry.services_toml(vm) for vm in _VMS},
        )

    async def __aenter__(self) -> DemoFleet:
        await self.tensordock.start()
        await self.proxmox.start()
        await self.telemetry.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.telemetry.__aexit__(*exc_info)
        await self.proxmox.close()
        await self.tensordock.close()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def seed_ledger(ledger, now: datetime, tz: tzinfo) -> None:
        """Earlier runs, so the costs and budget bars have a history to show.

        inference: a 2-hour run earlier, and the current run started 22 minutes ago;
        training: a 3-hour run yesterday and a 90-minute one earlier today.
        """
        history = (
            ("training", timedelta(hours=27), PowerState.RUNNING),
            ("training", timedelta(hours=24), PowerState.STOPPED),
            ("inference", timedelta(hours=5), PowerState.RUNNING),
            ("training", timedelta(hours=4, minutes=30), PowerState.RUNNING),
            ("inference", timedelta(hours=3), PowerState.STOPPED),
            ("training", timedelta(hours=3), PowerState.STOPPED),
            ("inference", timedelta(minutes=22), PowerState.RUNNING),
            ("homelab", timedelta(days=3), PowerState.RUNNING),
        )
        for vm, ago, state in sorted(history, key=lambda row: -row[1]):
            ledger.record_power(vm, state, now - ago)
        ledger.record_activity("inference", "operator", now - timedelta(minutes=22), "start")
        ledger.record_activity("homelab", "operator", now - timedelta(minutes=41), "start")
