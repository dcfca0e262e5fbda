"""Proxmox VE (`/api2/json`): status, start and graceful-then-forced stop of one guest,
and the list of the node's guests (for the orphan scan).

Calls (see `aiconsole.demo.proxmox_api` for sources): `GET .../status/current`
(`data.status` is running|stopped; for qemu `data.qmpstatus` says more: paused,
prelaunch, ...); `POST .../status/start|shutdown|stop`, each answering
`{"data": "UPID:..."}`, a task followed with `GET /nodes/{node}/tasks/{upid}/status`
(`status` running|stopped, `exitstatus` "OK" or the error). Auth is an API token in
`Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`; no CSRF token is needed then.

Proxmox has no "starting"/"stopping" state of its own, so while this provider is
carrying out a start or stop, `status()` reports the transition itself.
A guest that does not exist is an HTTP 500 "Configuration file ... does not exist",
reported here as NOT_FOUND.

`GET /nodes/{node}/qemu` and `/nodes/{node}/lxc` list the node's guests the token may
audit: `{"data": [{"vmid", "name", "status", "template"?, "qmpstatus"?, ...}]}`. The
vmid is a number, except in the lxc lists of older PVE releases, which send it as text.
Proxmox has no prices: a listed guest's `hourly_usd` is None.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx

from aiconsole.domain.orphans import InstanceListing
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.secret import Secret
from aiconsole.services.providers._http import Clock, JsonApi, Sleep, wait_for_power
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, ProviderStatus

log = logging.getLogger(__name__)

GUEST_KINDS = ("qemu", "lxc")

# qmpstatus is QEMU's run state; `status` says "running" for all of these.
_POWER_BY_QMPSTATUS = {
    "running": PowerState.RUNNING,
    "paused": PowerState.RUNNING,  # still holds its memory and host; start would be refused
    "suspended": PowerState.RUNNING,
    "prelaunch": PowerState.STARTING,
    "inmigrate": PowerState.STARTING,
    "restore-vm": PowerState.STARTING,
    "shutdown": PowerState.STOPPING,
    "save-vm": PowerState.STOPPING,
    "finish-migrate": PowerState.STOPPING,
    "postmigrate": PowerState.STOPPING,
    "io-error": PowerState.ERROR,
    "internal-error": PowerState.ERROR,
    "guest-panicked": PowerState.ERROR,
}


def power_from_status(status: str, qmpstatus: str | None) -> PowerState:
    word = status.strip().lower()
    if word == "stopped":
        return PowerState.STOPPED
    if word != "running":
        return PowerState.UNKNOWN
    return _POWER_BY_QMPSTATUS.get((qmpstatus or "running").strip().lower(), PowerState.RUNNING)


class ProxmoxProvider:
    kind = "proxmox"
    can_power = True

    def __init__(
        self,
        api_url: str,
        node: str,
        vmid: int | str,
        token_id: str,
        token_secret: Secret,
        *,
        guest: str = "qemu",
        verify_tls: bool | str = True,
        shutdown_timeout: float = 120.0,
        poll_interval: float = 2.0,
        op_timeout: float = 300.0,
        request_timeout: float = 15.0,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        if guest not in GUEST_KINDS:
            raise ValueError(f"guest must be one of {', '.join(GUEST_KINDS)}, not {guest!r}")
        self.node, self.vmid, self.guest = node, str(vmid), guest
        self._shutdown_timeout = shutdown_timeout
        self._poll_interval = poll_interval
        self._op_timeout = op_timeout
        self._sleep, self._clock = sleep, clock
        self._pending: PowerState | None = None
        self.last_stop_was_forced = False
        """True when the last stop() had to fall back to a forced stop (for the event log)."""
        self._api = JsonApi(
            "Proxmox",
            api_root(api_url),
            auth_headers={"Authorization": f"PVEAPIToken={token_id}={token_secret.reveal()}"},
            credential=f"API token {token_id}",
            secret=token_secret.reveal(),
            client=client,
            request_timeout=request_timeout,
            verify=verify_tls,
            sleep=sleep,
            not_found_markers=("does not exist", "no such node"),
        )

    def __repr__(self) -> str:
        return f"ProxmoxProvider(node={self.node!r}, vmid={self.vmid}, guest={self.guest!r})"

    @property
    def _subject(self) -> str:
        return f"Proxmox {self.guest} guest {self.vmid} on node {self.node}"

    @property
    def _missing(self) -> str:
        return f"Proxmox has no {self.guest} guest {self.vmid} on node {self.node}"

    async def status(self) -> ProviderStatus:
        payload = await self._call("GET", "/status/current")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            message = f"Proxmox answered without a status for {self._subject}"
            raise ProviderError(ProviderErrorKind.MALFORMED, message)
        word = data["status"]
        qmpstatus = data.get("qmpstatus") if isinstance(data.get("qmpstatus"), str) else None
        power = power_from_status(word, qmpstatus)
        if self._pending is PowerState.STARTING and power is PowerState.STOPPED:
            power = PowerState.STARTING
        elif self._pending is PowerState.STOPPING and power is PowerState.RUNNING:
            power = PowerState.STOPPING
        raw = word if not qmpstatus or qmpstatus == word else f"{word} ({qmpstatus})"
        name = data.get("name")
        lock = data.get("lock")
        return ProviderStatus(
            power=power,
            raw_state=sanitize_line(raw, 60),
            label=sanitize_line(name if isinstance(name, str) else "", 120),
            detail=sanitize_line(f"locked: {lock}" if isinstance(lock, str) and lock else "", 120),
        )

    async def start(self) -> None:
        if (await self.status()).power is PowerState.RUNNING:
            return
        self._pending = PowerState.STARTING
        try:
            upid = await self._post("start")
            await self._follow(upid, PowerState.RUNNING, "start", self._op_timeout)
        finally:
            self._pending = None

    async def stop(self) -> None:
        """ACPI shutdown; if the guest is not down after `shutdown_timeout`, a forced stop."""
        self.last_stop_was_forced = False
        if (await self.status()).power is PowerState.STOPPED:
            return
        self._pending = PowerState.STOPPING
        try:
            self.last_stop_was_forced = not await self._shutdown()
            if self.last_stop_was_forced:
                await self._forced_stop()
        finally:
            self._pending = None

    async def aclose(self) -> None:
        await self._api.aclose()

    async def list_instances(self) -> tuple[InstanceListing, ...]:
        """Every VM and container on this guest's node (templates left out), for the orphan scan."""
        listings: list[InstanceListing] = []
        for guest in GUEST_KINDS:
            path = f"/nodes/{quote(self.node)}/{guest}"
            payload = await self._api.request("GET", path, not_found=f"Proxmox has no node {self.node}")
            items = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(items, list):
                message = f"Proxmox answered the {guest} list of node {self.node} without a list"
                raise ProviderError(ProviderErrorKind.MALFORMED, sanitize_line(message))
            listings += [self._listing(item, guest) for item in items if not _is_template(item)]
        return tuple(listings)

    def _listing(self, item: Any, guest: str) -> InstanceListing:
        vmid = item.get("vmid") if isinstance(item, dict) else None
        if isinstance(vmid, bool) or not (isinstance(vmid, int) or (isinstance(vmid, str) and vmid.isdigit())):
            message = f"Proxmox listed a {guest} guest of node {self.node} without a vmid"
            raise ProviderError(ProviderErrorKind.MALFORMED, message)
        word = item.get("status") if isinstance(item.get("status"), str) else ""
        qmpstatus = item.get("qmpstatus") if isinstance(item.get("qmpstatus"), str) else None
        raw = word if not qmpstatus or qmpstatus == word else f"{word} ({qmpstatus})"
        name = item.get("name")
        return InstanceListing(
            provider=self.kind,
            endpoint=self._api.base_url,
            instance_id=str(int(vmid)),
            name=sanitize_line(name if isinstance(name, str) else "", 120),
            power=power_from_status(word, qmpstatus),
            raw_state=sanitize_line(raw, 60),
            hourly_usd=None,
            host=sanitize_line(self.node, 60),
            guest=guest,
        )

    async def _shutdown(self) -> bool:
        upid = await self._post("shutdown", {"timeout": max(1, round(self._shutdown_timeout))})
        try:
            await self._follow(upid, PowerState.STOPPED, "shut down", self._shutdown_timeout)
        except ProviderError as exc:
            if exc.kind not in (ProviderErrorKind.FAILED, ProviderErrorKind.TIMEOUT):
                raise
            log.info("graceful shutdown of %s failed, stopping it: %s", self._subject, exc.message)
            return False
        return True

    async def _forced_stop(self) -> None:
        try:  # abort the shutdown task still holding the guest (PVE 8.1+ knows this flag)
            upid = await self._post("stop", {"overrule-shutdown": 1})
        except ProviderError as exc:
            if exc.kind is not ProviderErrorKind.FAILED:
                raise
            upid = await self._post("stop")
        await self._follow(upid, PowerState.STOPPED, "stop", self._op_timeout)

    async def _follow(self, upid: str, target: PowerState, action: str, budget: float) -> None:
        """Poll the task and the guest until the guest is in `target`; a failed task raises FAILED."""
        task_done = False

        async def read() -> ProviderStatus:
            nonlocal task_done
            if not task_done:
                task_done = await self._task_finished(upid, action)
            return await self.status()

        await wait_for_power(
            read,
            {target},
            subject=self._subject,
            deadline=self._clock() + budget,
            budget=budget,
            clock=self._clock,
            sleep=self._sleep,
            interval=self._poll_interval,
        )

    async def _task_finished(self, upid: str, action: str) -> bool:
        path = f"/nodes/{quote(self.node)}/tasks/{quote(upid, safe=':@!')}/status"
        payload = await self._api.request("GET", path, not_found=f"Proxmox has no task {upid}")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or data.get("status") not in ("running", "stopped"):
            raise ProviderError(
                ProviderErrorKind.MALFORMED,
                sanitize_line(f"Proxmox answered without a task status for {upid}"),
            )
        if data["status"] == "running":
            return False
        exit_status = str(data.get("exitstatus", ""))
        if exit_status != "OK" and not exit_status.startswith("WARNINGS"):
            raise ProviderError(
                ProviderErrorKind.FAILED,
                sanitize_line(
                    f"Proxmox could not {action} {self._subject}: {exit_status or 'no exit status'}"
                ),
            )
        return True

    async def _post(self, action: str, data: dict[str, Any] | None = None) -> str:
        payload = await self._call("POST", f"/status/{action}", data)
        upid = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            message = f"Proxmox answered {action} without a task id (UPID)"
            raise ProviderError(ProviderErrorKind.MALFORMED, message)
        return upid

    async def _call(self, method: str, action: str, data: dict[str, Any] | None = None) -> Any:
        path = f"/nodes/{quote(self.node)}/{self.guest}/{quote(self.vmid)}{action}"
        return await self._api.request(method, path, data=data, not_found=self._missing)


def api_root(api_url: str) -> str:
    """Accept both `https://pve:8006` and `https://pve:8006/api2/json`."""
    root = api_url.rstrip("/")
    return root if root.endswith("/api2/json") else root + "/api2/json"


def _is_template(item: Any) -> bool:
    """A template is never run: not an instance that could cost anything."""
    return isinstance(item, dict) and item.get("template") in (1, "1", True)
