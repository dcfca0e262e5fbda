"""A chat as the history keeps it. Pure: no I/O, no clock (times are passed in).

- `StoredMessage`: one turn, with which model answered, why (auto routing), its figures
  and why it failed, if it did;
- `ChatSummary`: one row of the history list;
- `StoredChat`: a summary and its turns; `history()` is what a resumed chat sends back;
- `title_from`: the title a chat takes from its first user message.

Content is the original text, byte for byte (escape sequences, bidi controls, markup and
all): a resumed chat must send the model exactly what it saw, so the screen and the export
clean what they show and the history keeps what was said. (services/chat_history.py stores
these; they live here so the pure export in domain/chat_export.py can take them.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from aiconsole.domain.chat import ChatMessage, ReplyStats, Role
from aiconsole.domain.chat_routing import RouteDecision
from aiconsole.domain.cost import require_aware
from aiconsole.domain.sanitize import sanitize

ROLES: tuple[str, ...] = get_args(Role)
TITLE_MAX_CHARS = 80


@dataclass(frozen=True)
class StoredMessage:
    role: Role
    content: str
    """The original text as typed or received, never sanitised."""
    at: datetime
    """When it was sent (user) or finished (assistant); timezone-aware."""
    model: str = ""
    """Which model answered (assistant turns)."""
    route_rule: str = ""
    """The `auto` routing rule that chose the model, when `auto` chose it."""
    route_reason: str = ""
    stats: ReplyStats | None = None
    error: str = ""
    """Why the reply failed; "" when it did not."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        require_aware(self.at, "at")

    @property
    def stopped(self) -> bool:
        """The operator stopped this reply before it finished."""
        return self.stats is not None and self.stats.done_reason == "cancelled"

    def as_chat_message(self) -> ChatMessage:
        return ChatMessage(self.role, self.content)

    @classmethod
    def reply(cls, text: str, at: datetime, decision: RouteDecision, stats: ReplyStats | None,
              error: str = "") -> StoredMessage:  # fmt: skip
        """An assistant turn: the model that answered, and the routing rule and reason only
        when `auto` chose it (a model picked by hand has no rule)."""
        rule, reason = (decision.rule, decision.reason) if decision.rule else ("", "")
        return cls("assistant", text, at, decision.model, rule, reason, stats, error)


@dataclass(frozen=True)
class ChatSummary:
    id: int
    title: str
    """"" until the first user message names the chat (or the operator does)."""
    vm: str
    service: str
    model: str
    """The chat's setting: a model name or "auto"; each reply records the model that answered."""
    persona: str
    """"" for none."""
    created_at: datetime
    updated_at: datetime
    """When the latest message was added (never moved back by an older one)."""
    messages: int


@dataclass(frozen=True)
class StoredChat:
    summary: ChatSummary
    messages: tuple[StoredMessage, ...]
    """In the order they were added."""

    def history(self) -> list[ChatMessage]:
        """The turns to send back to a model to resume the chat.

        An assistant turn with no text (failed or stopped before its first token) is left
        out: it tells the model nothing, and some servers refuse an empty assistant turn.
        A reply cut off part-way keeps the text the operator saw.
        """
        return [m.as_chat_message() for m in self.messages if m.role != "assistant" or m.content]


def title_from(text: str) -> str:
    """The first line that has any text, sanitised, whitespace-folded, cut to 80 characters.

    Unlike message content, a title is derived, not said: it is cleaned here so that escape
    sequences neither spend its 80 characters nor get cut in half.
    """
    for line in sanitize(text).splitlines():
        folded = " ".join(line.split())
        if folded:
            return folded if len(folded) <= TITLE_MAX_CHARS else folded[: TITLE_MAX_CHARS - 1] + "…"
    return ""
