"""OpenAIChat against FakeOpenAI over loopback HTTP: the real httpx client reading real SSE.

The fake writes chunks as vLLM's server does (role-only first chunk, content deltas,
`finish_reason`, a usage chunk with `choices: []`, `data: [DONE]`); a few tests hand the
client raw SSE from a bare `LoopbackHttpServer` to pin shapes the fake never sends.
"""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from aiconsole.demo.httpserver import LoopbackHttpServer, Request, Response
from aiconsole.demo.openai_api import FakeOpenAI, openai_error
from aiconsole.domain.chat import ChatMessage
from aiconsole.services.chat_base import ChatError, ChatTimeouts
from aiconsole.services.chat_openai import OpenAIChat, chat_completions_url

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
REPLY = "Use `nvidia-smi`:\n\n```bash\nnvidia-smi -l 1\n```\n\nIt shows **VRAM** per GPU."
ASK = [ChatMessage("user", "How do I watch VRAM?")]
KEY = "sk-test-9f8e7d6c5b4a"


@pytest.fixture
async def fake():
    async with FakeOpenAI(reply_text=REPLY) as server:
        yield server


async def collect(chat: OpenAIChat, messages=ASK, **kwargs) -> tuple[list[str], object]:
    async with chat.reply(MODEL, messages, **kwargs) as reply:
        pieces = [piece async for piece in reply]
    return pieces, reply.stats


async def failure(chat: OpenAIChat, model: str = MODEL) -> tuple[ChatError, list[str], object]:
    """The ChatError a reply ends with, the pieces that came before it, and the stats."""
    pieces: list[str] = []
    reply = chat.reply(model, ASK)
    with pytest.raises(ChatError) as caught:
        async with reply:
            async for piece in reply:
                pieces.append(piece)
    return caught.value, pieces, reply.stats


# --- the normal stream -------------------------------------------------------------------


async def test_stream_joins_to_the_reply_with_server_counted_stats(fake: FakeOpenAI) -> None:
    async with OpenAIChat(fake.url) as chat:
        pieces, stats = await collect(chat)
    assert "".join(pieces) == REPLY
    assert len(pieces) == len(REPLY.split())  # one piece per token: the role-only chunk gave none
    assert stats.done_reason == "stop"
    assert stats.counted_by == "server" and stats.tokens == len(pieces)
    assert stats.prompt_tokens is not None and stats.prompt_tokens > 0
    assert stats.ttft_s is not None and 0 <= stats.ttft_s <= stats.duration_s
    assert fake.streams_finished == 1 and not fake.client_left.is_set()


async def test_request_carries_messages_as_given_and_asks_for_usage(fake: FakeOpenAI) -> None:
    messages = [ChatMessage("system", "Answer in one line."), *ASK]
    async with OpenAIChat(fake.url) as chat:
        await collect(chat, messages, max_tokens=50, temperature=0.2)
    assert fake.last_body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Answer in one line."},
            {"role": "user", "content": "How do I watch VRAM?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 50,
        "temperature": 0.2,
    }
    assert ("POST", "/v1/chat/completions") in fake.requests


async def test_max_tokens_reached_says_length(fake: FakeOpenAI) -> None:
    async with OpenAIChat(fake.url) as chat:
        pieces, stats = await collect(chat, max_tokens=3)
    assert len(pieces) == 3 and stats.done_reason == "length" and stats.tokens == 3


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_with_or_without_v1(fake: FakeOpenAI, suffix: str) -> None:
    assert chat_completions_url(fake.url + suffix) == fake.url + "/v1/chat/completions"
    async with OpenAIChat(fake.url + suffix) as chat:
        pieces, _ = await collect(chat)
    assert "".join(pieces) == REPLY


async def test_api_key_is_sent_as_bearer() -> None:
    async with FakeOpenAI(reply_text=REPLY, api_key=KEY) as fake, OpenAIChat(fake.url, api_key=KEY) as chat:
        pieces, _ = await collect(chat)
        assert KEY not in repr(chat)
    assert "".join(pieces) == REPLY


# --- raw SSE the fake never sends: pin the parser to the wire format ----------------------


async def serve_sse(body: bytes, content_type: str = "text/event-stream"):
    async def handler(request: Request) -> Response:
        async def chunks():
            for part in body.split(b"|"):  # "|" marks where one TCP write ends
                yield part

        return Response(200, chunks(), {"Content-Type": content_type})

    return await LoopbackHttpServer(handler).start()


def chunk(content: str | None = None, finish: str | None = None, **extra) -> bytes:
    delta = {} if content is None else {"content": content}
    event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(event | extra).encode() + b"\n\n"


async def test_comments_crlf_null_content_and_split_lines_are_read() -> None:
    body = (
        b": ping\n\n"
        + b'data: {"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}\r\n\r\n'
        + chunk("Hel")[:20]
        + b"|"
        + chunk("Hel")[20:]
        + b'data: {"choices":[{"index":0,"delta":{"content":null},"finish_reason":null}]}\n\n'
        + b"id: 7\nretry: 1000\n"
        + chunk("lo")
        + b"|"
        + chunk(finish="stop")
        + b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n'
        + b"data: [DONE]\n\n"
    )
    server = await serve_sse(body)
    try:
        async with OpenAIChat(server.url) as chat:
            pieces, stats = await collect(chat)
    finally:
        await server.close()
    assert pieces == ["Hel", "lo"]
    assert (stats.done_reason, stats.tokens, stats.prompt_tokens, stats.counted_by) == ("stop", 2, 9, "server")


async def test_without_usage_the_client_counts() -> None:
    server = await serve_sse(chunk("a") + chunk(" b") + chunk(finish="stop") + b"data: [DONE]\n\n")
    try:
        async with OpenAIChat(server.url) as chat:
            pieces, stats = await collect(chat)
    finally:
        await server.close()
    assert pieces == ["a", " b"] and (stats.tokens, stats.counted_by) == (2, "client")


async def test_a_stream_that_ends_with_no_finish_and_no_done_is_cut_off() -> None:
    server = await serve_sse(chunk("a") + chunk(" b"))
    try:
        async with OpenAIChat(server.url) as chat:
            error, pieces, stats = await failure(chat)
    finally:
        await server.close()
    assert pieces == ["a", " b"] and error.retryable and "ended before" in str(error)
    assert stats.done_reason == "error"


async def test_a_server_error_text_is_sanitised() -> None:
    server = await serve_sse(
        chunk("a") + b'data: {"error": {"message": "boom\\u001b[2J\\u001b]0;pwned\\u0007 here"}}\n\n'
    )
    try:
        async with OpenAIChat(server.url) as chat:
            error, _, _ = await failure(chat)
    finally:
        await server.close()
    assert "boom" in str(error) and "here" in str(error)
    assert "\x1b" not in str(error) and "pwned" not in str(error)


# --- errors inside the stream -------------------------------------------------------------


async def test_error_event_mid_stream(fake: FakeOpenAI) -> None:
    fake.error_event_after(3, "CUDA out of memory")
    async with OpenAIChat(fake.url) as chat:
        error, pieces, stats = await failure(chat)
    assert len(pieces) == 3
    assert "CUDA out of memory" in str(error) and not error.retryable and error.status is None
    assert stats.done_reason == "error" and stats.tokens == 3


async def test_vllm_error_data_line_mid_stream(fake: FakeOpenAI) -> None:
    fake.error_data_after(2, "Generation aborted.")
    async with OpenAIChat(fake.url) as chat:
        error, pieces, _ = await failure(chat)
    assert len(pieces) == 2 and "Generation aborted." in str(error)


@pytest.mark.parametrize(
    ("line", "shown"),
    [('{"error": "model crashed"}', "model crashed"), ("upstream connect error", "upstream connect error")],
)
async def test_non_sse_line_is_the_servers_error(fake: FakeOpenAI, line: str, shown: str) -> None:
    fake.garbage_line_after(1, line)
    async with OpenAIChat(fake.url) as chat:
        error, pieces, _ = await failure(chat)
    assert len(pieces) == 1 and str(error).endswith(shown)


async def test_cut_off_stream_is_retryable(fake: FakeOpenAI) -> None:
    fake.cut_after(4)
    async with OpenAIChat(fake.url) as chat:
        error, pieces, stats = await failure(chat)
        assert len(pieces) == 4 and error.retryable and "dropped mid-answer" in str(error)
        assert stats.done_reason == "error"
        pieces, _ = await collect(chat)  # the next reply works: nothing of the cut one is left
    assert "".join(pieces) == REPLY


# --- errors before the stream -------------------------------------------------------------


async def test_http_500_carries_the_servers_message_and_is_retryable(fake: FakeOpenAI) -> None:
    fake.faults.fail_next(500, body=openai_error("engine dead", "InternalServerError", 500))
    async with OpenAIChat(fake.url) as chat:
        error, pieces, stats = await failure(chat)
    assert pieces == [] and error.status == 500 and error.retryable
    assert "HTTP 500" in str(error) and "engine dead" in str(error)
    assert stats.done_reason == "error"


async def test_http_429_with_text_body_is_retryable(fake: FakeOpenAI) -> None:
    fake.faults.fail_next(429, body="slow down")
    async with OpenAIChat(fake.url) as chat:
        error, _, _ = await failure(chat)
    assert (error.status, error.retryable) == (429, True) and str(error).endswith("slow down")


async def test_unknown_model_is_404_not_retryable(fake: FakeOpenAI) -> None:
    async with OpenAIChat(fake.url) as chat:
        error, _, _ = await failure(chat, model="no-such-model")
    assert (error.status, error.retryable) == (404, False)
    assert "The model `no-such-model` does not exist." in str(error)


@pytest.mark.parametrize("sent", [None, "sk-wrong-0123456789"])
async def test_401_never_shows_the_key(sent: str | None) -> None:
    async with FakeOpenAI(api_key=KEY) as fake, OpenAIChat(fake.url, api_key=sent) as chat:
        error, _, _ = await failure(chat)
    assert error.status == 401 and not error.retryable and "Incorrect API key" in str(error)
    assert KEY not in str(error) and (sent is None or sent not in str(error))


async def test_a_server_echoing_the_key_has_it_masked() -> None:
    async def handler(request: Request) -> Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        return Response(401, openai_error(f"Incorrect API key provided: {key}"))

    async with LoopbackHttpServer(handler) as server, OpenAIChat(server.url, api_key=KEY) as chat:
        error, _, _ = await failure(chat)
    assert KEY not in str(error) and "***" in str(error)


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with OpenAIChat(f"http://user:hunter2@127.0.0.1:{port}") as chat:
        error, _, stats = await failure(chat)
    assert error.retryable and "cannot reach" in str(error) and "(connection refused)" in str(error)
    assert "hunter2" not in str(error) and stats.done_reason == "error"


async def test_a_silent_server_times_out_retryable(fake: FakeOpenAI) -> None:
    fake.faults.delay_next(2.0)
    async with OpenAIChat(fake.url, timeouts=ChatTimeouts(read_s=0.2)) as chat:
        error, _, _ = await failure(chat)
    assert error.retryable and "did not answer in time" in str(error)


# --- leaving early ------------------------------------------------------------------------


async def test_leaving_early_closes_the_request_and_says_cancelled() -> None:
    async with FakeOpenAI(reply_text="word " * 1000, tokens_per_s=200) as fake, OpenAIChat(fake.url) as chat:
        reply = chat.reply(MODEL, ASK)
        async with reply:
            seen = 0
            async for _ in reply:
                seen += 1
                if seen == 3:
                    break
        assert reply.stats is not None and reply.stats.done_reason == "cancelled"
        assert reply.stats.tokens == 3 and reply.stats.counted_by == "client"
        await asyncio.wait_for(fake.client_left.wait(), 2.0)  # the server saw the disconnect
        assert fake.streams_finished == 0


async def test_cancelling_the_reader_task_closes_the_request() -> None:
    async with FakeOpenAI(reply_text="word " * 1000, tokens_per_s=200) as fake, OpenAIChat(fake.url) as chat:
        reply = chat.reply(MODEL, ASK)
        first = asyncio.Event()

        async def read() -> None:
            async with reply:
                async for _ in reply:
                    first.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(first.wait(), 2.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reply.stats.done_reason == "cancelled"
        await asyncio.wait_for(fake.client_left.wait(), 2.0)


# --- the fake's other answers, for the demo -------------------------------------------------


async def test_fake_lists_models_and_answers_without_streaming(fake: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=fake.url, timeout=5) as http:
        models = (await http.get("/v1/models")).json()
        answer = (await http.post("/v1/chat/completions", json={"model": MODEL, "messages": []})).json()
    assert MODEL in [m["id"] for m in models["data"]]
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == REPLY
    assert answer["usage"]["completion_tokens"] == len(REPLY.split())
