"""The server of benchmarks/chat.py: the demo's loopback Ollama, paced exactly, telling send times.

    python benchmarks/_chat_server.py        # prints its URL and model, serves until stdin closes

`FakeOllama` streams `reply_text` cut into the fake's word-sized tokens and sleeps
1/tokens_per_s between them. Here:
- the sleep keeps to a timeline (token i leaves at start + i/rate, catching up after a late
  wakeup) so that 2,000 tokens/s is 2,000 tokens/s, not what asyncio's timer granularity makes of it;
- each token's send time (monotonic) is kept; `GET /bench/sends` answers them for the last reply;
- `POST /bench/reply {"tokens": N, "rate": R|null}` sets the next reply (Markdown from
  _chat_common.reply_text, cut to N tokens) and its pace.
- unpaced ("max speed"), the reply's NDJSON lines are made when it is set and written in
  64 KiB chunks: made per token while sending, with a write and drain per line, the fake
  itself tops out near 20,000 tokens/s (about what one client reads), and a benchmark of how
  fast the console absorbs a stream would measure the server instead.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _chat_common import reply_text


class Pacer:
    """`sleep(1/rate)` that keeps to a timeline rather than adding up late wakeups."""

    def __init__(self) -> None:
        self.next: float | None = None

    def restart(self) -> None:
        self.next = None

    async def sleep(self, seconds: float) -> None:
        now = time.monotonic()
        if self.next is None:
            self.next = now
        self.next += seconds
        await asyncio.sleep(max(0.0, self.next - now))  # 0: yield, the writes go out


def make_server():
    from aiconsole.demo.httpserver import Response
    from aiconsole.demo.ollama_api import FakeOllama
    from aiconsole.demo.ollama_library import SEED_MODELS
    from aiconsole.demo.ollama_wire import ndjson, tokens

    class BenchOllama(FakeOllama):
        def __init__(self) -> None:
            self.pacer = Pacer()
            self.sends: list[float] = []
            super().__init__(sleep=self.pacer.sleep, tokens_per_s=None)
            self.router.add("POST", "/bench/reply", self._configure)
            self.router.add("GET", "/bench/sends", self._sends)
            self.router.add("POST", "/api/chat", self._chat)  # before FakeOllama's own (routes match in order)
            self.router._routes.insert(0, self.router._routes.pop())
            self.prebuilt: list[bytes] | None = None

        def _frame(self, kind, asked, text, done=None, **extra):  # type: ignore[override]
            if text:
                self.sends.append(time.monotonic())
            return super()._frame(kind, asked, text, done, **extra)

        async def _configure(self, request) -> Response:
            body = request.json()
            self.reply_text = reply_text(int(body["tokens"]))
            self.tokens_per_s = body.get("rate")
            self.pacer.restart()
            self.sends = []
            self.prebuilt = None if self.tokens_per_s else self._lines()
            return Response(200, {"ok": True})

        def _lines(self) -> list[bytes]:
            model = SEED_MODELS[0]
            pieces = tokens(self.reply_text)
            lines = [ndjson(self._frame("chat", model, piece)) for piece in pieces]
            self.sends = []  # _frame noted these: the real send times come when they are written
            done = self._frame("chat", model, "", done="stop", eval_count=len(pieces), eval_duration=10**9)
            return [*lines, ndjson(done)]

        async def _chat(self, request) -> Response:
            if self.prebuilt is None:
                return await self._infer("chat", request)
            return Response(200, self._chunks(self.prebuilt), {"Content-Type": "application/x-ndjson"})

        async def _chunks(self, lines: list[bytes]):
            chunk: list[bytes] = []
            size = 0
            for line in lines:
                chunk.append(line)
                size += len(line)
                if size >= 65536 or line is lines[-1]:
                    self.sends += [time.monotonic()] * (len(chunk) - (line is lines[-1]))
                    yield b"".join(chunk)
                    chunk, size = [], 0

        async def _sends(self, request) -> Response:
            return Response(200, self.sends)

    return BenchOllama()


async def serve() -> None:
    from aiconsole.demo.ollama_library import SEED_MODELS

    async with make_server() as fake:
        print(fake.url, SEED_MODELS[0], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes


if __name__ == "__main__":
    asyncio.run(serve())
