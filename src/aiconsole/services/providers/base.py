"""The contract every VM provider fulfils, and the errors it may raise.

A provider knows one API's vocabulary and maps it onto `PowerState`. It does not
poll on a schedule, keep a ledger or know about the UI: `services.fleet` does that.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from aiconsole.domain.power import PowerState


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One observation of a VM's power, as the provider reported it."""

    power: PowerState
    raw_state: str = ""
    """The provider's own word for the state (e.g. ``StoppedDisassociated``), sanitised."""
    label: str = ""
    """The provider's display name for the instance, sanitised."""
    detail: str = ""
    """Anything else worth showing (e.g. the provider's message), sanitised."""
    age_s: float = 0.0
    """How long before it was returned the provider was asked: 0 for a read of its own, the
    listing's age for one read from an account-wide listing shared with other VMs."""


class ProviderErrorKind(StrEnum):
    AUTH = "auth"  # 401/403, missing key
    NOT_FOUND = "not_found"  # 404: the instance id is wrong or gone
    RATE_LIMITED = "rate_limited"  # 429 after our own backoff gave up
    SERVER = "server"  # 5xx
    TIMEOUT = "timeout"  # no answer in time
    CONNECT = "connect"  # refused, DNS, TLS
    MALFORMED = "malformed"  # body we cannot understand
    UNSUPPORTED = "unsupported"  # e.g. start on a static host
    FAILED = "failed"  # the provider said no, or a command exited non-zero


class ProviderError(Exception):
    """A provider call failed. `message` is sanitised and safe to show on screen."""

    def __init__(self, kind: ProviderErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


@runtime_checkable
class VmProvider(Protocol):
    """Status, start and stop for one VM.

    ``start``/``stop`` return once the provider reports the target state (polling as
    the API requires) or raise ``ProviderError``; callers run them in a worker and keep
    polling ``status`` meanwhile so transitions show as they happen.
    """

    kind: str
    """``tensordock`` | ``proxmox`` | ``command`` | ``static``."""
    can_power: bool
    """False for always-on hosts: no start or stop."""

    async def status(self) -> ProviderStatus: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def aclose(self) -> None: ...
