"""Stopping asyncio tasks for sure.

On Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives just as what it
waits for completes (CPython gh-86296, fixed in 3.12), and asyncssh uses `wait_for` in
`connect`, `run(timeout=...)` and `process.wait(timeout=...)`. One `cancel()` can
therefore be lost and an `await task` hang: cancel again until the task has ended.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_until_done(*tasks: asyncio.Task, attempts: int = 50, interval_s: float = 0.2) -> None:
    """Cancel `tasks` (again and again if needed) until all have ended; never raises."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(attempts):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=interval_s)
    log.warning("%d task(s) would not stop: %s", len(pending), [task.get_name() for task in pending])
