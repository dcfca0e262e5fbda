"""`HealthChecker`: GET each service's health endpoint and say up, down or starting.

Where each kind is checked, and how an answer reads, is in `aiconsole.domain.health`.
A check never raises: a refused connection, a timeout, a 5xx or a broken URL all come
back as a `ServiceHealth` with the reason in `error`. Every string that came from the
server or from an exception passes `sanitize_line`, with the URL's credentials masked,
before it goes into `error` or `version`; bodies are read only up to `_MAX_BODY` bytes.

    async with HealthChecker() as checker:
        board = await checker.check_all(targets)
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol, Self

import httpx

from aiconsole.domain.health import (
    HealthState,
    HealthTarget,
    ServiceHealth,
    health_urls,
    shown_url,
    state_for_status,
    url_secrets,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.clock import utc_now
from aiconsole.services.providers._http import error_message_in, http_phrase
from aiconsole.services.tls import shared_ssl_context

_MAX_BODY = 64 * 1024  # a health answer is a few bytes; a hostile one must not fill memory
_ERROR_LIMIT = 160
_VERSION_LIMIT = 40
_FALLBACK_STATUSES = (404, 405)  # this server has no such path: try the kind's next one


class _Checkable(Protocol):
    """A `HealthTarget`, or a config `ServiceConfig` (its `url` is a pydantic URL)."""

    name: str
    kind: str
    url: Any




class HealthChecker:
    """Checks services over one shared httpx client, at most `max_concurrent` at once.

    `client`: an injected client is used as is (and not closed) except for the timeout,
    which every request sets to `timeout_s`. `clock` stamps `checked_at`; `timer`
    measures latency.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 3.0,
        clock: Callable[[], datetime] = utc_now,
        *,
        timer: Callable[[], float] = time.perf_counter,
        max_concurrent: int = 8,
    ) -> None:
        self._owns_client = client is None
        # trust_env=False: a proxy from the environment must not carry checks that go to
        # 127.0.0.1 (SSH forwards) or to private service addresses.
        self._client = client or httpx.AsyncClient(
            follow_redirects=False, trust_env=False, verify=shared_ssl_context(trust_env=False)
        )
        self._timeout_s = timeout_s
        self._clock, self._timer = clock, timer
        self._limit = asyncio.Semaphore(max_concurrent)
        self._answered_on: dict[tuple[str, str], str] = {}
        """(kind, configured URL) -> the health URL that answered last, to try first next time."""

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def check_all(self, services: Iterable[_Checkable]) -> list[ServiceHealth]:
        """Check every service concurrently (capped); results in the order given."""
        return list(await asyncio.gather(*(self._check_target(service) for service in services)))

    async def _check_target(self, service: _Checkable) -> ServiceHealth:
        shown_as = service.shown_as if isinstance(service, HealthTarget) else None
        return await self.check(service.name, service.kind, str(service.url), shown_as=shown_as)

    async def check(self, name: str, kind: str, url: str, *, shown_as: str | None = None) -> ServiceHealth:
        """Check one service; never raises (but lets cancellation through)."""
        async with self._limit:
            try:
                state, latency_ms, version, error = await self._probe(kind, url)
            except Exception as exc:  # a bug here must not end a worker: report it, as unknown
                state, latency_ms, version = HealthState.UNKNOWN, None, ""
                error = f"check failed: {type(exc).__name__}: {exc}"
        return ServiceHealth(
            name=name,
            kind=kind,
            state=state,
            latency_ms=latency_ms,
            version=_clean(version, url, _VERSION_LIMIT),
            error=_clean(error, url, _ERROR_LIMIT),
            checked_at=self._clock(),
            url_shown=shown_url(shown_as or url),
        )

    async def _probe(self, kind: str, url: str) -> tuple[HealthState, float | None, str, str]:
        candidates = list(health_urls(kind, url))
        remembered = self._answered_on.get((kind, url))
        if remembered in candidates:
            candidates.remove(remembered)
            candidates.insert(0, remembered)
        for index, check_url in enumerate(candidates):
            started = self._timer()
            try:
                status, reason, headers, body = await self._get(check_url)
            except (httpx.TimeoutException, TimeoutError) as exc:
                return HealthState.DOWN, None, "", f"timed out after {self._timeout_s:g} s ({type(exc).__name__})"
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return HealthState.DOWN, None, "", _transport_reason(exc)
            latency_ms = (self._timer() - started) * 1000
            if status in _FALLBACK_STATUSES and index + 1 < len(candidates):
                continue
            self._answered_on[(kind, url)] = check_url
            state = state_for_status(status)
            if state is HealthState.UP:
                return state, latency_ms, _version_in(body), ""
            return state, latency_ms, "", _status_reason(status, reason, headers, body)
        raise AssertionError("health_urls gave no URL")  # pragma: no cover

    async def _get(self, url: str) -> tuple[int, str, httpx.Headers, bytes]:
        # identity: the body is read capped, and a compressed one could expand past the cap.
        headers = {"Accept-Encoding": "identity"}
        request = self._client.build_request("GET", url, headers=headers, timeout=self._timeout_s)
        # httpx's timeout bounds each read, not the whole answer: a server trickling bytes is cut here.
        async with asyncio.timeout(self._timeout_s * 2):
            response = await self._client.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= _MAX_BODY:
                        break
            finally:
                await response.aclose()
        return response.status_code, response.reason_phrase, response.headers, bytes(body[:_MAX_BODY])


def _transport_reason(exc: Exception) -> str:
    """'cannot connect: connection refused', ...: the cause, never the URL."""
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"invalid URL ({type(exc).__name__})"
    prefix = "cannot connect" if isinstance(exc, httpx.ConnectError) else _words(type(exc).__name__)
    cause = _os_error_in(exc)
    if isinstance(cause, ssl.SSLError):  # its errno is OpenSSL's: 1 would read "operation not permitted"
        text = _tls_reason(cause)
    elif cause is not None and cause.errno:
        # os.strerror for positive errnos: asyncio's own text carries the address.
        text = os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror or cause)
    else:
        text = str(exc) or ""
    return f"{prefix}: {text[:1].lower()}{text[1:]}" if text else prefix


def _tls_reason(error: ssl.SSLError) -> str:
    """'untrusted TLS certificate (self-signed certificate)', 'failed TLS handshake (WRONG_VERSION_NUMBER)'."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"untrusted TLS certificate ({error.verify_message})"
    return f"failed TLS handshake ({error.reason or error})"


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError under httpx's wrapping (anyio hides ECONNREFUSED under 'All connection attempts failed')."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current
        current = current.__cause__ or current.__context__
    return None


def _words(name: str) -> str:
    """'RemoteProtocolError' -> 'remote protocol error'."""
    return "".join(f" {ch.lower()}" if ch.isupper() else ch for ch in name).strip()


def _status_reason(status: int, reason: str, headers: httpx.Headers, body: bytes) -> str:
    message = _server_message(status, reason, headers, body)
    head = f"HTTP {status} {http_phrase(status)}".rstrip()
    return f"{head}: {message}" if message else head


def _server_message(status: int, reason: str, headers: httpx.Headers, body: bytes) -> str:
    """The server's own words: a JSON error field, a custom reason phrase, or short text."""
    text = body.decode("utf-8", errors="replace")
    try:
        message = error_message_in(json.loads(text))
    except ValueError:
        message = ""
    if not message and reason and reason != http_phrase(status):
        message = reason
    if not message and "html" not in headers.get("content-type", ""):
        message = text[:200]
    return message


def _version_in(body: bytes) -> str:
    """The `version` field of a JSON answer (Ollama's /api/version), or ''."""
    try:
        payload = json.loads(body)
    except ValueError:
        return ""
    version = payload.get("version") if isinstance(payload, dict) else None
    return version if isinstance(version, str) else ""


def _clean(text: str, url: str, limit: int) -> str:
    """Mask the URL's credentials, then sanitise to one short line."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return sanitize_line(text, limit=limit)
