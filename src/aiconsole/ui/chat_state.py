"""The Chat tab's state, apart from its widgets: options, the conversation, the live reply.

Plain data and functions the pane uses (ui/chat_pane.py); kept here so the pane holds
only what drives the screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiconsole.domain.chat import ChatMessage
from aiconsole.domain.chat_routing import RouteDecision

if TYPE_CHECKING:
    from aiconsole.domain.chat_history import StoredMessage
    from aiconsole.services.chat_history import ChatHistory
    from aiconsole.services.chat_service import ChatTarget


@dataclass(frozen=True)
class ChatPaneOptions:
    """The `[chat]` section, as the tab uses it."""

    vm: str | None = None
    service: str | None = None
    model: str = "auto"
    persona: str | None = None
    personas: tuple[tuple[str, str], ...] = ()
    """(name, description) of each persona, for the setup dialog."""

    @classmethod
    def of(cls, settings: object) -> ChatPaneOptions:
        chat = settings.chat  # type: ignore[attr-defined]
        personas = tuple((p.name, p.description) for p in chat.persona)
        return cls(chat.vm, chat.service, chat.model, chat.default_persona, personas)


@dataclass
class Conversation:
    """The chat on screen: where it goes, its turns, and its row in the history."""

    target: ChatTarget | None = None
    model: str = "auto"
    persona: str | None = None
    turns: list[ChatMessage] = field(default_factory=list)
    chat_id: int | None = None


@dataclass
class LiveReply:
    """The moments of the reply streaming now, for the status line (the stats come at its
    end; the pieces so far are the transcript's count)."""

    model: str
    sent_at: float
    first_at: float | None = None


def live_status(live: LiveReply, pieces: int, now: float) -> str:
    """The status line while a reply streams: "▶ model · TTFT 0.31 s · ~48.2 tokens/s · 312 tokens"."""
    parts = [f"▶ {live.model}"]
    if live.first_at is None:
        parts.append(f"waiting {now - live.sent_at:.1f} s")
    else:
        parts.append(f"TTFT {live.first_at - live.sent_at:.2f} s")
        if now > live.first_at and pieces > 1:
            parts.append(f"~{(pieces - 1) / (now - live.first_at):.1f} tokens/s")
        parts.append(f"{pieces} tokens")
    parts.append("esc: stop")
    return " · ".join(parts)


def store_turn(history: ChatHistory, chat: Conversation, message: StoredMessage) -> None:
    """One turn into the history (the original text), creating the chat's row on its first turn."""
    target = chat.target
    assert target is not None
    if chat.chat_id is None:
        chat.chat_id = history.new_chat(
            vm=target.vm, service=target.service, model=chat.model, persona=chat.persona or "", at=message.at
        )
    history.add_message(chat.chat_id, message)


def reply_header(decision: RouteDecision) -> str:
    """The reply's header: the model, and the routing badge when `auto` chose it."""
    model = decision.model or "model"
    if decision.rule:
        return f"{model} ← auto: {decision.rule} ({decision.reason})"
    return model
