"""`StallWatch`: stop a streaming read that stopped moving, without a timeout on every read.

httpx's read timeout arms a timer around every socket read: on a stream of tens of
thousands of small events a second (a model pull's progress, a chat's tokens) that was
~5 % of reading it. This watch looks every quarter of `idle_s` whether the reader's
`progress()` count moved; when it stood still for four looks in a row (`idle_s`), it
cancels the task that started it. `stop(exc)` then turns that cancel back into a plain
"stalled" (True), so the owner raises its own error; any other cancel stays a cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class StallWatch:
    def __init__(self, progress: Callable[[], int], idle_s: float) -> None:
        self._progress, self.idle_s = progress, idle_s
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stalled = False

    def start(self) -> None:
        """Watch the current task from now."""
        self._task = asyncio.current_task()
        self._look_later(seen=-1, still=0)

    def stop(self, exc: BaseException | None) -> bool:
        """Stop watching; True when the reader was cancelled by this watch (its cancel undone)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stalled and isinstance(exc, asyncio.CancelledError) and self._task is not None:
            self._task.uncancel()
            return True
        return False

    def _look_later(self, seen: int, still: int) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.idle_s / 4, self._look, seen, still)

    def _look(self, seen: int, still: int) -> None:
        now = self._progress()
        still = still + 1 if now == seen else 0
        if still >= 4 and self._task is not None:
            self._stalled = True
            self._task.cancel()
            return
        self._look_later(now, still)
