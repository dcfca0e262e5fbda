"""`FakeTensorDock`: an in-process imitation of the TensorDock v2 REST API, on loopback.

What the real API looks like, and where that was learnt (2026; the public docs are thin
and disagree with each other, so the provider reads every shape listed here):

- Base URL `https://dashboard.tensordock.com/api/v2`; every request carries
  `Authorization: Bearer <token>` (dashboard.tensordock.com/api/docs/getting-started).
- "API requests are limited to 100 requests per minute per organization. Rate limit
  headers are included in all responses." (same page; the header names are not given).
  Excess requests get HTTP 429 (third-party OpenAPI reconstruction,
  github.com/api-evangelist/tensordock, which also names Retry-After and a fixed window).
- `GET /instances/{id}`, `POST /instances/{id}/start`, `POST /instances/{id}/stop`,
  `GET /instances` (dashboard.tensordock.com/api/docs/instance-management).
  The docs show the single instance flat: `{"type", "id", "name", "status", "ipAddress",
  "portForwards": [{"internal_port", "external_port"}]}`; start/stop answer JSON:API
  style `{"data": {"type", "id", "attributes": {"status": "starting"|"stopping"}}}`;
  the list is `{"data": {"instances": [{"type", "id", "attributes": {name, status}}]}}`;
  the getting-started page shows it as `{"data": {"type": "list", "id": "instances",
  "attributes": {"instances": [...]}}}` (served here; `list_shape="data"` serves the
  other). The api-evangelist list example gives each item `rateHourly` (dollars per
  hour) and `location_id`; neither page documents paging.
  The api-evangelist OpenAPI puts the single instance in JSON:API form
  `{"data": {"type": "virtualmachine", "id", "attributes": {...}}}`, and the Terraform
  provider (github.com/apartmentlines/terraform-provider-tensordock, client.go) decodes
  it either flat or as `{"data": {flat}}`. `shape=` picks one of the three here.
- Status words: starting, running, stopping, stopped, deleting, deleted, error
  (api-evangelist schema); the docs' modify endpoint needs "Stopped" or
  "StoppedDisassociated" (capitalised); the Terraform provider compares case-folded and
  maps "stopped_disassociated" too; older v0-era clients show "Running"/"Stopped".
  Stops here alternate "StoppedDisassociated" and "Stopped" so clients must fold case.
- Not verified anywhere: the error body (the OpenAPI guess `{"errors": [{"status",
  "title", "detail"}]}` is used), the rate-limit header names (X-RateLimit-* here),
  and what start on a running instance answers (idempotent here; 409 while stopping).

Tests drive time with `clock=` and the fault knobs on `faults` (see `FaultPlan`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiconsole.demo.fake_api import FakeApi
from aiconsole.demo.httpserver import Request, Response

Shape = Literal["flat", "data", "jsonapi"]
ListShape = Literal["attributes", "data"]
STOPPED_WORDS = ("StoppedDisassociated", "Stopped")


def _fold(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def _error(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {"errors": [{"status": str(status), "title": title, "detail": detail}]}
    return Response(status, body, headers or {})


@dataclass
class FakeInstance:
    id: str
    name: str
    status: str
    rate_hourly: float = 0.35
    location: str = "eu-west-1"
    next_status: str | None = None
    changes_at: float = 0.0
    stops: int = 0

    def settle(self, now: float) -> None:
        if self.next_status is not None and now >= self.changes_at:
            self.status, self.next_status = self.next_status, None


class FakeTensorDock(FakeApi):
    """Instances with a start/stop state machine behind the v2 API, served on loopback."""

    ROOT = "/api/v2"

    def __init__(
        self,
        api_key: str = "demo-tensordock-key",
        *,
        start_seconds: float = 4.0,
        stop_seconds: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        rate_limit: int = 100,
        rate_window: float = 60.0,
        shape: Shape = "flat",
        list_shape: ListShape = "attributes",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.start_seconds, self.stop_seconds = start_seconds, stop_seconds
        self.shape: Shape = shape
        self.list_shape: ListShape = list_shape
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self._clock = clock
        self._window_start, self._window_count = clock(), 0
        self.instances: dict[str, FakeInstance] = {}
        self.served_states: list[str] = []
        """Every status word GET /instances/{id} answered with, in order."""
        self.list_latency = 0.0
        """Real seconds between taking the instance list and answering with it: a slow API whose
        list shows the instances as they were when it was asked, not when it is received."""
        self.router.add("GET", "/api/v2/instances", self._list)
        self.router.add("GET", "/api/v2/instances/{id}", self._get)
        self.router.add("POST", "/api/v2/instances/{id}/start", self._start)
        self.router.add("POST", "/api/v2/instances/{id}/stop", self._stop)

    def add_instance(
        self, instance_id: str, name: str, status: str = "Stopped", *, rate_hourly: float = 0.35
    ) -> FakeInstance:
        instance = FakeInstance(instance_id, name, status, rate_hourly)
        self.instances[instance_id] = instance
        return instance

    async def serve(self, request: Request) -> Response:
        now = self._clock()
        if (throttled := self._throttle(now)) is not None:
            return throttled
        if request.headers.get("authorization", "") != f"Bearer {self.api_key}":
            return _error(401, "Unauthorized", "Invalid or missing API token")
        for instance in self.instances.values():
            instance.settle(now)
        response = await self.router(request)
        response.headers.update(self._quota_headers(now))
        return response

    def _throttle(self, now: float) -> Response | None:
        if now - self._window_start >= self.rate_window:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count <= self.rate_limit:
            return None
        headers = self._quota_headers(now) | {"Retry-After": str(math.ceil(self._reset_in(now)))}
        detail = f"Rate limit of {self.rate_limit} requests per minute exceeded"
        return _error(429, "Too Many Requests", detail, headers)

    def _reset_in(self, now: float) -> float:
        return max(0.0, self._window_start + self.rate_window - now)

    def _quota_headers(self, now: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, self.rate_limit - self._window_count)),
            "X-RateLimit-Reset": str(math.ceil(self._reset_in(now))),
        }

    def _lookup(self, request: Request) -> FakeInstance | Response:
        instance_id = request.path_params["id"]
        instance = self.instances.get(instance_id)
        return instance or _error(404, "Not Found", f"Instance {instance_id} not found")

    async def _list(self, request: Request) -> Response:
        items = [self._jsonapi(instance) for instance in self.instances.values()]
        if self.list_latency:
            await asyncio.sleep(self.list_latency)
        if self.list_shape == "data":
            return Response(200, {"data": {"instances": items}})
        return Response(
            200, {"data": {"type": "list", "id": "instances", "attributes": {"instances": items}}}
        )

    async def _get(self, request: Request) -> Response:
        instance = self._lookup(request)
        if isinstance(instance, Response):
            return instance
        self.served_states.append(instance.status)
        fields = self._fields(instance)
        if self.shape == "jsonapi":
            return Response(200, {"data": self._jsonapi(instance)})
        flat = {"type": "virtualmachine", "id": instance.id} | fields
        return Response(200, flat if self.shape == "flat" else {"data": flat})

    async def _start(self, request: Request) -> Response:
        instance = self._lookup(request)
        if isinstance(instance, Response):
            return instance
        state = _fold(instance.status)
        if state == "stopping":
            return _error(409, "Conflict", "Instance is stopping; start it once it has stopped")
        if state not in ("running", "starting"):
            instance.status = "starting"
            instance.next_status, instance.changes_at = "running", self._clock() + self.start_seconds
        return self._accepted(instance)

    async def _stop(self, request: Request) -> Response:
        instance = self._lookup(request)
        if isinstance(instance, Response):
            return instance
        state = _fold(instance.status)
        if state == "starting":
            return _error(409, "Conflict", "Instance is starting; stop it once it is running")
        if state == "running":
            instance.status = "stopping"
            instance.next_status = STOPPED_WORDS[instance.stops % len(STOPPED_WORDS)]
            instance.changes_at = self._clock() + self.stop_seconds
            instance.stops += 1
        return self._accepted(instance)

    def _accepted(self, instance: FakeInstance) -> Response:
        status_only = {"status": instance.status}
        return Response(
            200, {"data": {"type": "virtualmachine", "id": instance.id, "attributes": status_only}}
        )

    def _fields(self, instance: FakeInstance) -> dict[str, object]:
        return {
            "name": instance.name,
            "status": instance.status,
            "ipAddress": "203.0.113.10",
            "portForwards": [{"internal_port": 22, "external_port": 22022}],
            "rateHourly": instance.rate_hourly,
            "location_id": instance.location,
        }

    def _jsonapi(self, instance: FakeInstance) -> dict[str, object]:
        return {"type": "virtualmachine", "id": instance.id, "attributes": self._fields(instance)}
