"""Host key checks: known_hosts is always consulted, and an unknown or changed key is refused.

asyncssh calls `SSHClient.validate_host_public_key` only for a key that known_hosts does not
trust; `RecordingClient` answers False (never accepting it) and keeps the presented key, so
the `HostKeyNotVerifiable` that follows can be turned into a `HostKeyRefused` that shows the
key's SHA256 fingerprint and how to accept it, as OpenSSH does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncssh

from aiconsole.services.ssh_errors import HostKeyRefused, SshUnavailable
from aiconsole.services.ssh_exec import describe
from aiconsole.services.ssh_target import SshTarget

log = logging.getLogger(__name__)

_DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()


class RecordingClient(asyncssh.SSHClient):
    """Refuses every key known_hosts does not trust, remembering it; notes why a connection ended."""

    def __init__(
        self, known_hosts: asyncssh.SSHKnownHosts, known_hosts_path: Path, target: SshTarget
    ) -> None:
        self._known_hosts = known_hosts
        self._path = known_hosts_path
        self._target = target
        self._presented: tuple[str, str, int, asyncssh.SSHKey] | None = None
        self._lost: Exception | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self._presented = (host, addr, port, key)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc

    def loss_reason(self) -> str:
        return describe(self._lost) if self._lost is not None else "closed by the server"

    def refusal(self, exc: asyncssh.HostKeyNotVerifiable) -> HostKeyRefused:
        if self._presented is None:  # revoked key, or a certificate we cannot check
            host, port = self._target.host, self._target.port or 22
            return HostKeyRefused(host, port, "", changed=False,
                                  message=f"host key of {host} refused: {describe(exc)}")
        host, addr, port, key = self._presented
        trusted = self._known_hosts.match(host, addr, port if port != 22 else None)[0]
        fingerprint = key.get_fingerprint("sha256")
        changed = bool(trusted)
        message = _message(host, port, key.get_algorithm(), fingerprint, changed, self._path, self._target)
        return HostKeyRefused(host, port, fingerprint, changed=changed, message=message)


def _message(
    host: str, port: int, algorithm: str, fingerprint: str, changed: bool, path: Path, target: SshTarget
) -> str:
    where = f"[{host}]:{port}" if port != 22 else host
    p = f" -p {port}" if port != 22 else ""
    ssh_opts = "" if path == _DEFAULT_KNOWN_HOSTS else f" -o UserKnownHostsFile={path}"
    ssh_cmd = f"ssh{ssh_opts}{p} {_login(target)}"
    accept = (
        f"check the fingerprint (e.g. on the VM's console: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
        f"then run `{ssh_cmd}` once to add it to known_hosts, "
        f"or `ssh-keyscan{p} {host} >> {path}`, and retry"
    )
    if changed:
        return (
            f"host key for {where} has CHANGED: {path} holds a different key (a rebuilt VM, or an "
            f"attack). The server offers {algorithm} {fingerprint}. If the change is expected, run "
            f"`ssh-keygen -R '{where}' -f {path}`, then {accept}"
        )
    return f"host key for {where} is not in {path}. The server offers {algorithm} {fingerprint}: {accept}"


def _login(target: SshTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.user}@{host}" if target.user else host


def load_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """Read known_hosts afresh (an accepted key counts at the next attempt); OpenSSH skips
    lines it cannot read, and so do we. A missing file trusts nothing."""
    known = asyncssh.SSHKnownHosts()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return known
    except OSError as exc:
        raise SshUnavailable(f"cannot read known_hosts {path}: {describe(exc)}") from None
    skipped = 0
    for line in text.splitlines():
        try:
            known.load(line)
        except (ValueError, asyncssh.Error):
            skipped += 1
    if skipped:
        log.warning("skipped %d unreadable line(s) in %s", skipped, path)
    return known
