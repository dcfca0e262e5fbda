"""Tasks that swallow a cancellation (as asyncio.wait_for can on 3.11) are still stopped."""

from __future__ import annotations

import asyncio

from aiconsole.services.tasks import cancel_until_done


async def test_a_task_that_loses_one_cancel_is_cancelled_again_until_it_ends() -> None:
    swallowed = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            swallowed.append(True)  # like wait_for losing the cancel: carry on
        await asyncio.sleep(10)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_until_done(task, interval_s=0.05)
    assert swallowed == [True] and task.cancelled()


async def test_finished_tasks_and_no_tasks_are_fine() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await cancel_until_done(done)
    await cancel_until_done()
