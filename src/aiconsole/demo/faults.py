"""Fault injection for the fake APIs: the next requests fail, stall, drop or get a bad body.

    fake.faults.fail_next(503)                     # next answer is a 503
    fake.faults.fail_next(429, headers={"Retry-After": "7"}, times=2)
    fake.faults.delay_next(2.0)                    # stall, then answer normally
    fake.faults.drop_next()                        # cut the connection, no answer
    fake.faults.garble_next(body=b"<html>")        # 200 with a body the client can't use

Faults are played in the order they were planned, one per request, whatever the path.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from aiconsole.demo.httpserver import Body, DropConnection, Handler, Request, Response, status_phrase


@dataclass
class _Fault:
    response: Response | None = None
    delay: float = 0.0
    drop: bool = False


class FaultPlan:
    """Faults to play on the next requests; `wrap(handler)` puts the plan in front of a handler."""

    def __init__(self) -> None:
        self._queue: deque[_Fault] = deque()

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        body: Body = None,
        headers: dict[str, str] | None = None,
        reason: str = "",
    ) -> None:
        body = {"error": status_phrase(status)} if body is None else body
        self._queue.extend(_Fault(Response(status, body, dict(headers or {}), reason)) for _ in range(times))

    def garble_next(self, times: int = 1, body: Body = b"<html><body>Bad Gateway</body></html>") -> None:
        """Answer 200 with a body the client cannot use (not JSON, or JSON of the wrong shape)."""
        json_type = {"Content-Type": "application/json"}
        self._queue.extend(_Fault(Response(200, body, dict(json_type))) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Stall, then answer normally (`delay_next(0)` lets one request through untouched)."""
        self._queue.extend(_Fault(delay=seconds) for _ in range(times))

    def drop_next(self, times: int = 1) -> None:
        self._queue.extend(_Fault(drop=True) for _ in range(times))

    def clear(self) -> None:
        """Drop the faults not played yet: the service is healthy again."""
        self._queue.clear()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def wrap(self, handler: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            fault = self._queue.popleft() if self._queue else None
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)  # real time: it is the client's timeout under test
                if fault.drop:
                    raise DropConnection()
                if fault.response is not None:
                    return fault.response
            return await handler(request)

        return handle
