"""TensorDock v2 (https://dashboard.tensordock.com/api/v2): status, start and stop of one instance.

The API as documented (see `aiconsole.demo.tensordock_api` for sources): bearer token,
`GET /instances/{id}`, `POST /instances/{id}/start|stop`, 100 requests per minute per
organisation, answered 429 beyond. The documented shapes disagree with each other (a
flat object, `{"data": {...}}`, and JSON:API `{"data": {"attributes": {...}}}`), so the
instance is looked for in all of them, and status words are matched without regard to
case or separators (`StoppedDisassociated`, `stopped_disassociated`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import httpx

from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.secret import Secret
from aiconsole.services.providers._http import (
    Clock,
    JsonApi,
    RateLimiter,
    RetryPolicy,
    Sleep,
    wait_for_power,
)
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, ProviderStatus

DEFAULT_API_URL = "https://dashboard.tensordock.com/api/v2"

_POWER_BY_WORD = {
    "running": PowerState.RUNNING,
    "starting": PowerState.STARTING,
    "restarting": PowerState.STARTING,
    "stopping": PowerState.STOPPING,
    "stopped": PowerState.STOPPED,
    "stoppeddisassociated": PowerState.STOPPED,  # stopped, GPU released: not billed for compute
    "error": PowerState.ERROR,
    "failed": PowerState.ERROR,
}

# Where the instance may sit in an answer, tried in order (see module docstring).
_NESTING_KEYS = ("data", "attributes", "instance", "virtualmachine")


def power_from_word(word: str) -> PowerState:
    """Map a TensorDock status word onto PowerState; unknown words are UNKNOWN."""
    key = "".join(ch for ch in word.lower() if ch.isalnum())
    return _POWER_BY_WORD.get(key, PowerState.UNKNOWN)


class TensorDockProvider:
    kind = "tensordock"
    can_power = True

    def __init__(
        self,
        instance_id: str,
        api_key: Secret,
        api_url: str = DEFAULT_API_URL,
        *,
        client: httpx.AsyncClient | None = None,
        poll_interval: float = 5.0,
        op_timeout: float = 600.0,
        request_timeout: float = 15.0,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.instance_id = instance_id
        self._poll_interval = poll_interval
        self._op_timeout = op_timeout
        self._sleep, self._clock = sleep, clock
        self._api = JsonApi(
            "TensorDock",
            api_url,
            auth_headers={"Authorization": f"Bearer {api_key.reveal()}"},
            credential="API key",
            secret=api_key.reveal(),
            client=client,
            request_timeout=request_timeout,
            limiter=limiter or RateLimiter(100, 60.0, clock=clock, sleep=sleep),
            retry=retry,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"TensorDockProvider(instance_id={self.instance_id!r}, api_url={self._api.base_url!r})"

    async def status(self) -> ProviderStatus:
        payload = await self._call("GET", "")
        word, name = _find_instance(payload)
        if word is None:
            raise ProviderError(
                ProviderErrorKind.MALFORMED,
                sanitize_line(
                    f"TensorDock answered without a status for instance {self.instance_id} "
                    f"({_describe_shape(payload)})"
                ),
            )
        shown = sanitize_line(word, 60)
        return ProviderStatus(power=power_from_word(shown), raw_state=shown, label=sanitize_line(name, 120))

    async def start(self) -> None:
        deadline = self._clock() + self._op_timeout
        current = await self.status()
        if current.power is PowerState.RUNNING:
            return
        if current.power is PowerState.STOPPING:  # a start is refused until the stop lands
            await self._wait({PowerState.STOPPED}, deadline)
        if current.power is not PowerState.STARTING:
            await self._call("POST", "/start", allow_empty=True)
        await self._wait({PowerState.RUNNING}, deadline)

    async def stop(self) -> None:
        deadline = self._clock() + self._op_timeout
        current = await self.status()
        if current.power is PowerState.STOPPED:
            return
        if current.power is PowerState.STARTING:
            await self._wait({PowerState.RUNNING}, deadline)
        if current.power is not PowerState.STOPPING:
            await self._call("POST", "/stop", allow_empty=True)
        await self._wait({PowerState.STOPPED}, deadline)

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _call(self, method: str, action: str, *, allow_empty: bool = False) -> Any:
        return await self._api.request(
            method,
            f"/instances/{quote(self.instance_id, safe='')}{action}",
            not_found=f"TensorDock has no instance {self.instance_id}",
            allow_empty=allow_empty,  # start/stop answers are not read: only the polls count
        )

    async def _wait(self, targets: set[PowerState], deadline: float) -> ProviderStatus:
        return await wait_for_power(
            self.status,
            targets,
            subject=f"TensorDock instance {self.instance_id}",
            deadline=deadline,
            budget=self._op_timeout,
            clock=self._clock,
            sleep=self._sleep,
            interval=self._poll_interval,
        )


def _find_instance(payload: Any) -> tuple[str | None, str]:
    """The status word and name, from a flat, `data`-wrapped or JSON:API answer."""
    node, name = payload, ""
    for _ in range(len(_NESTING_KEYS) + 1):
        if not isinstance(node, dict):
            break
        if isinstance(node.get("name"), str):
            name = node["name"]
        status = node.get("status")
        if isinstance(status, str) and status.strip():
            return status.strip(), name
        node = next((node[key] for key in _NESTING_KEYS if isinstance(node.get(key), dict)), None)
    return None, name


def _describe_shape(payload: Any) -> str:
    if isinstance(payload, dict):
        keys = ", ".join(sorted(str(key) for key in payload)[:6])
        return f"keys: {keys}" if keys else "an empty object"
    return f"a JSON {type(payload).__name__}"
