"""A loopback fake served from a thread of its own, for tests that call `main()` (which runs
its own event loop) or start subprocesses: both must reach the fake while it answers."""

from __future__ import annotations

import asyncio
import threading
from typing import Generic, Protocol, TypeVar


class _Serving(Protocol):
    async def start(self) -> object: ...
    async def close(self) -> None: ...


F = TypeVar("F", bound=_Serving)


class ThreadedFake(Generic[F]):
    """`with ThreadedFake(FakeTensorDock(...)) as fake:` serves `fake` until the block ends."""

    def __init__(self, fake: F) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> F:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        return self.fake

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
