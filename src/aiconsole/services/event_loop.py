"""The console's event loop: asyncio's own, with network wakeups coalesced.

Why. With a fleet, data arrives all the time and each piece at its own moment: 100 VMs
each print an nvidia-smi round once a second, at 100 different moments. A stock loop wakes
up for every one of them, and a wakeup costs far more than the few hundred bytes it reads
(the process is scheduled in with cold caches, then polls, dispatches, sleeps again).
Measured with benchmarks/telemetry.py, 100 VMs: 3.1-3.6 % of a core for the SSH side with
a wakeup per round, 2.0 % when wakeups are at least 40 ms apart (the rounds that arrived
meanwhile are all read in one go).

How. `CoalescingSelector.select` first holds until `gap` has passed since the previous
wakeup, then polls as usual. The hold never delays what a person sees or does:
- timers: the hold never runs past the timeout the loop asked for (its next timer), so
  Textual's refreshes and animations and asyncio's `call_later` run on time;
- thread-safe wakeups: the hold watches the loop's own wakeup pipe (registered while the
  loop is built, before any socket) and ends at once when it fires. Keyboard and mouse
  input (Textual reads the terminal in a thread and hands events over thread-safely),
  signals, and results from executor threads (NVML) all arrive through it.
What waits, by at most `gap`, is socket data that arrives within `gap` of the previous
wakeup: network reads are answered a little later but never lost (the kernel keeps them).
A quiet loop (no wakeup within the last `gap`) polls at once, so an isolated reply is
not delayed. Client-side timings of network replies (a chat's time to first token) can
read up to `gap` late while the loop is busy.

Linux only (epoll); elsewhere `new_event_loop` gives asyncio's default loop.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

COALESCE_GAP_S = 0.04
"""The shortest time between two network wakeups. 40 ms: well under what a person notices
on data that refreshes every second; measured, 20 ms saved a third of the wakeup cost
(2.8 % for 100 VMs), 40 ms nearly half (2.0 %), 50 ms more (1.6 %) but close to what a
person starts to notice as lag in a streamed reply."""


if hasattr(selectors, "EpollSelector"):
    import select as _select

    class CoalescingSelector(selectors.EpollSelector):
        """An epoll selector that spaces its wakeups `gap` apart (see the module's docstring).

        Fds passed to `wake_at_once` end a hold immediately; all others wait it out."""

        def __init__(self, gap: float = COALESCE_GAP_S) -> None:
            super().__init__()
            self._gap = gap
            self._last_wakeup = float("-inf")
            self._urgent = _select.epoll()

        def wake_at_once(self, fd: int) -> None:
            """Readiness of `fd` ends a hold (the loop's own wakeup pipe)."""
            self._urgent.register(fd, _select.EPOLLIN)

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is None or timeout > 0:
                hold = self._last_wakeup + self._gap - time.monotonic()
                if hold > 0:
                    if timeout is not None:
                        hold = min(hold, timeout)
                    started = time.monotonic()
                    self._urgent.poll(hold)
                    if timeout is not None:
                        timeout = max(0.0, timeout - (time.monotonic() - started))
            ready = super().select(timeout)
            self._last_wakeup = time.monotonic()
            return ready

        def close(self) -> None:
            self._urgent.close()
            super().close()

    def new_event_loop(gap: float = COALESCE_GAP_S) -> asyncio.AbstractEventLoop:
        """A selector loop whose network wakeups are at least `gap` apart."""
        selector = CoalescingSelector(gap)
        loop = asyncio.SelectorEventLoop(selector)
        # The loop registered only its own wakeup pipe while it was built; make that urgent.
        for key in list(selector.get_map().values()):
            selector.wake_at_once(key.fd)
        return loop

else:  # pragma: no cover - not Linux

    def new_event_loop(gap: float = COALESCE_GAP_S) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the console's loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
