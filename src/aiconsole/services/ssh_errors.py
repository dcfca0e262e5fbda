"""The SSH errors callers catch; importing them does not import asyncssh.

Every message is sanitised and folded to one line here, so it can go straight to a status
line (it may quote a server's words or a host name from the config).
"""

from __future__ import annotations

from aiconsole.domain.sanitize import sanitize_line

__all__ = ["HostKeyRefused", "SshCommandTimeout", "SshError", "SshUnavailable"]

_HOST_KEY_MESSAGE_LIMIT = 1200


class SshError(Exception):
    """Base of the SSH errors: the server refused a channel or a forward could not listen."""

    def __init__(self, message: str, *, limit: int = 500) -> None:
        super().__init__(sanitize_line(message, limit))

    @property
    def message(self) -> str:
        return str(self.args[0])


class SshUnavailable(SshError):
    """No usable connection to the VM: it failed, was lost, is backing off or was closed."""


class SshCommandTimeout(SshError):
    """A command ran past its timeout; its channel was closed, which ends it remotely."""


class HostKeyRefused(SshUnavailable):
    """The server's host key is not in known_hosts (unknown) or differs from it (changed).

    Not retried until `SshPool.retry(vm)`: accepting a key is the operator's decision."""

    def __init__(
        self, host: str, port: int, fingerprint: str, *, changed: bool, message: str = ""
    ) -> None:
        self.host, self.port, self.fingerprint, self.changed = host, port, fingerprint, changed
        super().__init__(
            message or f"host key of {host}:{port} refused: {fingerprint}", limit=_HOST_KEY_MESSAGE_LIMIT
        )

    def copy(self) -> HostKeyRefused:
        """A fresh exception with the same facts (each waiter raises its own)."""
        return HostKeyRefused(
            self.host, self.port, self.fingerprint, changed=self.changed, message=self.message
        )
