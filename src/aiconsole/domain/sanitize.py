"""The one sanitiser every piece of untrusted text passes before it reaches a screen.

Rich and Textual pass escape sequences through to the terminal, so text from a
provider, a model or a remote command could move the cursor, retitle the window,
write to the clipboard (OSC 52) or hide itself. We remove every escape sequence
(CSI, OSC, DCS, SOS, PM, APC, and two-byte ESC forms, in 7- and 8-bit forms) and
every control character except newline and tab. Markup is a separate concern:
callers render sanitised text with `markup=False` / `Text(...)`.

`StreamSanitizer` does the same for text that arrives in chunks: a sequence split
across two chunks is held back until it is complete (or provably not a sequence).
"""

from __future__ import annotations

import re

# String-type sequences end at BEL or ST (ESC \ or 8-bit 0x9c). An unterminated one
# at the end of the text swallows the rest: it was never meant to be shown.
_STRING_SEQ = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|\Z)"
_CSI = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
_TWO_BYTE = r"\x1b[ -/]*[0-~]"  # ESC ( B, ESC 7, ESC c, ...
# Controls except \t (09) and \n (0a); \r is dropped too: it can overwrite a line.
_CONTROLS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"

_PATTERN = re.compile("|".join((_STRING_SEQ, _CSI, _TWO_BYTE, _CONTROLS)))

# A chunk tail that could be the beginning of a sequence still arriving.
_INCOMPLETE_TAIL = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*\x1b?\Z"  # string seq, no end yet
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*\Z"  # CSI without its final byte
    r"|\x1b[ -/]*\Z"  # lone ESC (+ intermediates)
)


def sanitize(text: str) -> str:
    """Return `text` with escape sequences and control characters (but \\n, \\t) removed."""
    if not text:
        return ""
    return _PATTERN.sub("", text)


def sanitize_line(text: str, limit: int = 500) -> str:
    """Sanitise and fold to one line, for labels and error messages shown in a row."""
    flat = " ".join(sanitize(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class StreamSanitizer:
    """Sanitises a stream of chunks; escape sequences split across chunks are caught."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, chunk: str) -> str:
        text = self._pending + chunk
        tail = _INCOMPLETE_TAIL.search(text)
        if tail is not None:
            self._pending = text[tail.start() :]
            text = text[: tail.start()]
        else:
            self._pending = ""
        return sanitize(text)

    def flush(self) -> str:
        """End of stream: an unfinished sequence is dropped, never shown."""
        self._pending = ""
        return ""
