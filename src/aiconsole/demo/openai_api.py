"""`FakeOpenAI`: an OpenAI-compatible server on loopback that streams chat as vLLM does.

The demo's vLLM/LocalAI services run one, and the tests of `services.chat_openai` drive
the real client against it. What it answers, as vLLM's OpenAI server writes it
(vllm/entrypoints/openai/serving_chat.py `chat_completion_stream_generator`, protocol.py)
and OpenAI's API reference describes it:

| route | answer |
|---|---|
| `GET /v1/models` | `{"object": "list", "data": [{"id", "object": "model", ...}]}` (from `FakeServiceHealth`) |
| `POST /v1/chat/completions`, `stream: true` | SSE, one `data: {json}` + blank line per chunk: a role-only first chunk (`delta: {"role": "assistant", "content": ""}`), one chunk per token, a chunk with `finish_reason` ("stop", or "length" at `max_tokens`), with `stream_options.include_usage` a usage chunk with `choices: []`, then `data: [DONE]` |
| same, `stream: false` | one `chat.completion` object with `message` and `usage` |
| `GET /health` | 200, as vLLM |

Errors are OpenAI's JSON, `{"error": {"message", "type", "param", "code"}}`: 401 for a
wrong or missing key (when `api_key` is set), 404 for an unknown model, 400 for a bad body.
An error after the stream began is, as in vLLM, one more `data: {"error": {...}}` line
and `[DONE]` on the 200 already sent.

Knobs: `reply_text`, `tokens_per_s` (None: as fast as the socket takes it), `models`,
`api_key`; one-shot faults for the next stream: `error_event_after` (`event: error`),
`error_data_after` (vLLM's data line), `garbage_line_after` (a line that is not SSE),
`cut_after` (the connection drops); a 500 before the stream is `faults.fail_next(500,
body=openai_error(...))`. What the tests look at: `last_body` (the request as sent),
`client_left` (set when a client dropped a stream before its end) and `streams_finished`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aiconsole.demo.health_api import FakeServiceHealth
from aiconsole.demo.httpserver import DropConnection, Request, Response
from aiconsole.demo.ollama_api import DEFAULT_REPLY
from aiconsole.demo.ollama_wire import tokens

FaultKind = Literal["event", "data", "line", "cut"]


def openai_error(message: str, kind: str = "invalid_request_error", code: object = None) -> dict[str, Any]:
    """An error body as OpenAI (and vLLM, LocalAI) send it."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def sse(event: dict[str, Any]) -> bytes:
    """One SSE event carrying a JSON chunk."""
    return b"data: " + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class _StreamFault:
    after: int
    """Content tokens sent before it strikes."""
    kind: FaultKind
    text: str


class FakeOpenAI(FakeServiceHealth):
    """An OpenAI-compatible chat server (vLLM by default) with knobs for tests and the demo."""

    def __init__(
        self,
        role: Literal["vllm", "localai"] = "vllm",
        *,
        models: Iterable[str] | None = None,
        reply_text: str = DEFAULT_REPLY,
        tokens_per_s: float | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(role)
        if models is not None:
            self.models = list(models)
        self.reply_text = reply_text
        self.tokens_per_s = tokens_per_s
        self.api_key = api_key
        """When set, every /v1 request must carry `Authorization: Bearer <api_key>`."""
        self.last_body: dict[str, Any] | None = None
        """The JSON body of the last chat request, as the client sent it."""
        self.client_left = asyncio.Event()
        """Set when a client closed a stream before its end (as a cancelled reply does)."""
        self.streams_finished = 0
        self._faults: deque[_StreamFault] = deque()
        self.router.add("POST", "/v1/chat/completions", self._chat)

    # --- one-shot faults of the next stream ------------------------------------------

    def error_event_after(self, tokens_sent: int, message: str) -> None:
        """`event: error` + `data: {"message": ...}`, then the stream ends."""
        self._faults.append(_StreamFault(tokens_sent, "event", message))

    def error_data_after(self, tokens_sent: int, message: str) -> None:
        """vLLM's mid-stream error: `data: {"error": {...}}`, then `data: [DONE]`."""
        self._faults.append(_StreamFault(tokens_sent, "data", message))

    def garbage_line_after(self, tokens_sent: int, line: str) -> None:
        """A line that is not SSE at all (a proxy's text, a bare JSON error), then the end."""
        self._faults.append(_StreamFault(tokens_sent, "line", line))

    def cut_after(self, tokens_sent: int) -> None:
        """The connection drops mid-stream, with no end to the chunked body."""
        self._faults.append(_StreamFault(tokens_sent, "cut", ""))

    # --- answers ---------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        wanted = f"Bearer {self.api_key}"
        if (
            self.api_key is not None
            and request.path.startswith("/v1/")
            and request.headers.get("authorization") != wanted
        ):
            message = "Incorrect API key provided. You can find your API key in your server's settings."
            return Response(401, openai_error(message, code="invalid_api_key"))
        return await super().serve(request)

    async def _chat(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response(400, openai_error("the request body is not JSON"))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return Response(400, openai_error("'messages' is required", code=400))
        self.last_body = body
        model = str(body.get("model") or "")
        if model not in self.models:
            return Response(404, openai_error(f"The model `{model}` does not exist.", "NotFoundError", 404))
        pieces = tokens(self.reply_text)
        limit = body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and 0 < limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        prompt_tokens = sum(
            len(tokens(str(m.get("content") or ""))) + 4 for m in body["messages"] if isinstance(m, dict)
        )
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + len(pieces),
                 "completion_tokens": len(pieces)}  # fmt: skip
        if body.get("stream") is not True:
            return Response(200, self._completion(model, "".join(pieces), finish, usage))
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        fault = self._faults.popleft() if self._faults else None
        stream = self._stream(model, pieces, finish, usage if with_usage else None, fault)
        return Response(200, stream, {"Content-Type": "text/event-stream; charset=utf-8"})

    def _completion(self, model: str, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish}  # fmt: skip
        head = _head(model, "chat.completion")
        return head | {"choices": [choice], "usage": usage}

    async def _stream(self, model: str, pieces: list[str], finish: str, usage: dict[str, int] | None,
                      fault: _StreamFault | None) -> AsyncIterator[bytes]:  # fmt: skip
        head = _head(model, "chat.completion.chunk")
        finished = False
        try:
            yield sse(head | {"choices": [_choice({"role": "assistant", "content": ""})]})
            interval = 1 / self.tokens_per_s if self.tokens_per_s else 0.0
            next_at = time.monotonic()
            for sent, piece in enumerate(pieces):
                if fault is not None and sent >= fault.after:
                    finished = True  # the server ends it (a cut included): not the client leaving
                    yield _fault_bytes(fault)
                    return
                if interval:  # a schedule, not a sleep per token: sleeps overshoot and add up
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                yield sse(head | {"choices": [_choice({"content": piece})]})
            yield sse(head | {"choices": [_choice({"content": ""}, finish)]})
            if usage is not None:
                yield sse(head | {"choices": [], "usage": usage})
            yield DONE
            finished = True
            self.streams_finished += 1
        finally:  # the server closes a body left half-sent when its client goes away
            if not finished:
                self.client_left.set()


def _head(model: str, kind: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{time.monotonic_ns():x}", "object": kind, "created": int(time.time()), "model": model}


def _choice(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _fault_bytes(fault: _StreamFault) -> bytes:
    if fault.kind == "cut":
        raise DropConnection()
    if fault.kind == "event":
        return b"event: error\ndata: " + json.dumps({"message": fault.text}).encode() + b"\n\n"
    if fault.kind == "data":
        return sse(openai_error(fault.text, "InternalServerError", 500)) + DONE
    return fault.text.encode() + b"\n"
