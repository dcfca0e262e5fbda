"""domain/chat_routing.py: the operator's routing table, and rules from the config."""

from __future__ import annotations

import pytest

from aiconsole.domain.chat_routing import RouteRule, code_reason, route


@pytest.mark.parametrize(
    ("text", "model", "rule"),
    [
        ("Write a Python function that parses nvidia-smi CSV output into a dict per GPU.", "deepseek-coder-v2:16b", "code"),
        ("```\nTraceback (most recent call last):\n  KeyError: 'gpu'\n```\nwhat now?", "deepseek-coder-v2:16b", "code"),
        ("why does for (i = 0; i < n; i++) { sum += a[i]; } overflow", "deepseek-coder-v2:16b", "code"),
        ("Why does `sorted(d)` return only the keys?", "deepseek-coder-v2:16b", "code"),  # inline code
        ("what does round(2.5) give", "deepseek-coder-v2:16b", "code"),  # a call, not prose
        ("capital of Australia?", "mistral:7b", "quick"),
        ("How many tokens is a page of text, roughly?", "mistral:7b", "quick"),
        (
            (
                "Draft three titles and an excerpt for a blog post about renting GPUs by the hour "
                "for fine-tuning, and keep the tone friendly but precise."
            ),
            "llama3.1:8b",
            "default",
        ),
    ],
)
def test_the_operators_table(text, model, rule) -> None:
    decision = route(text)
    assert (decision.model, decision.rule) == (model, rule)
    assert decision.reason


def test_a_short_code_question_goes_to_the_code_model_first() -> None:
    decision = route("fix this regex?")  # 3 words, but code: the code rule comes first
    assert decision.rule == "code" and decision.reason == "mentions 'regex'"


def test_rules_from_the_config_are_tried_in_order() -> None:
    rules = (
        RouteRule("translate", "llama3.1:8b", keywords=("translate", "traduire")),
        RouteRule("quick", "mistral:7b", max_words=5),
    )
    assert route("Traduire ce paragraphe en anglais", rules, "x").rule == "translate"
    assert route("Traduire ce paragraphe en anglais", rules, "x").reason == "mentions 'traduire'"
    assert route("what time is it", rules, "general").model == "mistral:7b"
    fallback = route("a longer message that matches nothing at all here", rules, "general")
    assert (fallback.model, fallback.rule, fallback.reason) == ("general", "default", "no rule matched")


def test_every_condition_of_a_rule_must_hold() -> None:
    rule = RouteRule("short-code", "m", code=True, max_words=4)
    assert rule.matches("debug this loop") == "mentions 'debug'; 3 words ≤ 4"
    assert rule.matches("please help me debug this long loop today") is None
    assert rule.matches("hello") is None
    assert RouteRule("any", "m").matches("anything") == "always"


@pytest.mark.parametrize(
    "text", ["Tell me about the history of Lyon.", "Titles for a post on budgets?", "A trip (in May) to Rome?", ""]
)
def test_plain_prose_is_not_code(text) -> None:
    assert code_reason(text) is None
