"""The orphan scan (issue 7): list every TensorDock and Proxmox account the config uses and
report the instances it does not know, with what they cost per hour.

One listing per account, never one per VM: VMs on one TensorDock key (API URL and key
variable) share one `GET /instances`; guests on one Proxmox host, node and token share one
`GET /nodes/{node}/qemu` and `/lxc`. The listing client is the provider the fleet monitor
would build for the account's first VM (`assembly.ProviderBuilder`, or the factory given),
so secrets are read the same way (``$NAME`` or ``$NAME_FILE``, held in a `Secret`) and
TensorDock's rate limiter is shared with whatever else that builder made. Static and
command VMs cannot list anything and are left out.

`scan()` never raises (cancellation aside): an account that cannot be listed (missing
secret, 401, 5xx, a body it cannot read, no answer in time) is an `AccountScan` with its
error, sanitised and without the secret, and the other accounts are still reconciled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiconsole.domain.orphans import (
    AccountScan,
    ConfiguredInstance,
    InstanceListing,
    OrphanReport,
    endpoint_key,
    find_orphans,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.clock import utc_now
from aiconsole.services.providers.base import ProviderError, VmProvider

if TYPE_CHECKING:
    from aiconsole.config import Settings, VmConfig

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_TIMEOUT_S = 90.0
"""One account's listing, 429 back-offs included, must be over within this; then it is an error."""


@runtime_checkable
class InstanceLister(Protocol):
    """A provider that can list its account's instances (TensorDock, Proxmox)."""

    kind: str

    async def list_instances(self) -> tuple[InstanceListing, ...]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Account:
    """One listing: a TensorDock key, or a Proxmox host + node + token, and the VMs on it."""

    provider: str
    label: str
    """Names it without secrets: ``TensorDock key $TENSORDOCK_API_KEY at https://…``."""
    vms: tuple[VmConfig, ...]
    """The configured VMs on it; the first one's section builds the listing client."""


def endpoint_of(vm: VmConfig) -> str:
    """The API a VM's provider talks to, as listings name it (Proxmox: the `/api2/json` root)."""
    if vm.tensordock is not None:
        return endpoint_key(str(vm.tensordock.api_url))
    if vm.proxmox is not None:
        from aiconsole.services.providers.proxmox import api_root  # httpx: only when asked

        return endpoint_key(api_root(str(vm.proxmox.api_url)))
    return ""


def configured_instances(settings: Settings) -> tuple[ConfiguredInstance, ...]:
    """Every instance the config knows, on the providers that can list theirs."""
    known = []
    for vm in settings.vm:
        if vm.tensordock is not None:
            known.append(ConfiguredInstance(vm.name, vm.provider, endpoint_of(vm), vm.tensordock.instance_id))
        elif vm.proxmox is not None:
            known.append(ConfiguredInstance(vm.name, vm.provider, endpoint_of(vm), str(vm.proxmox.vmid)))
    return tuple(known)


def accounts_of(settings: Settings) -> tuple[Account, ...]:
    """The accounts to list, in config order, each once."""
    grouped: dict[tuple, list[VmConfig]] = {}
    labels: dict[tuple, tuple[str, str]] = {}
    for vm in settings.vm:
        found = _account_key(vm)
        if found is not None:
            key, label = found
            grouped.setdefault(key, []).append(vm)
            labels.setdefault(key, (vm.provider, label))
    return tuple(Account(labels[key][0], labels[key][1], tuple(vms)) for key, vms in grouped.items())


def _account_key(vm: VmConfig) -> tuple[tuple, str] | None:
    if vm.provider == "tensordock" and vm.tensordock is not None:
        endpoint, env = endpoint_of(vm), vm.tensordock.api_key_env
        return ("tensordock", endpoint, env), f"TensorDock key ${env} at {endpoint}"
    if vm.provider == "proxmox" and vm.proxmox is not None:
        px = vm.proxmox
        endpoint = endpoint_of(vm)
        token = px.token_id or f"${px.token_id_env}"
        key = ("proxmox", endpoint, px.node, token, px.token_secret_env)
        return key, f"Proxmox node {px.node} at {endpoint} (token {token})"
    return None  # static and command VMs list nothing


class OrphanScan:
    """Reconciles the config's TensorDock and Proxmox accounts with what they run.

    `provider_factory`: builds a VM's provider, raising `ProviderError` (a missing secret);
    pass the monitor's `ProviderBuilder` to share TensorDock's rate limiter. By default an
    `assembly.ProviderBuilder` of its own reading secrets from `environ`.
    """

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        *,
        provider_factory: Callable[[VmConfig], VmProvider] | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        account_timeout_s: float = DEFAULT_ACCOUNT_TIMEOUT_S,
    ) -> None:
        self.accounts = accounts_of(settings)
        self.configured = configured_instances(settings)
        self.interval_s = settings.budget.orphan_scan_minutes * 60.0
        """Seconds between scans, from ``[budget] orphan_scan_minutes`` (0: scan once)."""
        if provider_factory is None:
            from aiconsole.assembly import ProviderBuilder  # the one place secrets become providers

            provider_factory = ProviderBuilder(environ)
        self._factory = provider_factory
        self._clock, self._sleep = clock, sleep
        self._timeout_s = account_timeout_s

    def __repr__(self) -> str:
        return f"OrphanScan(accounts={[account.label for account in self.accounts]!r})"

    async def scan(self) -> OrphanReport:
        """List every account at once and reconcile; never raises."""
        outcomes = await asyncio.gather(*(self._list(account) for account in self.accounts))
        listings = [listing for _, found in outcomes for listing in found]
        return OrphanReport(
            at=self._clock(),
            accounts=tuple(scanned for scanned, _ in outcomes),
            orphans=find_orphans(listings, self.configured),
        )

    async def run(
        self,
        on_report: Callable[[OrphanReport], Awaitable[object] | object],
        interval_s: float | None = None,
    ) -> None:
        """Scan at once, then every `interval_s` seconds (default `self.interval_s`), until
        cancelled. 0, or a config with no account to list: scan once and return.
        `on_report` may be sync or async; an exception from it is logged, not raised."""
        interval = self.interval_s if interval_s is None else interval_s
        while True:
            report = await self.scan()
            try:
                result = on_report(report)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("the orphan report handler failed")
            if interval <= 0 or not self.accounts:
                return
            await self._sleep(interval)

    async def _list(self, account: Account) -> tuple[AccountScan, tuple[InstanceListing, ...]]:
        def scanned(listed: int = 0, error: str | None = None) -> AccountScan:
            names = tuple(vm.name for vm in account.vms)
            return AccountScan(account.provider, account.label, names, listed, error)

        try:
            async with asyncio.timeout(self._timeout_s):
                found = await self._list_once(account)
        except ProviderError as error:
            return scanned(error=sanitize_line(error.message)), ()
        except TimeoutError:
            return scanned(error=f"no complete answer within {self._timeout_s:g} s"), ()
        except Exception as error:  # a bug of ours must not end the scan of the other accounts
            log.warning("listing %s failed", account.label, exc_info=True)
            return scanned(error=f"listing failed unexpectedly ({type(error).__name__})"), ()
        return scanned(listed=len(found)), found

    async def _list_once(self, account: Account) -> tuple[InstanceListing, ...]:
        # In a thread, as the monitor does: reading a secret may read a file.
        provider = await asyncio.to_thread(self._factory, account.vms[0])
        try:
            if not isinstance(provider, InstanceLister):
                return ()
            return await provider.list_instances()
        finally:
            await provider.aclose()
