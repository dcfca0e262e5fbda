"""`FakeProxmox`: an in-process imitation of the Proxmox VE API (`/api2/json`), on loopback.

What the real API looks like, and where that was learnt:

- API tokens: header `Authorization: PVEAPIToken=USER@REALM!TOKENID=UUID`, no CSRF token
  needed (Proxmox VE admin guide, "API Tokens"). Without valid credentials pveproxy
  answers 401 with the reason in the status line ("No ticket" when nothing is sent);
  the body is `{"data": null}`. The wording for a bad token ("invalid token value!")
  is from memory of PVE's AccessControl, not verified.
- `GET /nodes/{node}/qemu/{vmid}/status/current` -> `{"data": {"status":
  "running"|"stopped", "qmpstatus": QEMU run state (running, paused, prelaunch,
  suspended, ...), "name", "vmid", "uptime", "lock"?, ...}}`; lxc has the same without
  qmpstatus (generated clients on powershellgallery ProxmoxPVE, docs.rs proxmox-api).
- `POST .../status/start|shutdown|stop` answer `{"data": "UPID:node:pid:pstart:
  starttime:type:id:user:"}`; shutdown takes `timeout` and `forceStop`; stop takes
  `overrule-shutdown` ("Try to abort active 'qmshutdown' tasks before stopping",
  PVE 8.1+; clientapi-pve on docs.rs). Task types here: qmstart, qmshutdown, qmstop
  (vzstart, vzshutdown, vzstop for lxc).
- `GET /nodes/{node}/tasks/{upid}/status` -> `{"data": {"status": "running"|"stopped",
  "exitstatus": "OK" or the error, ...}}` (cv4pve-api docs, proxmoxer Tasks tools).
  A shutdown the guest ignores ends in "VM quit/powerdown failed - got timeout".
- `GET /nodes/{node}/qemu` and `/nodes/{node}/lxc` list the guests the token may audit:
  `{"data": [{"vmid", "name", "status", "uptime", "cpus", "maxmem", "template"?, ...}]}`
  (the docs.rs proxmox-api items; qemu's may carry `qmpstatus`). lxc lists sent the
  vmid as a string before PVE switched it to a number (Starttoaster/proxmox-exporter#47,
  rcourtman/Pulse#388); this fake sends lxc vmids as strings so clients read both.
- A missing guest is not a 404: HTTP 500 with reason "Configuration file
  'nodes/pve/qemu-server/999.conf' does not exist" (many issue reports, e.g.
  mtclab/proxmox-mcp#159, Telmate/terraform-provider-proxmox#86).

Tests drive time with `clock=` and the fault knobs on `faults` (see `FaultPlan`);
`ignore_acpi=True` on a guest makes it ignore shutdown so a forced stop is needed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from aiconsole.demo.fake_api import FakeApi
from aiconsole.demo.httpserver import Request, Response

GuestKind = Literal["qemu", "lxc"]
_TASK_PREFIX = {"qemu": "qm", "lxc": "vz"}
_DEFAULT_SHUTDOWN_TIMEOUT = {"qemu": 180, "lxc": 60}


@dataclass
class FakeGuest:
    node: str
    kind: GuestKind
    vmid: str
    name: str
    status: str = "stopped"
    qmpstatus: str | None = None
    ignore_acpi: bool = False
    start_error: str | None = None
    """When set, start tasks fail with this exit status (e.g. a missing disk)."""
    lock: str | None = None
    template: bool = False

    def listed(self) -> dict[str, object]:
        """The guest as `GET /nodes/{node}/{kind}` lists it."""
        data = self.current()
        if self.kind == "lxc":
            data |= {"vmid": self.vmid, "type": "lxc"}  # text, as older PVE releases send it
        if self.template:
            data["template"] = 1
        return data

    def current(self) -> dict[str, object]:
        data: dict[str, object] = {
            "vmid": int(self.vmid),
            "name": self.name,
            "status": self.status,
            "uptime": 0 if self.status == "stopped" else 4242,
            "cpus": 4,
            "maxmem": 17179869184,
            "ha": {"managed": 0},
        }
        if self.kind == "qemu":
            data["qmpstatus"] = self.qmpstatus or self.status
        if self.lock:
            data["lock"] = self.lock
        return data


@dataclass
class FakeTask:
    upid: str
    guest: FakeGuest
    type: str
    ends_at: float
    finish: Callable[[], str] = lambda: "OK"
    """Applies the task's effect to the guest and returns its exit status."""
    status: str = "running"
    exitstatus: str = ""
    started: float = field(default_factory=time.time)


class FakeProxmox(FakeApi):
    """Guests with start / ACPI shutdown / forced stop behind the PVE API, on loopback."""

    ROOT = "/api2/json"

    def __init__(
        self,
        token_id: str = "root@pam!aiconsole",
        token_secret: str = "demo-proxmox-secret",
        *,
        start_seconds: float = 2.0,
        shutdown_seconds: float = 4.0,
        stop_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.token_id, self.token_secret = token_id, token_secret
        self.start_seconds = start_seconds
        self.shutdown_seconds, self.stop_seconds = shutdown_seconds, stop_seconds
        self._clock = clock
        self.supports_overrule = True
        """False imitates PVE before 8.1, which refuses stop's `overrule-shutdown` flag."""
        self.guests: dict[tuple[str, str, str], FakeGuest] = {}
        self.tasks: dict[str, FakeTask] = {}
        self._pids = itertools.count(0x1A2B00)
        root = "/api2/json/nodes/{node}"
        self.router.add("GET", "/api2/json/version", self._version)
        self.router.add("GET", root + "/{kind}", self._list)
        self.router.add("GET", root + "/{kind}/{vmid}/status/current", self._current)
        self.router.add("POST", root + "/{kind}/{vmid}/status/{action}", self._act)
        self.router.add("GET", root + "/tasks/{upid}/status", self._task_status)

    def add_guest(
        self,
        vmid: int | str,
        name: str,
        *,
        node: str = "pve",
        kind: GuestKind = "qemu",
        status: str = "stopped",
        qmpstatus: str | None = None,
        ignore_acpi: bool = False,
    ) -> FakeGuest:
        guest = FakeGuest(node, kind, str(vmid), name, status, qmpstatus, ignore_acpi)
        self.guests[(node, kind, str(vmid))] = guest
        return guest

    async def serve(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth:
            return Response(401, {"data": None}, reason="No ticket")
        if auth != f"PVEAPIToken={self.token_id}={self.token_secret}":
            return Response(401, {"data": None}, reason="invalid token value!")
        self._settle(self._clock())
        return await self.router(request)

    def _settle(self, now: float) -> None:
        for task in sorted(self.tasks.values(), key=lambda task: task.ends_at):
            if task.status == "running" and now >= task.ends_at:
                task.exitstatus, task.status = task.finish(), "stopped"

    def _guest(self, request: Request) -> FakeGuest | Response:
        node, kind, vmid = (request.path_params[key] for key in ("node", "kind", "vmid"))
        guest = self.guests.get((node, kind, vmid))
        if guest is not None:
            return guest
        where = "qemu-server" if kind == "qemu" else kind
        reason = f"Configuration file 'nodes/{node}/{where}/{vmid}.conf' does not exist"
        return Response(500, {"data": None}, reason=reason)

    async def _version(self, request: Request) -> Response:
        return Response(200, {"data": {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}})

    async def _list(self, request: Request) -> Response:
        node, kind = request.path_params["node"], request.path_params["kind"]
        if kind not in _TASK_PREFIX:
            return Response(501, {"data": None}, reason=f"Method 'GET {request.path}' not implemented")
        if all(guest.node != node for guest in self.guests.values()):
            return Response(595, {"data": None}, reason=f"no such node '{node}'")
        items = [guest.listed() for guest in self.guests.values() if guest.node == node and guest.kind == kind]
        return Response(200, {"data": items})

    async def _current(self, request: Request) -> Response:
        guest = self._guest(request)
        return guest if isinstance(guest, Response) else Response(200, {"data": guest.current()})

    async def _act(self, request: Request) -> Response:
        guest = self._guest(request)
        if isinstance(guest, Response):
            return guest
        action, form = request.path_params["action"], request.form()
        if action == "start":
            task = self._start(guest)
        elif action == "shutdown":
            task = self._shutdown(guest, float(form.get("timeout", _DEFAULT_SHUTDOWN_TIMEOUT[guest.kind])))
        elif action == "stop":
            if "overrule-shutdown" in form and not self.supports_overrule:
                return _unknown_parameter("overrule-shutdown")
            task = self._stop(guest, overrule=form.get("overrule-shutdown") in ("1", "true"))
        else:
            return Response(501, {"data": None}, reason=f"Method 'POST {request.path}' not implemented")
        return Response(200, {"data": task.upid})

    def _start(self, guest: FakeGuest) -> FakeTask:
        if guest.status == "running":
            return self._task(guest, "start", 0.0, lambda: f"VM {guest.vmid} already running")
        if guest.start_error:
            return self._task(guest, "start", self.start_seconds, lambda: guest.start_error or "")
        if guest.kind == "qemu":  # QEMU is up at once, the guest CPU runs once start finishes
            guest.status, guest.qmpstatus = "running", "prelaunch"

        def started() -> str:
            guest.status, guest.qmpstatus = "running", "running"
            return "OK"

        return self._task(guest, "start", self.start_seconds, started)

    def _shutdown(self, guest: FakeGuest, timeout: float) -> FakeTask:
        if guest.ignore_acpi:
            return self._task(guest, "shutdown", timeout, lambda: "VM quit/powerdown failed - got timeout")
        return self._task(guest, "shutdown", self.shutdown_seconds, lambda: self._power_off(guest))

    def _stop(self, guest: FakeGuest, *, overrule: bool) -> FakeTask:
        if overrule:
            for task in self.tasks.values():
                if task.guest is guest and task.type.endswith("shutdown") and task.status == "running":
                    task.status, task.exitstatus = "stopped", "interrupted by signal"
        return self._task(guest, "stop", self.stop_seconds, lambda: self._power_off(guest))

    @staticmethod
    def _power_off(guest: FakeGuest) -> str:
        guest.status, guest.qmpstatus = "stopped", "stopped"
        return "OK"

    def _task(self, guest: FakeGuest, action: str, seconds: float, finish: Callable[[], str]) -> FakeTask:
        kind = _TASK_PREFIX[guest.kind] + action
        started = int(time.time())
        pid, pstart = next(self._pids), started % 0xFFFFFF
        upid = f"UPID:{guest.node}:{pid:08X}:{pstart:08X}:{started:08X}:{kind}:{guest.vmid}:{self.token_id}:"
        task = FakeTask(upid, guest, kind, self._clock() + seconds, finish)
        self.tasks[upid] = task
        self._settle(self._clock())  # a zero-length task is over before anyone asks
        return task

    async def _task_status(self, request: Request) -> Response:
        task = self.tasks.get(request.path_params["upid"])
        if task is None or task.guest.node != request.path_params["node"]:
            return Response(500, {"data": None}, reason="no such task")
        data: dict[str, object] = {
            "upid": task.upid,
            "node": task.guest.node,
            "type": task.type,
            "id": task.guest.vmid,
            "user": self.token_id,
            "status": task.status,
            "starttime": int(task.started),
        }
        if task.status == "stopped":
            data["exitstatus"] = task.exitstatus
        return Response(200, {"data": data})


def _unknown_parameter(name: str) -> Response:
    why = "property is not defined in schema and the schema does not allow additional properties"
    return Response(400, {"data": None, "errors": {name: why}}, reason="Parameter verification failed.")
