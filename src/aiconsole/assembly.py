"""Builds the running parts from settings: providers, the ledger, the fleet monitor.

Shared by the TUI and the scriptable CLI, so both drive the same core. Nothing here
imports Textual; the HTTP clients are imported only when providers are built, which
the TUI does after its first frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path

from aiconsole.config import SecretError, Settings, VmConfig, resolve_secret
from aiconsole.services.fleet import FleetMonitor
from aiconsole.services.ledger import Ledger
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, VmProvider


@dataclass
class Runtime:
    """Everything a front end needs: the settings and a monitor ready to open."""

    settings: Settings
    monitor: FleetMonitor
    source: str
    """Where the settings came from: a config path, or "demo fleet"."""
    theme_dirs: list[Path] = field(default_factory=list)
    """The user's own theme folders (next to their config)."""
    telemetry_options: dict = field(default_factory=dict)
    """Extra options for the SSH pool of the telemetry (the demo passes its client keys)."""
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    """Run after the monitor is closed (e.g. removing the demo's temporary data)."""
    chat_history_path: Path | None = None
    """The chat history database (the data dir's, or the demo's temporary one); None: none kept."""
    provider_environ: Mapping[str, str] = field(default_factory=dict)
    """Where the providers' secrets are read from: the user's environment, or the demo's own keys."""

    def build_telemetry(self):
        """The telemetry hub. Imports asyncssh (~0.3 s): the TUI calls it in a worker."""
        return build_telemetry(self.settings, **self.telemetry_options)

    def build_ssh_pool(self):
        """An SSH pool of its own (the CLI's model commands); imports asyncssh."""
        return build_ssh_pool(self.settings, client_keys=self.telemetry_options.get("client_keys"))

    def build_orphan_scan(self):
        """The orphan scan of the config's TensorDock and Proxmox accounts (`services.orphans`)."""
        from aiconsole.services.orphans import OrphanScan

        return OrphanScan(self.settings, self.provider_environ)

    def finish(self) -> None:
        for step in self.cleanup:
            step()


def local_timezone(name: str | None, environ: Mapping[str, str] = os.environ) -> tzinfo:
    """The operator's zone: the config's, else TZ, else the system's (DST-aware when possible)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    for candidate in (name, environ.get("TZ", "").lstrip(":") or None):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    try:
        with open("/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        from datetime import datetime

        return datetime.now().astimezone().tzinfo  # a fixed offset: right except across DST


# A TensorDock VM reuses its account's `GET /instances` while it is younger than this share of
# its own poll: a little less than one poll, so one round of the fleet's polls shares one request
# and the next round asks again.
LISTING_SHARE_OF_POLL = 0.8


class ProviderBuilder:
    """Builds each VM's provider; VMs on one TensorDock account share one rate limiter and
    one instance listing.

    TensorDock allows 100 requests a minute per organisation, not per VM, so both are keyed
    by API URL and key variable: at 100 VMs, one `GET /instances/{id}` per VM per poll would
    read each VM about once a minute; one `GET /instances` per round keeps the poll interval.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        poll_interval: float = 3.0,
        listing_clock: Callable[[], float] | None = None,
    ) -> None:
        self._environ = environ
        self._poll_interval = poll_interval
        """How often a start or stop checks the provider for the target state."""
        self._listing_clock = listing_clock
        """What a shared listing's age is measured on (None: the monotonic clock)."""
        self._limiters: dict[tuple[str, str], object] = {}
        self._listings: dict[tuple[str, str], object] = {}

    def __call__(self, vm: VmConfig) -> VmProvider:
        """The provider for one VM. A missing secret becomes a ProviderError shown on its pane."""
        try:
            return self._build(vm)
        except SecretError as error:
            raise ProviderError(ProviderErrorKind.AUTH, str(error)) from None

    def _tensordock(self, vm: VmConfig) -> VmProvider:
        from aiconsole.services.providers._http import RateLimiter
        from aiconsole.services.providers.tensordock import TensorDockProvider

        section = vm.tensordock
        account = (str(section.api_url), section.api_key_env)
        key = resolve_secret(section.api_key_env, self._environ)
        return TensorDockProvider(
            section.instance_id,
            key,
            str(section.api_url),
            limiter=self._limiters.setdefault(account, RateLimiter()),
            poll_interval=self._poll_interval,
            shared_listing=self._listings.setdefault(account, self._listing()),
            listing_max_age=LISTING_SHARE_OF_POLL * vm.poll_seconds,
        )

    def _listing(self):
        from aiconsole.services.providers.shared_listing import SharedListing

        return SharedListing(clock=self._listing_clock) if self._listing_clock else SharedListing()

    def _build(self, vm: VmConfig) -> VmProvider:
        # Imported here, not at module level: httpx costs ~0.1 s and must come after the first frame.
        environ = self._environ
        if vm.provider == "tensordock" and vm.tensordock is not None:
            return self._tensordock(vm)
        if vm.provider == "proxmox" and vm.proxmox is not None:
            from aiconsole.services.providers.proxmox import ProxmoxProvider

            px = vm.proxmox
            token_id = px.token_id or resolve_secret(px.token_id_env, environ).reveal()
            return ProxmoxProvider(
                str(px.api_url),
                px.node,
                px.vmid,
                token_id,
                resolve_secret(px.token_secret_env, environ),
                guest=px.guest,
                verify_tls=px.verify_tls,
                shutdown_timeout=px.shutdown_timeout_s,
                poll_interval=self._poll_interval,
            )
        if vm.provider == "command" and vm.command is not None:
            from aiconsole.services.providers.command import CommandProvider

            cmd = vm.command
            return CommandProvider(
                cmd.status,
                cmd.start,
                cmd.stop,
                timeout=cmd.timeout_s,
                states={k: str(v) for k, v in cmd.states.items()},
                poll_interval=self._poll_interval,
            )
        from aiconsole.services.providers.static import StaticProvider

        return StaticProvider()


def build_monitor(
    settings: Settings,
    ledger: Ledger,
    environ: Mapping[str, str],
    *,
    read_only: bool = False,
    resources: tuple[AbstractAsyncContextManager, ...] = (),
    clock=None,
    transition_poll_seconds: float = 3.0,
) -> FleetMonitor:
    """The monitor for `settings`. `transition_poll_seconds` is how often a VM that is
    starting or stopping is looked at, by the monitor and by the provider's own wait."""
    extra = {"clock": clock} if clock is not None else {}
    # A monitor on a clock of its own (tests, a demo on a fixed clock) measures a shared
    # listing's age on it too: an age in real time would date its observations (the fleet
    # subtracts it) against a clock that does not move with real time.
    listing_clock = (lambda: clock().timestamp()) if clock is not None else None
    return FleetMonitor(
        settings,
        ledger,
        ProviderBuilder(environ, poll_interval=transition_poll_seconds, listing_clock=listing_clock),
        transition_poll_seconds=transition_poll_seconds,
        tz=local_timezone(settings.budget.timezone, environ),
        read_only=read_only or settings.ui.read_only,
        resources=resources,
        **extra,
    )


def build_ssh_pool(settings: Settings, *, client_keys: list[Path] | None = None):
    """One SSH connection per VM, as `[ssh]` says (imports asyncssh, ~0.3 s)."""
    from aiconsole.services.ssh import SshPool

    ssh = settings.ssh
    pool_options: dict = {"use_agent": False, "client_keys": client_keys} if client_keys else {}
    return SshPool(
        known_hosts=Path(ssh.known_hosts).expanduser() if ssh.known_hosts else None,
        config_file=Path(ssh.config_file).expanduser() if ssh.config_file else None,
        max_handshakes=ssh.max_handshakes,
        keepalive_s=ssh.keepalive_s,
        connect_timeout_s=ssh.connect_timeout_s,
        **pool_options,
    )


def build_telemetry(settings: Settings, *, client_keys: list[Path] | None = None, clock=None):
    """The SSH pool and the telemetry hub for `settings` (a feed per running VM with `ssh`)."""
    from aiconsole.services.telemetry import TelemetryHub

    pool = build_ssh_pool(settings, client_keys=client_keys)
    local = None
    if settings.gpu.local:
        from aiconsole.services.gpu_feed import LocalGpuFeed
        from aiconsole.services.nvml import LocalGpus

        local = LocalGpuFeed(LocalGpus(), interval_s=settings.gpu.interval_s, busy_util_pct=settings.gpu.busy_util_pct)
    extra = {"clock": clock} if clock is not None else {}
    return TelemetryHub(settings, pool, local=local, **extra)


def model_servers(settings: Settings) -> list:
    """Every `ollama` and `openai` service of the fleet, in config order."""
    from aiconsole.domain.model_server import MODEL_SERVER_KINDS, ModelServer

    return [
        ModelServer(
            vm.name, service.name, service.kind, vm.hourly_usd, vm.ssh, service.api_key_env, vm.provider != "static"
        )
        for vm in settings.vm
        for service in vm.service
        if service.kind in MODEL_SERVER_KINDS
    ]


def build_model_library(settings: Settings, endpoints, pool=None, *, on_activity=None, environ=os.environ):
    """The model library over the telemetry hub's endpoints and SSH pool (imports ollama:
    the TUI calls it after the first frame). `on_activity(vm, detail)`: a pull is running."""
    from aiconsole.services.model_library import ModelLibrary

    servers = model_servers(settings)
    keys = {s.api_key_env: environ[s.api_key_env] for s in servers if s.api_key_env and s.api_key_env in environ}
    extra = {"on_activity": on_activity} if on_activity is not None else {}
    return ModelLibrary(servers, endpoints, pool, environ=keys, **extra)


def build_chat_service(settings: Settings, endpoints, *, fleet=None, environ=os.environ, clock=None):
    """The chat over the telemetry hub's endpoints (or the CLI's own), starting VMs through
    `fleet` (the monitor). Only the services' API key variables are read from `environ`."""
    from aiconsole.services.chat_service import ChatOptions, ChatService

    targets = model_servers(settings)
    keys = {t.api_key_env: environ[t.api_key_env] for t in targets if t.api_key_env and t.api_key_env in environ}
    extra = {"clock": clock} if clock is not None else {}
    return ChatService(targets, endpoints, ChatOptions.of(settings.chat), fleet=fleet, environ=keys, **extra)


def open_chat_history(runtime: Runtime):
    """The chat history database, or None when `[chat] history = false` (or no path)."""
    if not runtime.settings.chat.history or runtime.chat_history_path is None:
        return None
    from aiconsole.services.chat_history import ChatHistory

    return ChatHistory.open(runtime.chat_history_path)


def tracking_servers(settings: Settings) -> list:
    """Every `mlflow` service of the fleet, in config order."""
    from aiconsole.domain.training import TrackingServer

    return [
        TrackingServer(vm.name, service.name, service.api_key_env, service.username, vm.hourly_usd)
        for vm in settings.vm
        for service in vm.service
        if service.kind == "mlflow"
    ]


def tracks_runs(settings: Settings, vm: str) -> bool:
    """Whether `vm` has an `mlflow` service: only then can a stop end a training run there."""
    return any(server.vm == vm for server in tracking_servers(settings))


def build_training(settings: Settings, endpoints, *, on_activity=None, environ=os.environ, clock=None):
    """The MLflow watch over `endpoints` (the hub's, or the CLI's own). Only the servers'
    secret variables (and their ``_FILE`` forms) are taken from `environ`."""
    from aiconsole.services.training import TrainingOptions, TrainingWatch

    servers = tracking_servers(settings)
    names = {name for s in servers if s.api_key_env for name in (s.api_key_env, s.api_key_env + "_FILE")}
    extra: dict = {"environ": {name: environ[name] for name in names if name in environ}}
    if on_activity is not None:
        extra["on_activity"] = on_activity
    if clock is not None:
        extra["clock"] = clock
    return TrainingWatch(servers, endpoints, TrainingOptions.of(settings.training), **extra)


def build_money_guard(runtime: Runtime, *, role: str = "console", notify=None, warmup_s: float | None = None):
    """The idle and budget stops for the runtime's monitor (services/money_guard.py), with the
    `[budget]` grace and snooze; `role` "watch" for `aiconsole watch`, which outranks a console."""
    from datetime import timedelta

    from aiconsole.services.money_guard import DEFAULT_WARMUP_S, MoneyGuard

    budget = runtime.settings.budget
    extra = {"notify": notify} if notify is not None else {}
    return MoneyGuard(
        runtime.monitor,
        role=role,
        tz=runtime.monitor.tz,
        grace=timedelta(minutes=budget.grace_minutes),
        snooze_minutes=budget.snooze_minutes,
        warmup_s=DEFAULT_WARMUP_S if warmup_s is None else warmup_s,
        **extra,
    )
