"""The Models tab's pull area: each pull's lines, from one `PullStatus`.

    ⇣ inference  qwen2.5:7b  ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━   42%  2.1/4.9 GB
        48.0 MB/s · ETA 58s · $0.01 so far, ~$0.02 by the end
        ✓ 2 layers · 6a0746a1ec1a ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━  44%  2.1/4.7 GB
        ⚠ EVICTS: needs ~6.1 GB, 4.2 GB free: Ollama will unload llama3.1:8b first

A running pull shows its overall bar, speed, ETA and cost at the VM's hourly rate, a
bar for each layer still downloading (Ollama pulls them one after another), and once
its size is known whether it will fit. A finished pull is one line (two or three for a
failure: the server's message, and whether pulling again can help). Pure.
"""

from __future__ import annotations

from textual.content import Content

from aiconsole.domain.format import format_duration, format_usd
from aiconsole.domain.models import FitEstimate, LayerProgress, PullState, PullStatus, format_bytes, percent_text
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.ui.widgets.bars import bar_pieces
from aiconsole.ui.widgets.model_lines import MUTED, fit_content, fit_text, message_lines

INDENT = "    "
VM_WIDTH = 12
MODEL_WIDTH = 24
_BAR_MIN = 10

_LOOK = {
    PullState.RUNNING: ("⇣ ", "$accent bold"),
    PullState.SUCCEEDED: ("✓ ", "$success bold"),
    PullState.FAILED: ("✖ ", "$error bold"),
    PullState.CANCELLED: ("○ ", MUTED),
}


def _bytes_of(done: int, total: int) -> str:
    return f"{format_bytes(done, unit_of=total)}/{format_bytes(total)}"


def _head(vm: str, status: PullStatus) -> Content:
    glyph, style = _LOOK[status.state]
    vm_cell = fit_text(sanitize_line(vm, 60), VM_WIDTH).ljust(VM_WIDTH)
    model = fit_text(sanitize_line(status.model, 300), MODEL_WIDTH).ljust(MODEL_WIDTH)
    return Content.assemble((glyph, style), (vm_cell, "bold"), " ", (model, "bold"))


def _progress(head: Content | str, fraction: float | None, figures: str, width: int, track: str) -> Content:
    """`head`, a bar to the right edge, then the share and `figures`."""
    tail = f" {percent_text(fraction)}  {figures}"
    head = Content(head) if isinstance(head, str) else head
    bar_width = width - head.cell_length - 1 - len(tail)
    if bar_width < _BAR_MIN:
        return Content.assemble(head, tail).truncate(width)
    return Content.assemble(head, " ", *bar_pieces([(fraction or 0.0, "$accent")], bar_width, track), tail)


def _rate_line(status: PullStatus) -> Content:
    """Speed, time left and cost; before the first layer, the server's own words."""
    if not status.total_bytes:
        return Content.styled(INDENT + sanitize_line(status.status, 200), MUTED)
    parts = [f"{format_bytes(int(status.rate_bps))}/s" if status.rate_bps else "measuring speed…"]
    if status.eta_s is not None:
        parts.append(f"ETA {format_duration(status.eta_s)}")
    if status.hourly_usd > 0:
        cost = f"{format_usd(status.cost_usd)} so far"
        projected = status.projected_cost_usd
        parts.append(cost if projected is None else f"{cost}, ~{format_usd(projected)} by the end")
    else:
        parts.append("free VM")
    return Content.styled(INDENT + " · ".join(parts), MUTED)


def _layer_lines(status: PullStatus, width: int, track: str) -> list[Content]:
    done = [layer for layer in status.layers if layer.done]
    busy = [layer for layer in status.layers if not layer.done]
    prefix = f"{INDENT}✓ {len(done)} layer{'s' if len(done) != 1 else ''} · " if done else INDENT
    if not busy:  # every byte is here: verifying, writing the manifest
        return [Content.styled(prefix + sanitize_line(status.status, 200), MUTED)] if done else []
    lines = []
    for layer in busy:
        lines.append(_progress(Content.styled(prefix + _short(layer), MUTED), _fraction(layer),
                               _bytes_of(layer.completed, layer.total), width, track))  # fmt: skip
        prefix = INDENT
    return lines


def _short(layer: LayerProgress) -> str:
    """The 12 hex digits Ollama names a layer by (`pulling 6a0746a1ec1a`)."""
    digest = sanitize_line(layer.digest, 100)
    return digest.removeprefix("sha256:")[:12]


def _fraction(layer: LayerProgress) -> float | None:
    return None if layer.total <= 0 else min(1.0, layer.completed / layer.total)


def pull_lines(
    vm: str, status: PullStatus, width: int, track: str, *, fit: FitEstimate | None = None, retryable: bool = False
) -> list[Content]:
    """A pull's lines; `fit` is shown while it runs (once its size is known)."""
    head = _head(vm, status)
    state = status.state
    if state is PullState.RUNNING:
        figures = _bytes_of(status.completed_bytes, status.total_bytes) if status.total_bytes else "size unknown yet"
        lines = [_progress(head, status.fraction, figures, width, track), _rate_line(status)]
        lines += _layer_lines(status, width, track)
        if fit is not None:
            lines.append(Content.assemble(INDENT, fit_content(fit)))
        return [line.truncate(width) for line in lines]
    if state is PullState.SUCCEEDED:
        spent = f" ({format_usd(status.cost_usd)} of VM time)" if status.hourly_usd > 0 else ""
        done = f"pulled {format_bytes(status.total_bytes)} in {format_duration(status.elapsed_s)}{spent}"
        return _head_and(head, done, "$success", width)
    if state is PullState.CANCELLED:
        text = f"cancelled at {percent_text(status.fraction).strip()}: pulling again resumes from what arrived"
        return _head_and(head, text, MUTED, width)
    advice = (
        "can be retried: p pulls it again"
        if retryable
        else "pulling again will fail the same way: check the name and the server"
    )
    return [
        *_head_and(head, f"failed at {percent_text(status.fraction).strip()}", "$error", width),
        *message_lines(status.error, "$error", width),
        Content.styled(INDENT + advice, "$warning" if retryable else MUTED).truncate(width, ellipsis=True),
    ]


def _head_and(head: Content, text: str, style: str, width: int) -> list[Content]:
    """`text` after the head when it fits there, else on the line below: never cut."""
    if head.cell_length + 1 + len(text) <= width:
        return [Content.assemble(head, " ", (text, style))]
    return [head.rstrip().truncate(width), *message_lines(text, style, width, max_lines=2)]
