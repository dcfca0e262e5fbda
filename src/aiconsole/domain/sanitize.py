"""The one sanitiser every piece of untrusted text passes before it reaches a screen.

Rich and Textual pass escape sequences through to the terminal, so text from a
provider, a model or a remote command could move the cursor, retitle the window,
write to the clipboard (OSC 52) or hide itself. We remove every escape sequence
(CSI, OSC, DCS, SOS, PM, APC, and two-byte ESC forms, in 7- and 8-bit forms) and
every control character except newline and tab, and the bidi controls that reorder
text (overrides, embeddings, isolates). Markup is a separate concern:
callers render sanitised text with `markup=False` / `Text(...)`.

`StreamSanitizer` does the same for text that arrives in chunks: a sequence split
across two chunks is held back until it is complete (or provably not a sequence),
so feeding a text in any chunks gives exactly what `sanitize` gives for the whole.

Hostile input must not cost more than linear time: a string sequence ends at BEL,
ST or any other ESC (as in xterm, where an ESC aborts the string), so its match can
never fail and be retried from every later position; CSI parameters and ESC
intermediates are bounded, so a held-back tail stays short.
"""

from __future__ import annotations

import re

_MAX_PARAMS = 256  # CSI parameter bytes; longer runs are not a sequence (shown as text)
_MAX_INTERMEDIATES = 16

# String-type sequences end at BEL or ST (ESC \ or 8-bit 0x9c); another ESC aborts
# them (the ESC then starts a sequence of its own). The body is never shown, also
# when the string is aborted or unterminated at the end of the text.
_STRING_OPENER = r"\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]"
_STRING_SEQ = rf"(?:{_STRING_OPENER})[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|(?=\x1b)|\Z)"
# A CSI cut off by the end of the text loses its introducer; its parameters are
# harmless text. (Dropping them too would make the end of a chunk differ from the
# middle of a text, which `StreamSanitizer` relies on never happening.)
_CSI = rf"(?:\x1b\[|\x9b)[0-?]{{0,{_MAX_PARAMS}}}[ -/]{{0,{_MAX_INTERMEDIATES}}}[@-~]"
_TWO_BYTE = rf"\x1b[ -/]{{0,{_MAX_INTERMEDIATES}}}[0-~]"  # ESC ( B, ESC 7, ESC c, ...
# Controls except \t (09) and \n (0a); \r is dropped too: it can overwrite a line. Also the
# bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069): they reorder what
# follows them on the line, so a reply could show text in another order than it reads
# ("Trojan Source"). The marks (LRM, RLM, ALM) stay: they only nudge neutral characters.
_CONTROLS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"

_PATTERN = re.compile("|".join((_STRING_SEQ, _CSI, _TWO_BYTE, _CONTROLS)))

# A chunk tail that could be the beginning of a sequence still arriving.
_INCOMPLETE_TAIL = re.compile(
    rf"(?P<opener>{_STRING_OPENER})[^\x07\x1b\x9c]*(?P<esc>\x1b?)\Z"  # string seq, no end yet
    rf"|(?:\x1b\[|\x9b)[0-?]{{0,{_MAX_PARAMS}}}[ -/]{{0,{_MAX_INTERMEDIATES}}}\Z"  # CSI, no final byte
    rf"|\x1b[ -/]{{0,{_MAX_INTERMEDIATES}}}\Z"  # lone ESC (+ intermediates)
)
_TERMINATORS = "\x07\x1b\x9c"


def sanitize(text: str) -> str:
    """Return `text` with escape sequences and control characters (but \\n, \\t) removed."""
    if not text:
        return ""
    return _PATTERN.sub("", text)


def sanitize_line(text: str, limit: int = 500) -> str:
    """Sanitise and fold to one line, for labels and error messages shown in a row."""
    flat = " ".join(sanitize(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _tail_search_start(text: str) -> int:
    """Where an incomplete tail can begin: at or after the last BEL/ESC/ST.

    A tail's string body and CSI parameters hold none of those, so searching from
    there finds the same (leftmost) tail as searching the whole text, without
    rescanning a long run of 8-bit openers from every position.
    """
    end = len(text) - 1 if text.endswith("\x1b") else len(text)  # a final ESC may be ST's first half
    return max(0, max(text.rfind(ch, 0, end) for ch in _TERMINATORS))


class StreamSanitizer:
    """Sanitises a stream of chunks; escape sequences split across chunks are caught."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, chunk: str) -> str:
        text = self._pending + chunk
        tail = _INCOMPLETE_TAIL.search(text, _tail_search_start(text))
        if tail is None:
            self._pending = ""
            return sanitize(text)
        if tail["opener"] is not None:
            # Inside a string sequence: its body is dropped whatever follows, so keep only
            # what decides where it ends (the opener, and an ESC that may start ST).
            self._pending = tail["opener"] + tail["esc"]
        else:
            self._pending = text[tail.start() :]
        return sanitize(text[: tail.start()])

    def flush(self) -> str:
        """End of stream: what `sanitize` gives for the held-back tail at the end of a text.

        An unfinished string sequence (OSC, DCS, ...) is dropped whole; an unfinished CSI
        loses its introducer and leaves its parameter digits, exactly as in `sanitize`.
        """
        pending, self._pending = self._pending, ""
        return sanitize(pending)
