"""Where each service answers from here: the one place other modules ask for a service's URL.

A service with `via_ssh = false` is reached at its configured URL. One with `via_ssh = true`
is reached through a local port forward on its VM's SSH connection: its URL's host and port
are as the VM sees them, and the answer is `http://127.0.0.1:<forwarded port>` plus the URL's
path. Ask each time (`await endpoints.url(vm, service)`): after a reconnect the forwarded port
may change. Importing this module does not import asyncssh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from aiconsole.services.ssh_errors import SshUnavailable
from aiconsole.services.ssh_target import SshTarget

if TYPE_CHECKING:
    from aiconsole.services.ssh import SshPool

__all__ = ["Endpoint", "Endpoints", "UnknownService", "forward_destination", "forwarded_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnknownService(KeyError):
    def __str__(self) -> str:
        vm, service = self.args
        return f"no service {service!r} on VM {vm!r} in the config"


@dataclass(frozen=True)
class Endpoint:
    vm: str
    service: str
    url: str
    """As configured: for `via_ssh`, its host and port are as seen from the VM."""
    via_ssh: bool = False
    ssh: SshTarget | None = None


def forward_destination(url: str) -> tuple[str, int]:
    """The host and port a URL points at (default port by scheme), for a port forward."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)


def forwarded_url(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced by the local end of a forward."""
    parts = urlsplit(url)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Endpoints:
    """Services by `(vm, service)`; resolves `via_ssh` ones through `SshPool.forward`."""

    def __init__(self, pool: SshPool | None = None) -> None:
        self._pool = pool
        self._items: dict[tuple[str, str], Endpoint] = {}

    def add(
        self, vm: str, service: str, url: str, *, via_ssh: bool = False, ssh: SshTarget | str | None = None
    ) -> None:
        """Register a service; raises ValueError if `via_ssh` has no SSH target or bad URL."""
        target = SshTarget.parse(ssh) if isinstance(ssh, str) else ssh
        if via_ssh:
            if target is None:
                raise ValueError(f"service {service!r} on VM {vm!r} is via_ssh, but the VM has no ssh target")
            forward_destination(url)
        self._items[(vm, service)] = Endpoint(vm, service, url, via_ssh, target)

    def add_vm(self, vm_config: object) -> None:
        """Register every service of a config `VmConfig` (its `name`, `ssh` and `service` list)."""
        for service in getattr(vm_config, "service", ()):
            self.add(vm_config.name, service.name, service.url, via_ssh=service.via_ssh, ssh=vm_config.ssh)

    def get(self, vm: str, service: str) -> Endpoint:
        try:
            return self._items[(vm, service)]
        except KeyError:
            raise UnknownService(vm, service) from None

    def all(self) -> list[Endpoint]:
        return list(self._items.values())

    async def url(self, vm: str, service: str, *, wait: bool = True) -> str:
        """The URL that reaches the service from here.

        Raises UnknownService; for `via_ssh`, what `SshPool.forward` raises (SshUnavailable,
        HostKeyRefused, SshError), or SshUnavailable when no pool was given."""
        endpoint = self.get(vm, service)
        if not endpoint.via_ssh:
            return endpoint.url
        if self._pool is None or endpoint.ssh is None:
            raise SshUnavailable(f"{service} on {vm} is via_ssh, but SSH is not set up")
        remote_host, remote_port = forward_destination(endpoint.url)
        host, port = await self._pool.forward(vm, endpoint.ssh, remote_host, remote_port, wait=wait)
        return forwarded_url(endpoint.url, host, port)
