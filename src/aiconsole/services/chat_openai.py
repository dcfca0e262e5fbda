"""`OpenAIChat`: a streaming chat with an OpenAI-compatible server (vLLM, LocalAI, llama.cpp).

    chat = OpenAIChat("http://127.0.0.1:8000", api_key=key)   # or ".../v1"
    async with chat.reply(model, messages) as reply:
        async for piece in reply:
            ...
    reply.stats

It POSTs `/v1/chat/completions` with `stream: true` and `stream_options.include_usage`,
and reads the Server-Sent Events itself, straight from httpx's byte stream: a reply can
run at thousands of tokens a second, and every layer (text decoding, a line decoder, an
SSE object per event) costs on each of them. What servers send besides content deltas:
a role-only first chunk, a last chunk with `finish_reason`, a usage chunk with
`choices: []` (the server's token count), `data: [DONE]`, comments (`: ping`) kept alive
by proxies, and errors in three shapes: `event: error` + `data: ...`, a data line
`{"error": {...}}` (vLLM, LocalAI, mid-stream), or a line that is not SSE at all (a bare
JSON error or text). Every failure is a `ChatError` (see `chat_base`).

The API key goes in the Authorization header only: never into a log line or an error
text (a server that echoes it back has it masked).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self

import httpx

from aiconsole.domain.chat import ChatMessage, ReplyClock, ReplyStats
from aiconsole.services.chat_base import DEFAULT_TIMEOUTS, ChatError, ChatTimeouts
from aiconsole.services.http_errors import transport_problem
from aiconsole.services.tls import shared_ssl_context

__all__ = ["OpenAIChat", "OpenAIReply", "chat_completions_url"]

_MAX_LINE = 1 << 20
"""A line longer than this is not an SSE event of a chat reply: stop before memory goes."""
_MAX_ERROR_BODY = 64 * 1024
_IGNORED_FIELDS = (b"id", b"retry")
"""SSE fields a chat reply has no use for; `: comment` lines are skipped too."""


def chat_completions_url(base_url: str) -> str:
    """`http://h:8000` and `http://h:8000/v1` (how users copy it from vLLM's docs) both work."""
    base = base_url.rstrip("/")
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


class OpenAIChat:
    """The chat of one OpenAI-compatible server; holds one connection pool (close it)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeouts: ChatTimeouts = DEFAULT_TIMEOUTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = chat_completions_url(base_url)
        self._shown = _without_userinfo(base_url)
        self._api_key = api_key or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=timeouts.httpx(), headers=headers, verify=shared_ssl_context())
        self._clock = clock

    def __repr__(self) -> str:  # the key lives in the client's headers: never show them
        return f"OpenAIChat({self._shown!r}, api_key={'***' if self._api_key else None})"

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def reply(
        self, model: str, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> OpenAIReply:  # fmt: skip
        """The reply to `messages` (sent as given, system prompt included), as a context."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return OpenAIReply(self, model, body)


class OpenAIReply:
    """One streamed reply: `async with` sends it, `async for` reads str pieces, `.stats` at the end."""

    def __init__(self, chat: OpenAIChat, model: str, body: dict[str, Any]) -> None:
        self._chat, self._body = chat, body
        self._doing = f"chat with {model} at {chat._shown}"
        self._response: httpx.Response | None = None
        self._pieces: Any = None  # the async generator of __aiter__, closed on leaving
        self._clock = ReplyClock(chat._clock())
        self._tokens: int | None = None
        self._prompt_tokens: int | None = None
        self.stats: ReplyStats | None = None
        """Set when the stream ends, fails, or the block is left early ("cancelled")."""

    async def __aenter__(self) -> Self:
        chat = self._chat
        request = chat._client.build_request("POST", chat.url, json=self._body)
        self._clock.sent_at = chat._clock()
        try:
            self._response = await chat._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            self._finish("error")
            raise self._transport_error(exc) from None
        if self._response.status_code >= 400:
            self._finish("error")
            raise await self._status_error(self._response)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        # Closing the generator and the response drops the connection mid-stream: that is how
        # the server learns to stop generating (OpenAI's API has no cancel call).
        if self._pieces is not None:
            await self._pieces.aclose()
        if self._response is not None:
            await self._response.aclose()
        self._finish("error" if isinstance(exc, ChatError) else "cancelled")

    def __aiter__(self) -> AsyncIterator[str]:
        if self._pieces is None:
            self._pieces = self._read()
        return self._pieces

    # --- the stream ------------------------------------------------------------------------

    async def _read(self) -> AsyncIterator[str]:
        """Pieces from the SSE byte stream; one loop, no layer between httpx's bytes and us."""
        assert self._response is not None, "iterate inside `async with`"
        parser = _SseParser(self)
        now, piece_at = self._chat._clock, self._clock.piece
        rest = b""
        try:
            async for chunk in self._response.aiter_bytes():
                lines = (rest + chunk if rest else chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    piece = parser.line(line)
                    if piece:
                        piece_at(now(), piece)
                        yield piece
                    elif parser.done:
                        self._finish(parser.finish_reason or "stop")
                        return
                if len(rest) > _MAX_LINE:
                    raise ChatError(f"{self._doing}: a line of the stream is over {_MAX_LINE} bytes")
            if rest and (piece := parser.line(rest)):  # a last line without its newline
                piece_at(now(), piece)
                yield piece
        except httpx.HTTPError as exc:
            self._finish("error")
            raise self._transport_error(exc) from None
        except ChatError:
            self._finish("error")
            raise
        if parser.done or parser.finish_reason:  # some servers end without [DONE]
            self._finish(parser.finish_reason or "stop")
            return
        self._finish("error")
        raise ChatError(f"{self._doing}: the stream ended before the reply was complete", retryable=True)

    def _finish(self, reason: str) -> None:
        """Fix the stats once: the first end (done, error, left early) is the true one."""
        if self.stats is None:
            self.stats = self._clock.stats(
                self._chat._clock(), reason, tokens=self._tokens, prompt_tokens=self._prompt_tokens
            )

    def usage(self, usage: Any) -> None:
        """The server's own count (the usage chunk); client counting is the fallback."""
        if isinstance(usage, dict):
            completion, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
            self._tokens = completion if isinstance(completion, int) else self._tokens
            self._prompt_tokens = prompt if isinstance(prompt, int) else self._prompt_tokens

    # --- errors ----------------------------------------------------------------------------

    def server_error(self, text: str) -> ChatError:
        """An error the server reported inside a 200 stream: its verdict on this request."""
        return ChatError(f"{self._doing}: {self._masked(text)}")

    def _masked(self, text: str) -> str:
        key = self._chat._api_key
        return text.replace(key, "***") if key else text

    async def _status_error(self, response: httpx.Response) -> ChatError:
        status = response.status_code
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raw = b""
        finally:
            await response.aclose()
        message = _error_text(raw[:_MAX_ERROR_BODY]) or response.reason_phrase or "no message"
        retryable = status >= 500 or status == 429
        return ChatError(f"{self._doing}: HTTP {status}: {self._masked(message)}", retryable=retryable, status=status)

    def _transport_error(self, exc: httpx.HTTPError) -> ChatError:
        doing = self._doing
        problem = transport_problem(exc, doing, self._chat._shown)
        if problem is not None:
            return ChatError(problem[0], retryable=problem[1])
        return ChatError(f"{doing}: {type(exc).__name__}: {self._masked(str(exc))}", retryable=True)


class _SseParser:
    """One SSE line at a time (bytes, without its newline) -> a content piece, or None.

    Sets `done` at `[DONE]`, `finish_reason` from the last choice chunk; raises the
    server's errors as ChatError. Kept apart from the read loop so the loop stays a loop."""

    __slots__ = ("_event", "_reply", "done", "finish_reason")

    def __init__(self, reply: OpenAIReply) -> None:
        self._reply = reply
        self._event = b""
        self.done = False
        self.finish_reason: str | None = None

    def line(self, line: bytes) -> str | None:
        if line[:5] == b"data:":
            return self._data(line[6:] if line[5:6] == b" " else line[5:])
        line = line.rstrip(b"\r")
        if not line:
            self._event = b""  # an event ends at a blank line
        elif line[:6] == b"event:":
            self._event = line[6:].strip()
        elif line[:1] != b":" and line.partition(b":")[0] not in _IGNORED_FIELDS:
            raise self._reply.server_error(_error_text(line) or "unreadable line in the stream")
        return None

    def _data(self, payload: bytes) -> str | None:
        payload = payload.rstrip(b"\r")
        if payload == b"[DONE]":
            self.done = True
            return None
        if self._event == b"error":
            raise self._reply.server_error(_error_text(payload) or "error event without a message")
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise self._reply.server_error(_error_text(payload) or "unreadable data in the stream") from None
        if not isinstance(chunk, dict):
            raise self._reply.server_error("a chunk of the stream is not a JSON object")
        if chunk.get("error") or chunk.get("object") == "error":
            raise self._reply.server_error(_message(chunk) or "error without a message")
        choices = chunk.get("choices")
        if chunk.get("usage"):
            self._reply.usage(chunk["usage"])
        if not choices:  # the usage chunk (`choices: []`), or a keep-alive of some servers
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        return delta.get("content") if delta else None


def _error_text(raw: bytes) -> str:
    """The message in an error body: OpenAI's `{"error": {"message"}}`, vLLM's older
    `{"object": "error", "message"}`, `{"error": "text"}`, FastAPI's `{"detail"}`, or the text."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:300]
    return _message(parsed) or text[:300]


def _message(parsed: Any) -> str:
    if not isinstance(parsed, dict):
        return ""
    error = parsed.get("error", parsed)
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        found = error.get("message") or error.get("detail") or parsed.get("detail")
        return found if isinstance(found, str) else json.dumps(found) if found else ""
    return ""


def _without_userinfo(url: str) -> str:
    """The URL to show: `http://user:secret@host` keeps its secret to itself."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "the server"
    return str(parsed.copy_with(username=None, password=None)).rstrip("/") if parsed.userinfo else url.rstrip("/")
