"""What the HTTP providers share: one JSON API client that waits its turn, backs off on 429
and turns every failure into a `ProviderError`; and the poll loop behind start/stop.

Every string that came from the server or from an exception passes `sanitize_line`
and has the credential masked before it goes into an error, so a server that echoes
the Authorization header back cannot put the key on screen.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import httpx

from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, ProviderStatus
from aiconsole.services.tls import ca_file_context, shared_ssl_context

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]

# Failures worth another poll while waiting for a VM: the next answer may well be fine.
TRANSIENT_KINDS = frozenset(
    {
        ProviderErrorKind.SERVER,
        ProviderErrorKind.TIMEOUT,
        ProviderErrorKind.CONNECT,
        ProviderErrorKind.RATE_LIMITED,
        ProviderErrorKind.MALFORMED,
    }
)


class RateLimiter:
    """At most `limit` requests in any `window` seconds; `acquire` waits for a free slot.

    Share one instance between providers that share a quota (TensorDock counts
    100 requests/minute per organisation, not per VM).
    """

    def __init__(
        self,
        limit: int = 100,
        window: float = 60.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit, self.window = limit, window
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()

    async def acquire(self) -> None:
        while True:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.window:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                return
            await self._sleep(self.window - (now - self._sent[0]))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to back off on 429: Retry-After when given, else base * 2**attempt."""

    max_retries: int = 4
    backoff_base: float = 1.0
    max_backoff: float = 60.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        hinted = _parse_retry_after(retry_after)
        delay = hinted if hinted is not None else self.backoff_base * 2**attempt
        return max(0.0, min(delay, self.max_backoff))


def _ssl_verify(verify: bool | str) -> ssl.SSLContext | bool:
    """A shared context for `verify` (see services/tls.py); False stays False (no CA bundle to load)."""
    if isinstance(verify, str):
        return ca_file_context(verify)
    return shared_ssl_context() if verify else False


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:  # the other legal form is an HTTP date
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


class JsonApi:
    """One JSON-over-HTTP API: `request()` returns the decoded body or raises ProviderError."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        auth_headers: dict[str, str],
        credential: str,
        secret: str,
        client: httpx.AsyncClient | None = None,
        request_timeout: float = 15.0,
        verify: bool | str = True,  # False for a homelab's self-signed cert, or a CA bundle's path
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        not_found_markers: Collection[str] = (),
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._auth_headers = auth_headers
        self._credential = credential  # how errors name it: "API key", "API token root@pam!x"
        self._secret = secret
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(request_timeout, connect=min(request_timeout, 10.0)),
            verify=_ssl_verify(verify),
        )
        self._request_timeout = request_timeout if client is None else None
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._not_found_markers = tuple(marker.lower() for marker in not_found_markers)

    async def request(
        self,
        method: str,
        path: str,
        *,
        not_found: str,
        data: dict[str, Any] | None = None,
        allow_empty: bool = False,
    ) -> Any:
        """Send, back off and retry on 429, decode JSON. `not_found` words the 404 error.

        `allow_empty`: an empty 2xx body is fine (None), for calls whose answer is not read.
        """
        for attempt in range(self._retry.max_retries + 1):
            response = await self._send(method, path, data)
            if response.status_code != 429:
                return self._decode(response, not_found, allow_empty)
            if attempt < self._retry.max_retries:
                await self._sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
        detail = self._detail(self.server_message(response))
        message = f"{self.service} is rate limiting requests (HTTP 429), still after {attempt} retries"
        raise self._error(ProviderErrorKind.RATE_LIMITED, message + detail)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _send(self, method: str, path: str, data: dict[str, Any] | None) -> httpx.Response:
        if self._limiter is not None:
            await self._limiter.acquire()
        url = self.base_url + path
        headers = {"Accept": "application/json"} | self._auth_headers
        try:
            return await self._client.request(method, url, headers=headers, data=data)
        except httpx.TimeoutException as exc:
            within = f" within {self._request_timeout:g} s" if self._request_timeout else " in time"
            message = f"{self.service} did not answer{within} ({type(exc).__name__})"
            raise self._error(ProviderErrorKind.TIMEOUT, message) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            message = f"Cannot reach {self.service} at {self.base_url}: {str(exc) or type(exc).__name__}"
            raise self._error(ProviderErrorKind.CONNECT, message) from None

    def _decode(self, response: httpx.Response, not_found: str, allow_empty: bool) -> Any:
        status = response.status_code
        if status >= 400:
            raise self._status_error(status, self.server_message(response), not_found)
        if allow_empty and not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            snippet = response.text[:80]
            raise self._error(
                ProviderErrorKind.MALFORMED,
                f"{self.service} sent a body that is not JSON (HTTP {status}, {kind}): {snippet}",
            ) from None

    def _status_error(self, status: int, message: str, not_found: str) -> ProviderError:
        detail = self._detail(message)
        if status in (401, 403):
            return self._error(
                ProviderErrorKind.AUTH,
                f"{self.service} rejected the {self._credential} (HTTP {status}){detail}",
            )
        if status == 404 or (
            status >= 500 and any(marker in message.lower() for marker in self._not_found_markers)
        ):
            return self._error(ProviderErrorKind.NOT_FOUND, f"{not_found} (HTTP {status}){detail}")
        if status >= 500:
            return self._error(
                ProviderErrorKind.SERVER, f"{self.service} server error (HTTP {status}){detail}"
            )
        return self._error(
            ProviderErrorKind.FAILED, f"{self.service} refused the request (HTTP {status}){detail}"
        )

    def server_message(self, response: httpx.Response) -> str:
        """The server's own words about a failure: JSON error fields, a custom reason phrase, or text."""
        try:
            message = error_message_in(response.json())
        except ValueError:
            message = ""
        reason = response.reason_phrase
        if not message and reason and reason != http_phrase(response.status_code):
            message = reason  # Proxmox puts its error text here
        if not message and "html" not in response.headers.get("content-type", ""):
            message = response.text[:200]
        return sanitize_line(self.redact(message), limit=200)

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "********") if self._secret else text

    def _error(self, kind: ProviderErrorKind, message: str) -> ProviderError:
        return ProviderError(kind, sanitize_line(self.redact(message)))

    @staticmethod
    def _detail(message: str) -> str:
        return f": {message}" if message else ""


def error_message_in(payload: Any) -> str:
    """Find an error message in the error shapes seen in the wild (JSON:API, plain, Proxmox)."""
    if not isinstance(payload, dict):
        return payload if isinstance(payload, str) else ""
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        return first if isinstance(first, str) else error_message_in(first)
    if isinstance(errors, dict) and errors:  # Proxmox: {"errors": {"param": "why"}}
        return "; ".join(f"{name}: {why}" for name, why in errors.items())
    for key in ("error", "message", "detail", "title", "msg"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            return error_message_in(value)
    return ""


def http_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def wait_for_power(
    read: Callable[[], Awaitable[ProviderStatus]],
    targets: Collection[PowerState],
    *,
    subject: str,
    deadline: float,
    budget: float,
    clock: Clock,
    sleep: Sleep,
    interval: float,
    max_transient_errors: int = 3,
) -> ProviderStatus:
    """Poll `read` until the power is one of `targets`.

    A few transient failures in a row are ridden out (a 502 while a VM boots should not
    fail the start); an ERROR state raises FAILED; past `deadline` raises TIMEOUT.
    """
    failures = 0
    last_seen = "unknown"
    while True:
        try:
            status = await read()
        except ProviderError as exc:
            failures += 1
            if exc.kind not in TRANSIENT_KINDS or failures > max_transient_errors:
                raise
        else:
            failures = 0
            last_seen = status.raw_state or status.power.value
            if status.power in targets:
                return status
            if status.power is PowerState.ERROR:
                message = f"{subject} is in an error state ({last_seen})"
                raise ProviderError(ProviderErrorKind.FAILED, message)
        if clock() >= deadline:
            wanted = " or ".join(sorted(target.value for target in targets))
            raise ProviderError(
                ProviderErrorKind.TIMEOUT,
                f"{subject} did not reach {wanted} within {budget:g} s (last state: {last_seen})",
            )
        await sleep(interval)
