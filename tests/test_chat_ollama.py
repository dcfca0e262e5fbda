"""services/chat_ollama.py against the loopback Ollama (`FakeOllama`), through the real client."""

from __future__ import annotations

import asyncio
import time

import pytest

from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.domain.chat import ChatMessage, ReplyClock
from aiconsole.services.chat_base import ChatError, ChatTimeouts
from aiconsole.services.chat_ollama import OllamaChat

HELLO = [ChatMessage("user", "hello")]


@pytest.fixture
async def ollama():
    async with FakeOllama(reply_text="Hello there, operator. **Bold** and `code`.", tokens_per_s=None) as fake:
        yield fake


@pytest.fixture
async def chat(ollama):
    async with OllamaChat(ollama.url, ChatTimeouts(connect_s=1.0, read_s=2.0)) as client:
        yield client


async def read(chat: OllamaChat, model: str = "llama3.1:8b", messages=HELLO):
    async with chat.reply(model, messages) as reply:
        pieces = [piece async for piece in reply]
    return pieces, reply.stats


async def test_a_reply_streams_its_pieces_and_ollamas_counters(ollama, chat) -> None:
    pieces, stats = await read(chat)
    assert "".join(pieces) == ollama.reply_text and len(pieces) > 5
    assert stats.done_reason == "stop" and stats.counted_by == "server"
    assert stats.tokens == len(pieces)  # eval_count: one a token, as the fake sends them
    assert stats.tokens_per_s and stats.tokens_per_s > 0
    assert stats.ttft_s is not None and 0 <= stats.ttft_s <= stats.duration_s
    assert stats.prompt_tokens and stats.prompt_tokens > 0
    assert "llama3.1:8b" in ollama.loaded  # the chat loaded the model, as Ollama does


async def test_the_messages_are_sent_as_given(ollama, chat) -> None:
    messages = [ChatMessage("system", "You are an editorial assistant."), ChatMessage("user", "A title?")]
    await read(chat, messages=messages)
    assert ("POST", "/api/chat") in ollama.requests


async def test_an_error_line_mid_stream_is_the_servers_message(ollama, chat) -> None:
    ollama.reply_fails_with("model runner has unexpectedly stopped", after_tokens=3)
    seen: list[str] = []
    with pytest.raises(ChatError, match="chat with llama3.1:8b: model runner has unexpectedly stopped") as caught:
        async with chat.reply("llama3.1:8b", HELLO) as reply:
            async for piece in reply:
                seen.append(piece)
    assert len(seen) == 3 and not caught.value.retryable
    assert reply.stats.done_reason == "error"


async def test_a_cut_off_stream_is_retryable(ollama, chat) -> None:
    ollama.cut_reply_after(4)
    with pytest.raises(ChatError, match="the connection dropped mid-answer") as caught:
        await read(chat)
    assert caught.value.retryable


async def test_an_unknown_model_is_404_with_the_servers_message(chat) -> None:
    with pytest.raises(ChatError, match="chat with nope:1b: model 'nope:1b' not found") as caught:
        await read(chat, "nope:1b")
    assert caught.value.status == 404


async def test_leaving_early_closes_the_request_on_the_server(ollama, chat) -> None:
    ollama.tokens_per_s = 20.0  # slow enough that the reply is far from done when we leave
    ollama.reply_text = "word " * 200
    async with chat.reply("llama3.1:8b", HELLO) as reply:
        async for piece in reply:
            if reply_pieces(reply) >= 2:
                break
    assert reply.stats.done_reason == "cancelled" and reply.stats.tokens == 2
    deadline = time.monotonic() + 2.0
    while ollama.loaded["llama3.1:8b"].in_use and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert ollama.loaded["llama3.1:8b"].in_use == 0  # the server's generator ended: request closed


def reply_pieces(reply) -> int:
    return reply._timing.pieces


async def test_a_cancelled_task_leaves_cancelled_stats(ollama, chat) -> None:
    ollama.tokens_per_s = 20.0
    ollama.reply_text = "word " * 200
    box = {}

    async def reading() -> None:
        async with chat.reply("llama3.1:8b", HELLO) as reply:
            box["reply"] = reply
            async for _ in reply:
                pass

    task = asyncio.create_task(reading())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert box["reply"].stats.done_reason == "cancelled"


async def test_a_server_that_is_down(ollama, chat) -> None:
    await ollama.go_down()
    with pytest.raises(ChatError, match="cannot reach Ollama") as caught:
        await read(chat)
    assert caught.value.retryable


async def test_a_server_that_says_nothing_is_stopped_by_the_watchdog(ollama) -> None:
    ollama.slow(3.0)
    async with OllamaChat(ollama.url, ChatTimeouts(connect_s=1.0, read_s=0.4)) as chat:
        started = time.monotonic()
        with pytest.raises(ChatError, match="nothing from Ollama for 0.4 s") as caught:
            await read(chat)
    assert caught.value.retryable and time.monotonic() - started < 1.5


def test_reply_clock_counts_pieces_and_rates() -> None:
    clock = ReplyClock(sent_at=10.0)
    clock.piece(10.5, "")  # an empty piece is not a token
    for index in range(5):
        clock.piece(11.0 + index * 0.5, "tok")
    stats = clock.stats(14.0, "stop")
    assert stats.ttft_s == 1.0 and stats.tokens == 5 and stats.counted_by == "client"
    assert stats.tokens_per_s == pytest.approx(2.0)  # 4 intervals in 2 s
    server = clock.stats(14.0, "stop", tokens=50, eval_s=2.5, prompt_tokens=7)
    assert server.tokens_per_s == 20.0 and server.counted_by == "server" and server.duration_s == 4.0
