"""A stored chat as a Markdown document, and a safe name for its file. Pure.

The database keeps each message's original text; only display and export are cleaned.
An export is a file the operator may `cat` in a terminal, so every piece of text in it
passes `sanitize` (escape sequences and control characters removed, newlines and tabs
kept), and a lone surrogate, which UTF-8 cannot hold, becomes U+FFFD.

The document's structure is ours, whatever a reply holds. A reply cannot forge a turn:
its own headings are demoted two levels (`# x` → `### x`, `## x` → `#### x`) and a setext
underline (`===`, `---` under a line) is parted from its line, so `# <title>` and
`## <speaker>` are the only headings at those levels. Nor can it swallow the turns after
it: a code fence or an HTML block of the kinds that run to their end marker (`<pre>`,
`<script>`, `<!--`, …) still open when the turn ends (a stopped reply, often) is closed
there. Blocks are followed as CommonMark does at the top level; one opened inside a list
item or quote is closed at its own indentation, which is where such a block is closed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import tzinfo

from aiconsole.domain.chat import stats_line
from aiconsole.domain.chat_history import ChatSummary, StoredChat, StoredMessage
from aiconsole.domain.sanitize import sanitize, sanitize_line

SLUG_MAX_CHARS = 40
HEADING_DEMOTION = 2

_FENCE_OPEN = re.compile(r"(?P<indent> {0,3})(?P<fence>`{3,}(?=[^`]*$)|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})[ \t]*")
_ATX_HEADING = re.compile(r"(?P<indent> {0,3})(?P<hashes>#{1,6})(?=[ \t]|$)")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(?:=+|-+)[ \t]*")
# CommonMark's HTML blocks 1-5, which end only at their marker (or the end of the document).
_HTML_BLOCKS = (
    (re.compile(r" {0,3}<(pre|script|style|textarea)(?=[\s>]|$)", re.IGNORECASE), None),
    (re.compile(r" {0,3}<!--"), "-->"),
    (re.compile(r" {0,3}<\?"), "?>"),
    (re.compile(r" {0,3}<!\[CDATA\["), "]]>"),
    (re.compile(r" {0,3}<![A-Za-z]"), ">"),
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_INLINE_SPECIAL = re.compile(r"([\\`*\[<])")


@dataclass(frozen=True)
class _Open:
    """A block still open: the line that closes it, and how to test a line for it."""

    closer: str
    fence: str = ""  # for a code fence: its character run (a closer is at least as long)
    end_marker: str = ""  # for an HTML block: the text whose presence ends it

    def closed_by(self, line: str) -> bool:
        if self.fence:
            match = _FENCE_CLOSE.fullmatch(line)
            return bool(match) and match["fence"][0] == self.fence[0] and len(match["fence"]) >= len(self.fence)
        return self.end_marker in line.lower()


def chat_markdown(chat: StoredChat, tz: tzinfo) -> str:
    """The chat as Markdown: title, where it ran, then each turn with its speaker and figures."""
    summary = chat.summary
    blocks = [f"# {_inline(summary.title) or f'Chat {summary.id}'}", _about(summary, tz)]
    for message in chat.messages:
        blocks += _turn(message, summary.model)
    return "\n\n".join(blocks) + "\n"


def _about(summary: ChatSummary, tz: tzinfo) -> str:
    created = summary.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z").strip()
    parts = [f"VM {_inline(summary.vm)}", f"service {_inline(summary.service)}", f"model {_inline(summary.model)}"]
    if summary.persona:
        parts.append(f"persona {_inline(summary.persona)}")
    return f"*{' · '.join([*parts, f'created {created}'])}*"


def _turn(message: StoredMessage, chat_model: str) -> list[str]:
    """The turn's blocks: heading, routing, text, failure, figures (those that apply)."""
    body = contained_markdown(message.content)
    if not body and message.role == "assistant" and not message.error:
        body = "*(no reply)*"
    error = f"*failed: {_inline(message.error)}*" if message.error else ""
    blocks = [f"## {_speaker(message, chat_model)}", _route(message), body, error, _figures(message)]
    return [block for block in blocks if block]


def _figures(message: StoredMessage) -> str:
    stats = message.stats
    if message.role != "assistant" or stats is None:
        return ""
    if stats.ttft_s is None and stats.tokens is None and stats.tokens_per_s is None:
        return ""  # nothing measured: "no tokens" would say less than the failure line does
    return f"*{_inline(stats_line(stats))}*"  # done_reason is the server's word: cleaned too


def _speaker(message: StoredMessage, chat_model: str) -> str:
    if message.role == "user":
        return "You"
    if message.role == "system":
        return "System"
    name = _inline(message.model or chat_model) or "Assistant"
    return f"{name} (stopped)" if message.stopped else name


def _route(message: StoredMessage) -> str:
    rule, reason = _inline(message.route_rule), _inline(message.route_reason)
    if not (rule or reason):
        return ""
    chosen = f"routed by rule {rule}" if rule else "routed"
    return f"*{chosen}: {reason}*" if reason else f"*{chosen}*"


def _inline(text: str) -> str:
    """One line of untrusted text inside our own Markdown line: cleaned, folded, and unable to
    open emphasis, code, links or HTML there. (`_` is left alone: model names are full of it,
    and inside a word it emphasises nothing.)"""
    return _INLINE_SPECIAL.sub(r"\\\1", sanitize_line(_SURROGATE.sub("\ufffd", text)))


def contained_markdown(text: str) -> str:
    """`text` sanitised, its headings demoted, and any block left open closed (see the module doc)."""
    out: list[str] = []
    block: _Open | None = None
    for line in sanitize(_SURROGATE.sub("\ufffd", text)).strip("\n").split("\n"):
        if block is not None:
            if block.closed_by(line):
                block = None
        elif (block := _opened_by(line)) is None:
            if out and out[-1].strip() and _SETEXT_UNDERLINE.fullmatch(line):
                out.append("")  # parted from its line, it is a rule or plain text, not a heading
            line = _demoted(line)
        out.append(line)
    if block is not None:
        out.append(block.closer)
    return "\n".join(out).strip("\n")


def _opened_by(line: str) -> _Open | None:
    if fence := _FENCE_OPEN.match(line):
        return _Open(closer=fence["indent"] + fence["fence"], fence=fence["fence"])
    for start, marker in _HTML_BLOCKS:
        if tag := start.match(line):
            end = marker or f"</{tag[1].lower()}>"
            return None if end in line[tag.end() :].lower() else _Open(closer=end, end_marker=end)
    return None


def _demoted(line: str) -> str:
    if heading := _ATX_HEADING.match(line):
        return heading["indent"] + "#" * min(6, len(heading["hashes"]) + HEADING_DEMOTION) + line[heading.end() :]
    return line


def export_filename(summary: ChatSummary) -> str:
    """`chat-<id>-<slug>.md`: ASCII letters, digits and dashes only, so any title makes a safe name."""
    return f"chat-{int(summary.id):d}-{_slug(summary.title)}.md"


def _slug(title: str) -> str:
    # NFKD first, so "Café" gives "cafe" rather than "caf".
    ascii_text = unicodedata.normalize("NFKD", sanitize(title)).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:SLUG_MAX_CHARS].rstrip("-") or "untitled"
