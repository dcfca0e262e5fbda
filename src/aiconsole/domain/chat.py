"""Chat, as the backends and the chat tab share it. Pure: no I/O, no clock.

- `ChatMessage`: one turn of a conversation (the original text, never sanitised: the
  screen sanitises what it shows, the history stores what was said);
- `ReplyStats`: what a finished (or stopped) reply cost in time and tokens, from the
  server's own counters when it sends them, else from the client's timing;
- `ReplyClock`: folds the moments a reply's pieces arrived into `ReplyStats` (times are
  passed in, seconds on one monotonic clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ReplyStats:
    ttft_s: float | None
    """Time to first token: from sending the request to the first non-empty piece."""
    tokens: int | None
    """Tokens in the reply (the server's count), or pieces received when it sent none."""
    tokens_per_s: float | None
    done_reason: str
    """"stop", "length", "cancelled" (we closed it), "error", or what the server said."""
    prompt_tokens: int | None = None
    counted_by: Literal["server", "client"] = "client"
    """Whose figures these are: the server's counters, or our own timing of the pieces."""
    duration_s: float | None = None
    """From sending the request to the end of the reply."""


@dataclass
class ReplyClock:
    """The moments of one reply; `stats()` turns them into `ReplyStats`."""

    sent_at: float
    first_at: float | None = None
    last_at: float | None = None
    pieces: int = 0

    def piece(self, at: float, text: str) -> None:
        """A piece of the reply arrived (an empty one, as Ollama's last chunk, is not a token)."""
        if not text:
            return
        if self.first_at is None:
            self.first_at = at
        self.last_at = at
        self.pieces += 1

    def stats(
        self, at: float, done_reason: str, *, tokens: int | None = None, eval_s: float | None = None,
        prompt_tokens: int | None = None,
    ) -> ReplyStats:  # fmt: skip
        """At `at` (the end). `tokens`/`eval_s`: the server's own count and generation time
        (Ollama's eval_count/eval_duration; an OpenAI usage chunk gives the count only, so
        its rate is timed here, over first to last piece)."""
        ttft = None if self.first_at is None else self.first_at - self.sent_at
        counted_by: Literal["server", "client"] = "server" if tokens is not None else "client"
        count = tokens if tokens is not None else self.pieces
        rate = None
        if eval_s:
            rate = count / eval_s
        elif self.first_at is not None and self.last_at is not None and self.last_at > self.first_at and count > 1:
            rate = (count - 1) / (self.last_at - self.first_at)  # intervals between tokens
        return ReplyStats(ttft, count, rate, done_reason, prompt_tokens, counted_by, at - self.sent_at)


def with_system_prompt(history: list[ChatMessage] | tuple[ChatMessage, ...], system: str | None) -> list[ChatMessage]:
    """What is sent for a turn: the persona's system prompt first (once), then the turns.

    A system turn already in `history` (a resumed chat) is replaced, so changing persona
    mid-chat changes what the model is told, and the prompt is never sent twice."""
    turns = [message for message in history if message.role != "system"]
    return [ChatMessage("system", system), *turns] if system else turns


def reply_cost_usd(duration_s: float | None, hourly_usd: float) -> float | None:
    """What a reply cost on a VM billed by the hour: its share of the hour it took.

    The VM is billed anyway while it runs; this says what the reply used of it, which is
    what the operator weighs a longer answer or a bigger model against."""
    if duration_s is None or hourly_usd <= 0:
        return None
    return hourly_usd * duration_s / 3600.0


def format_reply_cost(amount: float) -> str:
    """A reply's cost: a tenth of a cent matters here, so small amounts keep four decimals."""
    if 0 < amount < 0.00005:
        return "<$0.0001"
    return f"${amount:.4f}" if amount < 0.01 else f"${amount:.2f}"


def stats_line(stats: ReplyStats, hourly_usd: float = 0.0, *, with_reason: bool = True) -> str:
    """One line of figures, as the chat tab's footer and the CLI's last line show them:
    "TTFT 0.42 s · 312 tokens · 48.1 tokens/s · $0.0010" ("~" marks client-timed figures; the
    cost, at the VM's `hourly_usd`, only for a VM that costs something); then why it ended
    when that was not a plain stop (`with_reason=False`: the caller says it)."""
    cost_usd = reply_cost_usd(stats.duration_s, hourly_usd)
    mark = "" if stats.counted_by == "server" else "~"
    parts = []
    if stats.ttft_s is not None:
        parts.append(f"TTFT {stats.ttft_s:.2f} s")
    if stats.tokens is not None:
        parts.append(f"{mark}{stats.tokens} token{'' if stats.tokens == 1 else 's'}")
    if stats.tokens_per_s is not None:
        parts.append(f"{mark}{stats.tokens_per_s:.1f} tokens/s")
    if cost_usd is not None:
        parts.append(format_reply_cost(cost_usd))
    if with_reason and stats.done_reason not in ("stop", ""):
        parts.append("stopped" if stats.done_reason == "cancelled" else stats.done_reason)
    return " · ".join(parts) if parts else "no tokens"
