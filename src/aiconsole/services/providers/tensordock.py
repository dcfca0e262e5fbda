"""TensorDock v2 (https://dashboard.tensordock.com/api/v2): status, start and stop of one instance,
and the list of the account's instances (for the orphan scan).

The API as documented (see `aiconsole.demo.tensordock_api` for sources): bearer token,
`GET /instances/{id}`, `POST /instances/{id}/start|stop`, 100 requests per minute per
organisation, answered 429 beyond. The documented shapes disagree with each other (a
flat object, `{"data": {...}}`, and JSON:API `{"data": {"attributes": {...}}}`), so the
instance is looked for in all of them, and status words are matched without regard to
case or separators (`StoppedDisassociated`, `stopped_disassociated`).

`GET /instances` is documented in two shapes as well: `{"data": {"type": "list", "id":
"instances", "attributes": {"instances": [...]}}}` (the getting-started page) and
`{"data": {"instances": [...]}}` (the api-evangelist example); each item JSON:API
`{"type", "id", "attributes": {"name", "status", "rateHourly", ...}}` or flat. No page
parameters are documented, so one call is taken to be the whole list. An item whose status
is `deleted` is left out; one without an id makes the whole answer MALFORMED (an instance
that cannot be told apart cannot be reconciled).

The VMs of one account read their power from one shared `GET /instances` per poll round
(`SharedListing`, given by `assembly.ProviderBuilder`): at 100 requests a minute, one
`GET /instances/{id}` per VM would read 100 VMs about once a minute instead of every 15 s.
A VM reads itself alone (`GET /instances/{id}`) when it is its account's only one (as cheap,
and exact), when it is missing from the list or shown without a status (the list can lag, or
be partial), when the list fails or cannot be read (a rejected key aside: that is every VM's
error, raised as it is), and in `start()`/`stop()`, which need their own instance, fresh.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any
from urllib.parse import quote

import httpx

from aiconsole.domain.orphans import InstanceListing
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
from aiconsole.services.providers.shared_listing import SharedListing

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
# An item's hourly price and location, keys folded like status words: `rateHourly` is the
# documented one (api-evangelist); the others are its spellings in other casings.
_PRICE_KEYS = ("ratehourly", "hourlyrate", "priceperhour", "hourlyprice")
_PLACE_KEYS = ("locationid", "location", "region", "hostnode")
# How old a shared listing a VM in transition may use, as a share of the transition poll:
# the fleet looks at it every `poll_interval`, and each look should see a newer answer.
_TRANSITION_SHARE = 0.8


def _fold(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def power_from_word(word: str) -> PowerState:
    """Map a TensorDock status word onto PowerState; unknown words are UNKNOWN."""
    return _POWER_BY_WORD.get(_fold(word), PowerState.UNKNOWN)


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
        shared_listing: SharedListing[tuple[InstanceListing, ...]] | None = None,
        listing_max_age: float = 12.0,
    ) -> None:
        """`shared_listing`: the account's, shared with its other VMs (None: each status is
        `GET /instances/{id}`); `listing_max_age`: how old a listing `status()` may use, a little
        less than the fleet's poll so that one round of polls shares one request."""
        self.instance_id = instance_id
        self._shared, self._listing_max_age = shared_listing, listing_max_age
        if shared_listing is not None:
            shared_listing.join()
        self._used_listing = 0
        """The shared listing this VM read last: each is read once, so a next poll asks anew."""
        self._fresh_from = 0
        """Shared listings numbered up to this one were asked for before this VM's latest own read
        or start/stop answer: they may show it as it was before, so they are never used."""
        self._last_power = PowerState.UNKNOWN
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
        listed = await self._listed()
        return listed if listed is not None else await self._read()

    async def _listed(self) -> ProviderStatus | None:
        """This instance as the account's shared listing shows it; None: read it alone."""
        if self._shared is None or not self._shared.shared:
            return None
        transition = self._last_power.is_transition
        max_age = _TRANSITION_SHARE * self._poll_interval if transition else self._listing_max_age
        after = max(self._used_listing, self._fresh_from)
        seq, listings, age_s = await self._shared.get(self.list_instances, max_age=max_age, after=after)
        if isinstance(listings, ProviderError):
            if listings.kind is ProviderErrorKind.AUTH:  # the key's, not the list's: reading alone
                raise ProviderError(listings.kind, listings.message)  # would repeat it once per VM
            return None
        if seq <= self._fresh_from:  # a start, stop or own read landed while the list was on its way
            return None
        self._used_listing = max(self._used_listing, seq)
        item = next((item for item in listings if item.instance_id == self.instance_id), None)
        if item is None or not item.raw_state:
            return None
        self._last_power = item.power
        return ProviderStatus(power=item.power, raw_state=item.raw_state, label=item.name, age_s=age_s)

    async def _read(self) -> ProviderStatus:
        """`GET /instances/{id}`: this instance alone, as it is now."""
        payload = await self._call("GET", "")
        self._mark_read()
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
        self._last_power = power_from_word(shown)
        return ProviderStatus(power=self._last_power, raw_state=shown, label=sanitize_line(name, 120))

    async def start(self) -> None:
        deadline = self._clock() + self._op_timeout
        current = await self._read()
        if current.power is PowerState.RUNNING:
            return
        if current.power is PowerState.STOPPING:  # a start is refused until the stop lands
            await self._wait({PowerState.STOPPED}, deadline)
        if current.power is not PowerState.STARTING:
            await self._call("POST", "/start", allow_empty=True)
            self._mark_read()
        await self._wait({PowerState.RUNNING}, deadline)

    async def stop(self) -> None:
        deadline = self._clock() + self._op_timeout
        current = await self._read()
        if current.power is PowerState.STOPPED:
            return
        if current.power is PowerState.STARTING:
            await self._wait({PowerState.RUNNING}, deadline)
        if current.power is not PowerState.STOPPING:
            await self._call("POST", "/stop", allow_empty=True)
            self._mark_read()
        await self._wait({PowerState.STOPPED}, deadline)

    async def aclose(self) -> None:
        if self._shared is not None:
            self._shared.leave()
            self._shared = None
        await self._api.aclose()

    async def list_instances(self) -> tuple[InstanceListing, ...]:
        """Every instance of the account (`GET /instances`), for the orphan scan."""
        payload = await self._api.request("GET", "/instances", not_found="TensorDock has no instance list here")
        items = _instance_items(payload)
        if items is None:
            message = f"TensorDock answered the instance list without a list ({_describe_shape(payload)})"
            raise ProviderError(ProviderErrorKind.MALFORMED, sanitize_line(message))
        listings = (self._listing(item) for item in items)
        return tuple(item for item in listings if _fold(item.raw_state) != "deleted")  # gone: bills nothing

    def _listing(self, item: Any) -> InstanceListing:
        fields = _item_fields(item)
        instance_id = fields.get("id")
        if not isinstance(instance_id, str | int) or isinstance(instance_id, bool) or not str(instance_id).strip():
            message = f"TensorDock listed an instance without an id ({_describe_shape(item)})"
            raise ProviderError(ProviderErrorKind.MALFORMED, sanitize_line(message))
        word = fields.get("status") if isinstance(fields.get("status"), str) else ""
        shown = sanitize_line(word.strip(), 60)
        folded = {_fold(key): value for key, value in fields.items()}
        place = next((folded[key] for key in _PLACE_KEYS if isinstance(folded.get(key), str)), "")
        name = fields.get("name")
        return InstanceListing(
            provider=self.kind,
            endpoint=self._api.base_url,
            instance_id=sanitize_line(str(instance_id).strip(), 120),
            name=sanitize_line(name if isinstance(name, str) else "", 120),
            power=power_from_word(shown),
            raw_state=shown,
            hourly_usd=next((price for key in _PRICE_KEYS if (price := _price(folded.get(key))) is not None), None),
            host=sanitize_line(place, 60),
        )

    async def _call(self, method: str, action: str, *, allow_empty: bool = False) -> Any:
        return await self._api.request(
            method,
            f"/instances/{quote(self.instance_id, safe='')}{action}",
            not_found=f"TensorDock has no instance {self.instance_id}",
            allow_empty=allow_empty,  # start/stop answers are not read: only the polls count
        )

    def _mark_read(self) -> None:
        if self._shared is not None:
            self._fresh_from = self._shared.sent

    async def _wait(self, targets: set[PowerState], deadline: float) -> ProviderStatus:
        return await wait_for_power(
            self._read,
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


def _instance_items(payload: Any) -> list | None:
    """The list of instances, from `{"data": {"attributes": {"instances": []}}}`,
    `{"data": {"instances": []}}`, `{"instances": []}`, `{"data": []}` or a bare list."""
    node = payload
    for _ in range(3):
        if isinstance(node, list):
            return node
        if not isinstance(node, dict):
            return None
        if isinstance(node.get("instances"), list):
            return node["instances"]
        node = next((node[key] for key in ("data", "attributes") if isinstance(node.get(key), dict | list)), None)
    return node if isinstance(node, list) else None


def _item_fields(item: Any) -> dict[str, Any]:
    """A listed instance's fields: JSON:API `{"id", "attributes": {...}}` or flat."""
    if not isinstance(item, dict):
        return {}
    attributes = item.get("attributes")
    return item | attributes | {"id": item.get("id", attributes.get("id"))} if isinstance(attributes, dict) else item


def _price(value: Any) -> float | None:
    """A listed price as dollars per hour: a finite number >= 0 (or such a number as text)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        price = float(value)
    except ValueError:
        return None
    return price if math.isfinite(price) and price >= 0 else None
