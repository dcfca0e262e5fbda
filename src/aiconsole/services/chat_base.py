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

from aiconsole.domain.sanitize import sanitize_line

__all__ = ["ChatError"]


class ChatError(Exception):
    """A chat request failed; `str()` is one sanitised line. `retryable`: sending again may
    work (server down, slow, cut off); `status`: the HTTP status when there was one."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(sanitize_line(message))
        self.retryable = retryable
        self.status = status
