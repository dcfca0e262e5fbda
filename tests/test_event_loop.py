"""The console's loop (services/event_loop.py): socket wakeups spaced `gap` apart; timers,
thread-safe calls (keyboard input arrives that way) and a quiet loop's first read not delayed.

The gap here is 0.5 s so that the checks hold with wide margins on a slow, busy machine."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from aiconsole.services import event_loop

pytestmark = pytest.mark.skipif(not hasattr(event_loop, "CoalescingSelector"), reason="epoll only")

GAP = 0.5


class CountingSelector(event_loop.CoalescingSelector if hasattr(event_loop, "CoalescingSelector") else object):
    polls = 0
    """Polls that found something ready (a loop also polls with timeout 0 between its steps)."""

    def select(self, timeout=None):
        ready = super().select(timeout)
        self.polls += bool(ready)
        return ready


def _loop(selector_type=None) -> tuple[asyncio.AbstractEventLoop, object]:
    selector = (selector_type or event_loop.CoalescingSelector)(GAP)
    loop = asyncio.SelectorEventLoop(selector)
    for key in list(selector.get_map().values()):
        selector.wake_at_once(key.fd)
    return loop, selector


def _run(main, selector_type=None):
    loop, selector = _loop(selector_type)
    try:
        return loop.run_until_complete(main(loop)), selector
    finally:
        loop.close()


def _wakeup_now(loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """A future done on the next loop iteration: awaiting it makes the loop wake up now."""
    future = loop.create_future()
    loop.call_soon(future.set_result, time.monotonic())
    return future


def _send_later(sock: socket.socket, data: bytes, delay: float) -> list[float]:
    """Send from a thread after `delay` (the loop is waiting by then); returns [when sent]."""
    sent: list[float] = []

    def send() -> None:
        sent.append(time.monotonic())
        sock.send(data)

    threading.Timer(delay, send).start()
    return sent


def test_new_event_loop_is_the_coalescing_one_and_run_returns_the_result() -> None:
    loop = event_loop.new_event_loop()
    try:
        assert isinstance(loop._selector, event_loop.CoalescingSelector)
    finally:
        loop.close()

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert event_loop.run(answer()) == 42


def test_socket_data_right_after_a_wakeup_waits_for_the_gap() -> None:
    async def main(loop):
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            woke = await _wakeup_now(loop)
            _send_later(right, b"round", 0.05)  # while the loop waits, soon after it woke
            data = await loop.sock_recv(left, 100)
            return data, time.monotonic() - woke

    (data, waited), _ = _run(main)
    assert data == b"round"
    assert waited >= GAP * 0.8


def test_a_quiet_loop_reads_at_once() -> None:
    async def main(loop):
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            sent = _send_later(right, b"reply", GAP * 1.5)  # after a quiet spell longer than the gap
            data = await loop.sock_recv(left, 100)
            return data, time.monotonic() - sent[0]

    (data, waited), _ = _run(main)
    assert data == b"reply"
    assert waited < GAP * 0.5


def test_timers_are_not_held() -> None:
    async def main(loop):
        await _wakeup_now(loop)
        started = time.monotonic()
        await asyncio.sleep(0.05)
        return time.monotonic() - started

    waited, _ = _run(main)
    assert waited < GAP * 0.5


def test_a_thread_safe_call_ends_the_hold_at_once() -> None:
    """Textual's input thread hands keys over this way: a key press is never held."""

    async def main(loop):
        left, right = socket.socketpair()
        with left, right:
            left.setblocking(False)
            await _wakeup_now(loop)
            right.send(b"x")  # a socket ready during the hold: the loop is now holding
            key = loop.create_future()
            sent = time.monotonic()
            threading.Timer(0.05, lambda: loop.call_soon_threadsafe(key.set_result, time.monotonic())).start()
            await key
            return time.monotonic() - sent

    waited, _ = _run(main)
    assert waited < GAP * 0.5


def test_sockets_ready_during_a_hold_are_read_in_one_wakeup() -> None:
    async def main(loop):
        pairs = [socket.socketpair() for _ in range(10)]
        try:
            for left, _ in pairs:
                left.setblocking(False)
            await _wakeup_now(loop)
            polls_before = loop._selector.polls
            readers = [loop.create_task(loop.sock_recv(left, 100)) for left, _ in pairs]

            def send_one_by_one() -> None:  # 10 rounds over 0.2 s, like VMs at their own moments
                for index, (_, right) in enumerate(pairs):
                    right.send(b"%d" % index)
                    time.sleep(0.02)

            sender = threading.Thread(target=send_one_by_one)
            sender.start()
            received = await asyncio.gather(*readers)
            sender.join()
            return received, loop._selector.polls - polls_before
        finally:
            for left, right in pairs:
                left.close()
                right.close()

    (received, polls), _ = _run(main, CountingSelector)
    assert received == [b"%d" % index for index in range(10)]
    assert polls <= 4  # the held wakeups read several at a time (a stock loop wakes for each)
