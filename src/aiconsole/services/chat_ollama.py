"""Chat with an Ollama server: `/api/chat` streaming, through the official `ollama` AsyncClient.

    chat = OllamaChat("http://127.0.0.1:PORT")
    async with chat.reply("llama3.1:8b", [ChatMessage("user", "hi")]) as reply:
        async for piece in reply:
            ...
    reply.stats    # TTFT, tokens and tokens/s from Ollama's eval_count/eval_duration

See services/chat_base.py for the contract. An error line inside the stream (HTTP 200,
then `{"error": ...}`) is a `ChatError` with the server's text; a stream cut off is a
retryable one; leaving the block early closes the request (Ollama then stops generating)
and the stats say "cancelled". Like a pull, the stream's stall timeout is a `StallWatch`
(`ChatTimeouts.read_s`), not a timeout on every read. Importing this module imports `ollama` (and httpx).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self

import ollama

from aiconsole.domain.chat import ChatMessage, ReplyClock, ReplyStats
from aiconsole.services.chat_base import DEFAULT_TIMEOUTS, ChatError, ChatTimeouts
from aiconsole.services.ollama_errors import OllamaErrors
from aiconsole.services.stall_watch import StallWatch
from aiconsole.services.tls import shared_ssl_context

__all__ = ["OllamaChat", "OllamaReply"]

_NS = 1e-9


class OllamaChat:
    """Chat with the Ollama server at `url`."""

    def __init__(self, url: str, timeouts: ChatTimeouts = DEFAULT_TIMEOUTS, clock: Callable[[], float] = time.monotonic):
        self.url = url
        self._timeouts = timeouts
        self._clock = clock
        self._client = ollama.AsyncClient(host=url, timeout=timeouts.httpx(per_read=False), verify=shared_ssl_context())

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def reply(
        self, model: str, messages: Sequence[ChatMessage], *, options: dict[str, Any] | None = None,
        keep_alive: str | float | None = None,
    ) -> OllamaReply:  # fmt: skip
        """The reply to `messages` from `model`, streamed (see the module's docstring)."""
        errors = OllamaErrors(self.url, f"chat with {model}", ChatError, ChatError, cut_hint="")
        request = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            **({"options": options} if options else {}),
            **({"keep_alive": keep_alive} if keep_alive is not None else {}),
        }
        return OllamaReply(self._client, request, errors, self._timeouts.read_s, self._clock)


class OllamaReply:
    """One streamed reply; an async context manager and, inside it, an async iterator of pieces."""

    def __init__(self, client: ollama.AsyncClient, request: dict[str, Any], errors: OllamaErrors,
                 stall_s: float, clock: Callable[[], float]) -> None:  # fmt: skip
        self._client, self._request, self._errors, self._clock = client, request, errors, clock
        self._watch = StallWatch(self._seen, stall_s)
        self._timing = ReplyClock(clock())
        self._stream: Any = None
        self._final: Any = None
        self._ended = False
        self.stats: ReplyStats | None = None
        """Set when the block is left: how the reply went."""

    def _seen(self) -> int:
        return self._timing.pieces + (self._final is not None)

    async def __aenter__(self) -> Self:
        self._timing = ReplyClock(self._clock())
        self._watch.start()
        async with self._errors:
            self._stream = await self._client.chat(**self._request)
        return self

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        timing, clock = self._timing, self._clock
        async for part in self._stream:  # the hot loop: thousands of tokens a second
            text = part.message.content if part.message is not None else None
            if text:
                timing.piece(clock(), text)
                yield text
            if part.done:
                self._final = part
        self._ended = True  # read to the end (with or without its last chunk)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        stalled = self._watch.stop(exc)
        if self._stream is not None:
            await self._stream.aclose()  # closes the request: Ollama stops generating
        self.stats = self._stats(exc, stalled)
        if stalled:
            raise ChatError(f"chat with {self._request['model']}: nothing from Ollama for "
                            f"{self._watch.idle_s:g} s", retryable=True)  # fmt: skip
        return await self._errors.__aexit__(kind, exc, tb)

    def _stats(self, exc: BaseException | None, stalled: bool) -> ReplyStats:
        now, final = self._clock(), self._final
        if final is None:  # no last chunk: the reader left early (cancel), or the stream broke
            broke = stalled or isinstance(exc, Exception) or self._ended
            return self._timing.stats(now, "error" if broke else "cancelled")
        eval_s = final.eval_duration * _NS if final.eval_duration else None
        return self._timing.stats(
            now, final.done_reason or "stop", tokens=final.eval_count, eval_s=eval_s,
            prompt_tokens=final.prompt_eval_count,
        )  # fmt: skip
