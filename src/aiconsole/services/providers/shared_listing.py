"""`SharedListing`: one account-wide listing shared by the providers of that account's VMs.

TensorDock allows ~100 requests a minute per organisation. One `GET /instances/{id}` per
VM per poll caps an account at ~100 VM reads a minute (100 VMs polled every 15 s would
need 400), so the VMs of one account read their power from one `GET /instances` instead.

The rules that keep it honest:
- A listing is reused only while younger than the caller's `max_age`; its age counts from
  when it was asked for, not when it was answered, so it is never younger than it says.
- Callers that arrive while a listing is on its way wait for that one (no thundering herd).
  The request runs in a task of its own, so a cancelled caller does not cancel it for the
  others.
- Every listing has a sequence number, given when it is asked for; a caller passes
  `after=` the last number it must not use. A provider passes the listing it used last (a
  VM reads each listing once: its next poll, or a refresh, asks for a newer one, so one
  round of polls shares one request and nothing is repeated as if new) or, after its own
  read or a start/stop, `sent` (never go back to a listing asked for before that).
- It is shared only when shared by more than one VM (`join`/`leave`): for one VM, its own
  read costs one request as well, and is exact.
- A failed listing is an answer like another: its `ProviderError` is handed to the
  callers that share it, and the provider decides what to do with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiconsole.services.providers.base import ProviderError

T = TypeVar("T")


@dataclass(frozen=True)
class _Round(Generic[T]):
    seq: int
    asked_at: float
    task: asyncio.Task[T | ProviderError]


class SharedListing(Generic[T]):
    """The latest account listing, its age and its sequence number; one request at a time per need."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sent = 0
        self._latest: _Round[T] | None = None
        self._running: set[asyncio.Task] = set()  # asyncio keeps only weak references to tasks
        self._members = 0

    def join(self) -> None:
        """One more VM reads this account (a provider, built)."""
        self._members += 1

    def leave(self) -> None:
        """One VM fewer (a provider, closed)."""
        self._members = max(0, self._members - 1)

    @property
    def shared(self) -> bool:
        """Whether more than one VM reads the account: only then does a listing save requests."""
        return self._members > 1

    @property
    def sent(self) -> int:
        """The sequence number of the last listing asked for (0: none yet)."""
        return self._sent

    async def get(
        self, fetch: Callable[[], Awaitable[T]], *, max_age: float, after: int
    ) -> tuple[int, T | ProviderError, float]:
        """A listing younger than `max_age` with a sequence number above `after`: the latest
        one (answered or on its way) when it qualifies, else a new one made with `fetch`.
        Returns its sequence number, its answer (or the ProviderError it failed with) and its
        age in seconds now, counted from when it was asked for: what it shows is that old."""
        latest = self._latest
        if latest is None or not self._usable(latest, max_age, after):
            latest = self._ask(fetch)
        answer = await asyncio.shield(latest.task)
        return latest.seq, answer, max(0.0, self._clock() - latest.asked_at)

    def _usable(self, latest: _Round[T], max_age: float, after: int) -> bool:
        # A builder outliving one event loop (a CLI command run after another) must not await the old loop's task.
        elsewhere = latest.task.get_loop() is not asyncio.get_running_loop()
        return latest.seq > after and self._clock() - latest.asked_at < max_age and not elsewhere

    def _ask(self, fetch: Callable[[], Awaitable[T]]) -> _Round[T]:
        self._sent += 1
        task = asyncio.ensure_future(_answer_or_error(fetch))
        self._running.add(task)
        task.add_done_callback(_retrieved)
        task.add_done_callback(self._running.discard)
        self._latest = _Round(self._sent, self._clock(), task)
        return self._latest


async def _answer_or_error(fetch: Callable[[], Awaitable[T]]) -> T | ProviderError:
    try:
        return await fetch()
    except ProviderError as error:
        return error


def _retrieved(task: asyncio.Task) -> None:
    # A bug in `fetch` reaches every waiter through shield; with no waiter left (all
    # cancelled) it must not be logged again as "exception was never retrieved".
    if not task.cancelled():
        task.exception()
