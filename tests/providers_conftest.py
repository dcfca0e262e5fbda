"""Helpers shared by the provider tests (imported by name; tests/conftest.py is the lead's)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

# An instance name as a hostile API could send it: an OSC that retitles the terminal,
# a BEL, and Rich/Textual markup (kept as literal text; escaped at render time).
HOSTILE_NAME = "\x1b]0;pwn\x07[bold red]x[/]\x1b[2J\x9b31m"
HOSTILE_NAME_SHOWN = "[bold red]x[/]"


class FakeClock:
    """Virtual time shared by a fake API and a provider: sleeping moves it on at once.

    Pass `clock=fake_clock` and `sleep=fake_clock.sleep` to both sides and a start that
    takes minutes of API time runs in milliseconds, deterministically.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []
        self.before_sleep: Callable[[], Awaitable[None]] | None = None
        """Runs at each sleep: lets a test look at the provider mid-operation, as the fleet does."""

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if self.before_sleep is not None:
            await self.before_sleep()
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def unused_loopback_url() -> str:
    """A URL on which nothing listens, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def has_no_control_chars(text: str) -> bool:
    return not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)
