"""`auto` model routing: which model answers a message, and which rule chose it. Pure.

The operator's table (FLEET.md): code questions go to the code model (deepseek-coder-v2),
quick short questions to the fast model (mistral 7B), the rest to the general model
(llama3.1 8B). Rules are tried in order; the first that matches wins; none matching
means the fallback model. The decision says which rule chose and why, for the badge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CODE_FENCE = re.compile(r"```|^ {4}\S", re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_CODE_WORDS = re.compile(
    r"\b(code|function|def|class|method|bug|debug|error|exception|traceback|stack ?trace|compile|"
    r"refactor|regex|sql|query|script|python|rust|javascript|typescript|golang|bash|shell|"
    r"api|json|yaml|dict|dockerfile|unit ?test|pytest|import|variable|loop|recursion)\b",
    re.IGNORECASE,
)
# `f(x)` (a call: no space before the parenthesis, unlike prose), `a == b`, `x[i]`, `=>`...
_CODE_SYMBOLS = re.compile(r"[{}]|;\s*$|\w+\([^()\s][^()]*\)|\w+\(\)|\+\+|[!=<>+*/-]=|\w\[\w*\]|=>|->|::|#include|</?\w+>", re.MULTILINE)


@dataclass(frozen=True)
class RouteRule:
    name: str
    model: str
    code: bool = False
    """Matches messages that look like a programming question (fences, code words, symbols)."""
    max_words: int | None = None
    """Matches messages of at most this many words (quick questions)."""
    keywords: tuple[str, ...] = ()
    """Matches messages containing any of these words (case-insensitive)."""

    def matches(self, text: str) -> str | None:
        """Why this rule matches `text`, or None. Every condition set must hold."""
        reasons: list[str] = []
        if self.code:
            why = code_reason(text)
            if why is None:
                return None
            reasons.append(why)
        if self.max_words is not None:
            words = len(text.split())
            if words > self.max_words:
                return None
            reasons.append(f"{words} words ≤ {self.max_words}")
        if self.keywords:
            lowered = text.lower()
            hit = next((k for k in self.keywords if re.search(rf"\b{re.escape(k.lower())}\b", lowered)), None)
            if hit is None:
                return None
            reasons.append(f"mentions {hit!r}")
        return "; ".join(reasons) if reasons else "always"


@dataclass(frozen=True)
class RouteDecision:
    model: str
    rule: str
    """The rule's name, or "default" when none matched."""
    reason: str


DEFAULT_RULES = (
    RouteRule("code", "deepseek-coder-v2:16b", code=True),
    RouteRule("quick", "mistral:7b", max_words=12),
)
DEFAULT_MODEL = "llama3.1:8b"


def route(text: str, rules: tuple[RouteRule, ...] = DEFAULT_RULES, fallback: str = DEFAULT_MODEL) -> RouteDecision:
    """The first rule matching the message, else the fallback (the general model)."""
    for rule in rules:
        reason = rule.matches(text)
        if reason is not None:
            return RouteDecision(rule.model, rule.name, reason)
    return RouteDecision(fallback, "default", "no rule matched")


def code_reason(text: str) -> str | None:
    """Why `text` reads as a programming question, or None."""
    if _CODE_FENCE.search(text):
        return "contains code"
    if _INLINE_CODE.search(text):
        return "contains inline code"
    if _CODE_SYMBOLS.search(text):
        return "code-like symbols"
    word = _CODE_WORDS.search(text)
    if word:
        return f"mentions {word.group(0).lower()!r}"
    return None
