"""Where a VM's SSH server is: `user@host:port`, `host`, `[v6]:port`, or a ~/.ssh/config alias.

Parsing is cheap and imports nothing heavy, so config checks and the CLI can use it before
asyncssh is loaded. A bare name may be a `Host` alias: the port and user stay `None` so that
asyncssh fills them from the OpenSSH config (and `Hostname` replaces the alias there).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["SshTarget", "SshTargetError"]

_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_PORT = re.compile(r"\d{1,5}")


class SshTargetError(ValueError):
    """The text is not `user@host[:port]`, `[v6][:port]` or a Host alias."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    """Host name, address (IPv6 without brackets) or ~/.ssh/config alias."""
    port: int | None = None
    """None: the config's `Port` for this host, else 22."""
    user: str | None = None
    """None: the config's `User` for this host, else the local user name."""

    @classmethod
    def parse(cls, text: str) -> SshTarget:
        """Parse `user@host:port` and its shorter forms; raises `SshTargetError` with the reason."""
        value = text.strip()
        if value.startswith("ssh://"):
            value = value[len("ssh://") :].rstrip("/")
        if not value or any(ch.isspace() for ch in value):
            raise SshTargetError(f"{text!r}: must be user@host[:port] or a Host alias, without spaces")
        user = None
        if "@" in value:
            user, _, value = value.rpartition("@")
            if ":" in user:
                raise SshTargetError(f"{text!r}: must not carry a password: use an SSH key or agent")
            if not _USER.fullmatch(user):
                raise SshTargetError(f"{text!r}: {user!r} is not a valid user name")
        host, port = _split_host_port(text, value)
        return cls(host=host, port=port, user=user)

    @property
    def netloc(self) -> str:
        """`host` or `[v6]` (with `:port` when one is set), as OpenSSH tools write it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host

    def __str__(self) -> str:
        return f"{self.user}@{self.netloc}" if self.user else self.netloc


def _split_host_port(text: str, value: str) -> tuple[str, int | None]:
    port_text = None
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise SshTargetError(f"{text!r}: an IPv6 address is written [addr] or [addr]:port")
        port_text = rest[1:] if rest else None
        _check_ip(text, host)
    elif value.count(":") > 1:  # a bare IPv6 address: no port can follow it unambiguously
        host = value
        _check_ip(text, host)
    else:
        host, sep, port_text = value.partition(":")
        if not sep:
            port_text = None
        if not _HOST.fullmatch(host):
            raise SshTargetError(f"{text!r}: {host!r} is not a host name, address or alias")
    return host, _parse_port(text, port_text)


def _check_ip(text: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise SshTargetError(f"{text!r}: {host!r} is not an IPv6 address") from None


def _parse_port(text: str, port_text: str | None) -> int | None:
    if port_text is None:
        return None
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise SshTargetError(f"{text!r}: the port must be a number from 1 to 65535")
    return int(port_text)
