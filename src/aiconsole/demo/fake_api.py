"""`FakeApi`: what every loopback imitation of an outside API shares.

A fake owns a `LoopbackHttpServer`, a `Router` for its paths, a `FaultPlan` that
tests use to inject failures (5xx, garbled bodies, delays, dropped connections),
and a log of the requests it received. Subclasses add routes and their own state.
"""

from __future__ import annotations

from typing import Self

from aiconsole.demo.faults import FaultPlan
from aiconsole.demo.httpserver import LoopbackHttpServer, Request, Response, Router


class FakeApi:
    ROOT = ""
    """The path prefix of the API (e.g. ``/api/v2``); `url` includes it."""

    def __init__(self) -> None:
        self.faults = FaultPlan()
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request received, faulted ones included."""
        self.router = Router()
        self._faulty = self.faults.wrap(self.serve)
        self.server = LoopbackHttpServer(self.handle)

    @property
    def url(self) -> str:
        """The API root to give a client, e.g. `http://127.0.0.1:PORT/api/v2`."""
        return self.server.url + self.ROOT

    async def start(self) -> Self:
        await self.server.start()
        return self

    async def close(self) -> None:
        await self.server.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.path))
        return await self._faulty(request)

    async def serve(self, request: Request) -> Response:
        """Answer a request that no fault intercepted; subclasses check auth etc. first."""
        return await self.router(request)
