"""Orphans: instances a provider lists that the config does not know (issue 7). Pure.

A forgotten GPU instance bills by the hour whether or not the console shows it, so the
providers that can list their instances (TensorDock, Proxmox) are reconciled with the
config: `find_orphans(listings, configured)`. An instance is known when a configured
VM of the same provider names its id on the same endpoint (the same API URL); ids are
compared as text, so Proxmox's vmid 101 and "101" are one guest.

An unknown instance that is running, starting, stopping, or in a state we cannot read is
an orphan that may be costing money (unknown never counts as stopped). An unknown
stopped one is still reported, as such, but adds nothing to the hourly total.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from aiconsole.domain.power import PowerState

PROVIDER_TITLES = {"tensordock": "TensorDock", "proxmox": "Proxmox"}
_SHORT_ID = 8  # a UUID's first 8 characters tell instances apart, as git's short hashes do


def endpoint_key(url: str) -> str:
    """An API URL as listings and config are compared: without a trailing slash."""
    return url.strip().rstrip("/")


@dataclass(frozen=True, slots=True)
class InstanceListing:
    """One instance as a provider's list call reported it (text fields already sanitised)."""

    provider: str
    """``tensordock`` or ``proxmox``."""
    endpoint: str
    """The API it was listed from: the TensorDock API URL, the Proxmox API root."""
    instance_id: str
    """TensorDock's instance id; Proxmox's vmid."""
    name: str
    power: PowerState
    raw_state: str = ""
    """The provider's own word for the state (``StoppedDisassociated``, ``running (paused)``)."""
    hourly_usd: float | None = None
    """The hourly price the provider lists; None when it gives none (Proxmox never does)."""
    host: str = ""
    """Where it runs: the Proxmox node; TensorDock's location when the listing names one."""
    guest: str = ""
    """Proxmox only: ``qemu`` (a VM) or ``lxc`` (a container)."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, endpoint_key(self.endpoint), self.instance_id)


@dataclass(frozen=True, slots=True)
class ConfiguredInstance:
    """An instance the config knows: a ``[[vm]]`` of a listing provider."""

    vm: str
    provider: str
    endpoint: str
    instance_id: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, endpoint_key(self.endpoint), str(self.instance_id))


@dataclass(frozen=True, slots=True)
class Orphan:
    """A listed instance that no configured VM names."""

    instance: InstanceListing

    @property
    def running(self) -> bool:
        """May be billed: running, starting, stopping, or a state we cannot read."""
        power = self.instance.power
        return power.is_billed or not power.is_known

    @property
    def hourly_usd(self) -> float | None:
        return self.instance.hourly_usd

    @property
    def subject(self) -> str:
        """``TensorDock instance sdxl-test (5a0c1f2e…)``, ``Proxmox qemu guest 105 (sd-box) on node pve``."""
        item = self.instance
        title = PROVIDER_TITLES.get(item.provider, item.provider)
        if item.provider == "proxmox":
            kind = f"{item.guest} guest" if item.guest else "guest"
            named = f" ({item.name})" if item.name else ""
            where = f" on node {item.host}" if item.host else ""
            return f"{title} {kind} {item.instance_id}{named}{where}"
        name = item.name or "(no name)"
        return f"{title} instance {name} ({short_id(item.instance_id)})"

    @property
    def state(self) -> str:
        item = self.instance
        if item.power.is_known:
            return item.power.value
        return f"in state {item.raw_state!r}" if item.raw_state else "in an unknown state"

    @property
    def price(self) -> str:
        if self.hourly_usd is None:
            title = PROVIDER_TITLES.get(self.instance.provider, self.instance.provider)
            return f"no $/h ({title} lists no price)"
        return f"${self.hourly_usd:.2f}/h"

    @property
    def text(self) -> str:
        """One line for a notification or the CLI."""
        if self.running:
            return f"orphan: {self.subject} {self.state}, {self.price} — not in the config"
        return f"not in the config: {self.subject} {self.state} — no compute billed while stopped"


def short_id(instance_id: str) -> str:
    return instance_id if len(instance_id) <= _SHORT_ID + 2 else instance_id[:_SHORT_ID] + "…"


def find_orphans(listings: Iterable[InstanceListing], configured: Iterable[ConfiguredInstance]) -> tuple[Orphan, ...]:
    """The listed instances no configured VM names: those that may bill first, dearest first.

    An instance listed twice (two keys of one account, two tokens on one node) is one orphan.
    """
    known = {item.key for item in configured}
    found: dict[tuple[str, str, str], Orphan] = {}
    for listing in listings:
        if listing.key not in known and listing.key not in found:
            found[listing.key] = Orphan(listing)
    return tuple(sorted(found.values(), key=_order))


def _order(orphan: Orphan) -> tuple:
    item = orphan.instance
    return (not orphan.running, -(orphan.hourly_usd or 0.0), item.provider, item.name, item.instance_id)


def running_hourly_usd(orphans: Iterable[Orphan]) -> float:
    """What the orphans that may be running cost per hour, as far as their providers list prices."""
    return math.fsum(o.hourly_usd for o in orphans if o.running and o.hourly_usd is not None)


@dataclass(frozen=True, slots=True)
class AccountScan:
    """One listing call's outcome: one TensorDock key, or one Proxmox host and node."""

    provider: str
    account: str
    """What it is, without secrets: ``TensorDock key $TENSORDOCK_API_KEY at https://…``."""
    vms: tuple[str, ...]
    """The configured VMs that share it."""
    listed: int = 0
    """How many instances it listed."""
    error: str | None = None
    """Why it could not be listed (sanitised, no secret); None when it was."""


@dataclass(frozen=True, slots=True)
class OrphanReport:
    """One reconciliation of every listing account with the config."""

    at: datetime
    accounts: tuple[AccountScan, ...]
    orphans: tuple[Orphan, ...]

    @property
    def running(self) -> tuple[Orphan, ...]:
        """The orphans that may be costing money now."""
        return tuple(orphan for orphan in self.orphans if orphan.running)

    @property
    def errors(self) -> tuple[AccountScan, ...]:
        return tuple(account for account in self.accounts if account.error is not None)

    @property
    def hourly_usd(self) -> float:
        return running_hourly_usd(self.orphans)

    @property
    def summary(self) -> str:
        """One line: what leaks, or that nothing does, and what could not be checked."""
        running, errors, total = self.running, len(self.errors), len(self.accounts)
        if not running and total and errors == total:
            return "no account could be listed: whether anything the config does not know runs is unknown"
        if running:
            unpriced = sum(1 for orphan in running if orphan.hourly_usd is None)
            extra = f" (+{unpriced} without a listed price)" if unpriced else ""
            line = f"{_count(len(running), 'instance')} running that the config does not know: "
            line += f"${self.hourly_usd:.2f}/h{extra}"
        elif not total:
            line = "nothing to reconcile: no TensorDock or Proxmox VM in the config"
        else:
            line = f"no orphans running ({total - errors} of {_count(total, 'account')} listed)"
        if errors:
            line += f"; {_count(errors, 'account')} could not be listed"
        return line


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
