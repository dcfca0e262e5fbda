"""GPU gauges: one line per GPU for a VM pane, and the line shown when a host has none.

    GPU0 4090      62°C ▂▃▅▇▆▅ VRAM 18.2/24G  76%  util  87% ▇▇▆▅▅▆ 310/450W

Every cell has a fixed width, so the lines of a pane (and the rows of the GPU view,
which builds on the same cells) line up. Levels read without colour too: a warning
value carries "!" and is bold, a critical one carries "!" in reverse video. An
unknown value is "—", never 0. A stale GPU keeps its last values, all muted, and
ends in "stale 12s" where the utilisation history and power would be: it must not
pass for fresh. The functions are pure: the caller hands in immutable snapshots.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from functools import lru_cache

from textual.content import Content
from textual.widget import Widget

from aiconsole.domain.format import format_duration
from aiconsole.domain.gpu_levels import Level
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import FeedState, GpuView, HostTelemetry

PANE_WIDTH = 74
"""The inside of a VM pane at 80 columns: what `gauge_content` fits by default."""

BLOCKS = "▁▂▃▄▅▆▇█"
TEMP_SCALE_C = (20.0, 100.0)
"""The temperature history's floor and ceiling: fixed, so strips of two GPUs compare."""
UTIL_SCALE_PCT = (0.0, 100.0)

NAME_WIDTH = 8
TEMP_WIDTH = 6  # " 62°C" and the level mark
SPARK_WIDTH = 7
VRAM_WIDTH = 8  # "18.2/24G"
PCT_WIDTH = 5  # " 76%" and the level mark
UTIL_WIDTH = 4
POWER_WIDTH = 8  # "310/450W"

MUTED = "$foreground-muted"  # not $text-muted: "auto 60%" comes out pure white (black) in a Content span
STALE_STYLE = "$warning bold"
_LEVEL_STYLE = {Level.OK: "$success", Level.WARNING: "$warning bold", Level.CRITICAL: "$error bold reverse"}
_LEVEL_MARK = {Level.OK: " ", Level.WARNING: "!", Level.CRITICAL: "!"}
_SPARK_STYLE = {level: style.replace(" reverse", "") for level, style in _LEVEL_STYLE.items()}
UNKNOWN = "—"

Piece = tuple[str, str]
"""A run of text and its Textual style ("" for none), e.g. (" 78°C!", "$warning bold")."""
Pieces = list[Piece]
"""What a cell is made of. Plain pieces, not `Content`: the GPU view draws its rows from
them straight to segments (building Content was most of a row's cost), and the VM pane
assembles Content from the same pieces, so both show a cell the same way."""
SPACE: Piece = (" ", "")

# Vendor and family words say nothing on a console that only shows NVIDIA GPUs; memory size
# and form factor (80GB, HBM3, PCIe, SXM4) are the same for every GPU of a host.
_NOISE_WORDS = frozenset({"nvidia", "geforce", "tesla", "quadro", "rtx", "gtx", "generation", "graphics"})
_NOISE_TOKEN = re.compile(r"^(?:\d+\s*[GM]B|HBM\d*e?|PCIE|SXM\d*|MIG|\d+GB?)$", re.IGNORECASE)


@lru_cache(maxsize=256)
def short_gpu_name(name: str, width: int = NAME_WIDTH) -> str:
    """ "NVIDIA GeForce RTX 4090" -> "4090", "NVIDIA H100 80GB HBM3" -> "H100", "A100-SXM4-40GB" -> "A100"."""
    clean = sanitize_line(name, 200)
    words = [w for w in re.split(r"[\s\-_]+", clean) if w]
    kept = [w for w in words if w.lower() not in _NOISE_WORDS and not _NOISE_TOKEN.match(w)]
    short = " ".join(kept) or " ".join(words) or UNKNOWN
    while len(short) > width and " " in short:
        short = short.rsplit(" ", 1)[0]  # "6000 Ada" fits; "4090 Laptop GPU" loses words, not letters
    return short if len(short) <= width else short[: width - 1] + "…"


def sparkline(values: Sequence[float | None], width: int, low: float, high: float) -> str:
    """The last `width` values as block characters, right-aligned; None (unknown) is a space."""
    if width <= 0:
        return ""
    tail = values[-width:]
    top = len(BLOCKS) - 1
    span = (high - low) or 1.0
    isnan = math.isnan
    chars = [  # unknown (None, NaN) is a space, not the bottom of the scale
        " " if value is None or isnan(value) else BLOCKS[min(top, max(0, round((value - low) / span * top)))]
        for value in tail
    ]
    return " " * (width - len(tail)) + "".join(chars)


def _level_cell(text: str, width: int, level: Level, known: bool, stale: bool) -> Pieces:
    """A right-aligned value and its level mark, e.g. " 78°C!"; the mark's cell is a space at OK."""
    pad = " " * max(0, width - 1 - len(text))
    if not known:
        return [(f"{pad}{text} ", MUTED)]
    mark = _LEVEL_MARK[level]
    if stale:  # the last known level stays marked, but without colour: it is not news
        return [(f"{pad}{text}{mark}", MUTED)]
    if level is Level.OK:
        return [(pad, ""), (text, _LEVEL_STYLE[level]), SPACE]
    return [(pad, ""), (text + mark, _LEVEL_STYLE[level])]


def temp_cell(view: GpuView) -> Pieces:
    temp = view.sample.temp_c
    text = UNKNOWN if temp is None else f"{temp:.0f}°C"
    return _level_cell(text, TEMP_WIDTH, view.temp_level, temp is not None, view.stale)


def temp_spark(view: GpuView, width: int = SPARK_WIDTH) -> Pieces:
    style = MUTED if view.stale else _SPARK_STYLE[view.temp_level]
    return [(sparkline(view.history.temp_c, width, *TEMP_SCALE_C), style)]


def util_spark(view: GpuView, width: int = SPARK_WIDTH) -> Pieces:
    return [(sparkline(view.history.util_pct, width, *UTIL_SCALE_PCT), MUTED if view.stale else "$primary")]


def _gib(mib: float, decimals: int) -> str:
    return f"{mib / 1024:.{decimals}f}"


def vram_text(view: GpuView) -> str:
    """ "18.2/24G": used with one decimal (none from 100 GiB up), total as cards are named."""
    used, total = view.sample.mem_used_mib, view.sample.mem_total_mib
    if used is None and total is None:
        return UNKNOWN
    used_s = UNKNOWN if used is None else _gib(used, 1 if used < 100 * 1024 else 0)
    total_s = UNKNOWN if total is None else _gib(total, 0)
    return f"{used_s}/{total_s}G"


def vram_cells(view: GpuView) -> Pieces:
    """Used/total and the share in percent, the share coloured by the VRAM level."""
    share = view.sample.mem_share
    pct = UNKNOWN if share is None else f"{min(share, 9.99) * 100:.0f}%"
    figures = (vram_text(view).rjust(VRAM_WIDTH), MUTED if view.stale else "")
    return [figures, SPACE, *_level_cell(pct, PCT_WIDTH, view.mem_level, share is not None, view.stale)]


def util_cell(view: GpuView) -> Pieces:
    util = view.sample.util_pct
    text = UNKNOWN if util is None else f"{util:.0f}%"
    return [(text.rjust(UTIL_WIDTH), MUTED if view.stale or util is None else "")]


def power_text(view: GpuView, width: int = POWER_WIDTH) -> str:
    """Draw over limit in watts ("310/450W"); past `width` (a B200's "1000/1200W") in
    kilowatts ("1.0/1.2k"), then the draw alone: a cell never spills into the next."""
    power, limit = view.sample.power_w, view.sample.power_limit_w
    if limit is None:
        return UNKNOWN if power is None else _fitting(width, f"{power:.0f}W", f"{power / 1000:.1f}kW")
    shown = UNKNOWN if power is None else f"{power:.0f}"
    kilo = UNKNOWN if power is None else f"{power / 1000:.1f}"
    return _fitting(width, f"{shown}/{limit:.0f}W", f"{kilo}/{limit / 1000:.1f}k", f"{shown}W")


def _fitting(width: int, *candidates: str) -> str:
    return next((text for text in candidates if len(text) <= width), candidates[-1][:width])


def power_cell(view: GpuView) -> Pieces:
    return [(power_text(view).rjust(POWER_WIDTH), MUTED)]


def stale_cell(view: GpuView, width: int) -> Pieces:
    """ "stale 12s" in place of what only fresh data may show."""
    return [(f"stale {format_duration(view.age_s)}".rjust(width), STALE_STYLE)]


def gpu_label(view: GpuView) -> Pieces:
    return [(f"GPU{view.sample.index}".ljust(4), MUTED if view.stale else "bold")]


def gpu_name_cell(view: GpuView, width: int = NAME_WIDTH) -> Pieces:
    return [(short_gpu_name(view.sample.name, width).ljust(width), MUTED if view.stale else "")]


def gauge_content(view: GpuView, width: int = PANE_WIDTH) -> Content:
    """One GPU on one line of at most `width` cells (74: a pane at 80 columns).

    Narrower, the temperature history goes first, then the utilisation history; then
    the line is cut before its end, so "stale 12s" (or the power) is never cut off.
    """
    head = [*gpu_label(view), SPACE, *gpu_name_cell(view), *temp_cell(view)]
    rest = [(" VRAM ", MUTED), *vram_cells(view), (" util ", MUTED), *util_cell(view)]
    full_tail = 1 + SPARK_WIDTH + 1 + POWER_WIDTH
    if view.stale:
        tails = [stale_cell(view, full_tail), [SPACE, *stale_cell(view, 0)]]
    else:
        tails = [[SPACE, *util_spark(view), SPACE, *power_cell(view)], [SPACE, *power_cell(view)]]
    wide = Content.assemble(*head, SPACE, *temp_spark(view), *rest, *tails[0])
    if wide.cell_length <= width:
        return wide
    line = Content.assemble(*head, *rest, *tails[0])
    if line.cell_length <= width:
        return line
    tail = Content.assemble(*tails[1])
    front = Content.assemble(*head, *rest)
    if front.cell_length + tail.cell_length > width:
        front = front.truncate(max(0, width - tail.cell_length), ellipsis=True)
    return Content.assemble(front, tail).truncate(width)


# --- hosts without gauges ---------------------------------------------------------------

_STATE_LOOK: dict[FeedState, tuple[str, str, str]] = {
    FeedState.OFF: ("○", MUTED, "off: not connected"),
    FeedState.CONNECTING: ("◐", "$warning", "connecting…"),
    FeedState.LIVE: ("●", "$success", "connected: waiting for the first sample"),
    FeedState.STALE: ("◑", STALE_STYLE, "stale: no sample lately"),
    FeedState.NO_GPU: ("–", MUTED, "no GPU"),
    FeedState.ERROR: ("✖", "$error bold", "telemetry error"),
    FeedState.REFUSED: ("✖", "$error bold", "host key refused"),
}
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/=]{16,}")
STATUS_MAX_LINES = 8
"""A refused host key's message (what to check, the commands that accept the key) is ~6 lines at 74."""


def key_fingerprint(message: str) -> str:
    """The "SHA256:…" fingerprint a host-key message names, or "" when it names none."""
    found = _FINGERPRINT.search(message)
    return found.group(0) if found else ""


def _headline(host: HostTelemetry, message: str, width: int) -> Content:
    """Glyph and state; for a refused host key also the fingerprint, which must not be cut."""
    glyph, style, word = _STATE_LOOK[host.state]
    fingerprint = key_fingerprint(message) if host.state is FeedState.REFUSED else ""
    if not fingerprint:
        return Content.styled(f"{glyph} {word}", style)
    if len(glyph) + len(word) + 3 + len(fingerprint) > width:
        word = "refused"  # a narrow view (the GPU table) keeps the whole fingerprint
    return Content.assemble((f"{glyph} {word}", style), "  ", (fingerprint, "bold"))


def wrap_cut(text: str, width: int, max_lines: int) -> list[str]:
    """`text` wrapped to `width`, on at most `max_lines` lines, the last ending in "…" when cut."""
    wrapped = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if len(wrapped) > max_lines:
        last = wrapped[max_lines - 1]
        wrapped = [*wrapped[: max_lines - 1], (last if len(last) < width else last[: width - 1]) + "…"]
    return wrapped


def host_status_content(host: HostTelemetry, *, width: int = PANE_WIDTH, max_lines: int = STATUS_MAX_LINES) -> Content:
    """Why a host shows no gauges: its feed's state and message, on at most `max_lines` lines.

    The first line always says the state (and, for a refused host key, the fingerprint
    offered), so a one-line view still tells the story; the message follows on the
    same line when it fits, else wrapped below, the last line ending in "…" when cut.
    The message of a refused key (what to check, the commands that accept the key) is
    ~6 lines at 74 columns: the default `max_lines` shows it whole.
    """
    message = sanitize_line(host.message, 2000)
    if host.state is FeedState.NO_GPU and message.lower().startswith("no gpu: "):
        message = message[len("no gpu: ") :]  # the feeds say "no GPU: why"; the headline says "no GPU"
    head = _headline(host, message, width)
    if not message:
        return head.truncate(width, ellipsis=True)
    body_style = "$error" if host.state in (FeedState.ERROR, FeedState.REFUSED) else MUTED
    separator = ": " if head.plain[-1].isalpha() else " · "  # "connecting…", a fingerprint: no colon
    inline = Content.assemble(head, (separator, MUTED), (message, body_style))
    if max_lines <= 1 or inline.cell_length <= width:
        return inline.truncate(width, ellipsis=True)
    wrapped = wrap_cut(message, width, max_lines - 1)
    lines = [head.truncate(width, ellipsis=True), *(Content.styled(line, body_style) for line in wrapped)]
    return Content("\n").join(lines)


def host_gauges_content(host: HostTelemetry, *, width: int = PANE_WIDTH) -> Content:
    """A host's block for its VM pane: one gauge per GPU, or the status line(s) instead.

    GPUs kept from before a failure are shown (each marked stale by the feed) under the
    status line that says what went wrong.
    """
    gauges = [gauge_content(view, width) for view in host.gpus]
    if host.gpus and host.state in (FeedState.LIVE, FeedState.STALE):
        return Content("\n").join(gauges)
    status = host_status_content(host, width=width, max_lines=2 if gauges else STATUS_MAX_LINES)
    return Content("\n").join([status, *gauges])


class GpuGauges(Widget):
    """A host's gauges inside a VM pane; `show(host)` with each new snapshot, None for "no data"."""

    DEFAULT_CSS = """
    GpuGauges {
        height: auto;
    }
    """

    def __init__(self, host: HostTelemetry | None = None, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.host = host

    def show(self, host: HostTelemetry | None) -> None:
        """Repaint only when the host's telemetry changed (snapshots are immutable)."""
        if host is self.host or host == self.host:
            return
        old_height = _height(self.host)
        self.host = host
        self.refresh(layout=_height(host) != old_height)

    def render(self) -> Content:
        if self.host is None:
            return Content.styled("GPU telemetry: not started", MUTED)
        return host_gauges_content(self.host, width=self.content_size.width or PANE_WIDTH)


def _height(host: HostTelemetry | None) -> tuple[FeedState, int, str] | None:
    # What decides the number of lines (a change of message can change the wrap).
    return None if host is None else (host.state, len(host.gpus), host.message)
