"""The `[chat]` section: where the chat tab opens, `auto` routing rules and personas.

    [chat]
    model = "auto"                      # or a model name
    fallback_model = "llama3.1:8b"      # auto's answer when no rule matches
    [[chat.route]]                      # tried in order; the first that matches wins
    name = "code"
    model = "deepseek-coder-v2:16b"
    code = true
    [[chat.persona]]
    name = "editor"
    system = "You are the editorial assistant of a technical blog..."

Leaving `route` or `persona` out keeps the defaults below (the operator's table and
their editorial assistant); writing any replaces the whole list.
"""

# No `from __future__ import annotations`: see config.py.
from typing import Self

from pydantic import Field, field_validator, model_validator

from aiconsole.config_fields import NonBlank, Section, Slug

EDITOR_PROMPT = """\
You are the editorial assistant of a technical blog about running AI models on one's own GPUs.
You help draft and tighten posts, propose titles, review style (clear, concrete, no hype),
suggest tags and a two-sentence excerpt, and translate between French and English keeping
technical terms exact. Answer in the language of the request unless asked to translate.
Keep Markdown formatting; mark your suggestions so the author can accept or reject each."""


class RouteConfig(Section):
    name: Slug
    """Shown on the routing badge ("auto: code")."""
    model: NonBlank
    """The model that answers when this rule matches."""
    code: bool = False
    """Matches messages that look like a programming question (code fences, code words, symbols)."""
    max_words: int | None = Field(default=None, ge=1)
    """Matches messages of at most this many words (quick questions)."""
    keywords: list[NonBlank] = Field(default_factory=list)
    """Matches messages containing any of these words (case-insensitive)."""


class PersonaConfig(Section):
    name: Slug
    """Chosen in the chat tab and with `aiconsole chat --persona NAME`."""
    system: NonBlank
    """The system prompt sent first in every chat with this persona."""
    description: str = ""
    """One line shown next to the name when choosing."""


def _default_routes() -> list[RouteConfig]:
    return [
        RouteConfig(name="code", model="deepseek-coder-v2:16b", code=True),
        RouteConfig(name="quick", model="mistral:7b", max_words=12),
    ]


def _default_personas() -> list[PersonaConfig]:
    return [
        PersonaConfig(
            name="editor",
            system=EDITOR_PROMPT,
            description="Editorial assistant: drafts, titles, style, tags, FR↔EN",
        )
    ]


class ChatConfig(Section):
    vm: Slug | None = None
    """The VM the chat tab opens on; None: the first VM with an ollama or openai service."""
    service: Slug | None = None
    """Which of that VM's model servers; None: its first ollama or openai service."""
    model: NonBlank = "auto"
    """The model chats start with: a model name, or ``auto`` to route each message by `route`."""
    fallback_model: NonBlank = "llama3.1:8b"
    """What ``auto`` picks when no rule matches: the general model."""
    route: list[RouteConfig] = Field(default_factory=_default_routes)
    """``auto`` routing rules (TOML ``[[chat.route]]``), tried in order."""
    persona: list[PersonaConfig] = Field(default_factory=_default_personas)
    """System prompts to chat with (TOML ``[[chat.persona]]``)."""
    default_persona: Slug | None = None
    """The persona new chats start with; None: no system prompt."""
    history: bool = True
    """Keep chats in the history database (data dir, ``chats.sqlite3``) to browse and resume."""
    start_on_demand: bool = True
    """Offer to start a stopped VM when a message is sent to it (showing its $/h)."""
    ready_timeout_s: float = Field(default=600.0, ge=10, le=3600)
    """After starting a VM for a message: how long to wait for it and its model server."""

    @field_validator("route", "persona")
    @classmethod
    def _unique_names(cls, items: list[RouteConfig] | list[PersonaConfig]) -> list:
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                raise ValueError(f"names must be unique; repeated: {item.name}")
            seen.add(item.name)
        return items

    @model_validator(mode="after")
    def _known_default_persona(self) -> Self:
        names = [persona.name for persona in self.persona]
        if self.default_persona is not None and self.default_persona not in names:
            known = ", ".join(names) or "none defined"
            raise ValueError(f"default_persona {self.default_persona!r} is not a [[chat.persona]] ({known})")
        return self

    def persona_named(self, name: str) -> PersonaConfig | None:
        return next((persona for persona in self.persona if persona.name == name), None)
