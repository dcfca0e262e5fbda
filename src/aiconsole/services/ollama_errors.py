"""`OllamaErrors`: what the `ollama` client, httpx and pydantic raise, as one plain error.

An async context manager around a call (or a stream's whole read): on leaving it with an
exception, that exception becomes `error_type(message, retryable=..., status=...)` (the
model library's `ModelError`, the chat's `ChatError`): the server's own message when it
sent one, otherwise a plain account of what happened, `retryable` when trying again may
work (down, slow, cut off, 5xx). Cancellation and our own errors pass through untouched.
"""

from __future__ import annotations

import json

import httpx
import ollama
import pydantic

from aiconsole.services.http_errors import transport_problem


class OllamaErrors:
    def __init__(self, url: str, doing: str, error_type: type[Exception], not_found_type: type[Exception],
                 *, cut_hint: str = "") -> None:  # fmt: skip
        self._url, self._doing = url, doing
        self._error, self._not_found, self._cut_hint = error_type, not_found_type, cut_hint

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, (self._error, GeneratorExit)) or not isinstance(exc, Exception):
            return False
        raise self.translate(exc) from None

    def translate(self, exc: Exception) -> Exception:
        doing, error = self._doing, self._error
        if isinstance(exc, ollama.ResponseError):
            message = str(exc.error).strip() or f"HTTP {exc.status_code}"
            if exc.status_code == 404:
                return self._not_found(f"{doing}: {message}", status=404)
            if exc.status_code == -1:  # an error line inside a 200 stream: the server's verdict
                return error(f"{doing}: {message}")
            return error(f"{doing}: HTTP {exc.status_code}: {message}", status=exc.status_code,
                         retryable=exc.status_code >= 500)  # fmt: skip
        message, retryable = self._plain(exc)
        return error(message, retryable=retryable)

    def _plain(self, exc: Exception) -> tuple[str, bool]:
        """(message, retryable) for a failure that carries no message from the server."""
        doing = self._doing
        problem = transport_problem(exc, doing, f"Ollama at {self._url}", self._cut_hint)
        if problem is not None:
            return problem
        if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError, UnicodeDecodeError, TypeError)):
            return f"{doing}: the server's answer is not Ollama's API ({type(exc).__name__})", False
        if isinstance(exc, httpx.HTTPError):
            return f"{doing}: {type(exc).__name__}: {exc}", True
        return f"{doing}: {type(exc).__name__}: {exc}", False
