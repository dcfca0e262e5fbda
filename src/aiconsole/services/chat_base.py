"""What every chat backend shares: the reply it streams, and the one error it raises.

    async with backend.reply(model, messages) as reply:
        async for piece in reply:      # str pieces of the answer, as they arrive
            ...
    reply.stats                        # ReplyStats: TTFT, tokens, tokens/s, done_reason

Leaving the block early (cancel, `esc`) closes the HTTP request, so the server stops
generating; `stats.done_reason` is then "cancelled". Every failure inside the block is a
`ChatError` whose text is the server's own message (sanitised) or says plainly what went
wrong. Pieces are the server's text as sent: the screen sanitises, the history keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from aiconsole.domain.sanitize import sanitize_line

__all__ = ["DEFAULT_TIMEOUTS", "ChatError", "ChatTimeouts"]


@dataclass(frozen=True)
class ChatTimeouts:
    connect_s: float = 5.0
    read_s: float = 120.0
    """Nothing new for this long ends the reply: a server loading a 10 GB model into VRAM, or
    thinking about a long prompt, can be quiet for a minute before its first token."""
    write_s: float = 10.0

    def httpx(self, *, per_read: bool = True) -> httpx.Timeout:
        """httpx's timeouts; `per_read=False` leaves reads to a `StallWatch` (cheaper per chunk)."""
        read = self.read_s if per_read else None
        return httpx.Timeout(connect=self.connect_s, read=read, write=self.write_s, pool=self.connect_s)


DEFAULT_TIMEOUTS = ChatTimeouts()


class ChatError(Exception):
    """A chat request failed; `str()` is one sanitised line. `retryable`: sending again may
    work (server down, slow, cut off); `status`: the HTTP status when there was one."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(sanitize_line(message))
        self.retryable = retryable
        self.status = status
