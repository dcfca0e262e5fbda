"""The Models tab's lines for one model server: a table of its models, with disk and VRAM.

    inference  ollama                           3 models · 1 loaded · read 12s ago
      disk ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━  14.2 GB models · 61.0 GB free of 100 GB
      VRAM ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━   6.2 GB models · 9.1 GB used of 24.0 GB
      model                          family params quant       size modified
    ● llama3.1:8b                    llama    8.0B Q4_K_M   4.9 GB   3d ago
          6.2 GB in VRAM · 100% GPU · context 8192 · unloads in 4m 12s
      mistral:7b                     llama    7.2B Q4_0     4.1 GB  12d ago

At 80 columns a loaded model's memory, GPU/CPU split, context and keep-alive go on a
second line; from WIDE_WIDTH columns on they are columns of its row. Data past its
freshness is drawn muted under a header that says "stale" and its age; a failed read
says why, plainly. Every string from a server (names, details, errors) passes the
sanitiser here and is placed as plain `Content`, never parsed as markup. Pure: the
caller passes the time (`now`) and the GPU's memory from telemetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from textual.content import Content

from aiconsole.domain.format import format_duration
from aiconsole.domain.models import FitEstimate, InstalledModel, LoadedModel, estimate_fit, format_bytes, same_model
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import FeedState, TelemetrySnapshot
from aiconsole.ui.widgets.bars import bar_pieces
from aiconsole.ui.widgets.gpu_gauges import wrap_cut

if TYPE_CHECKING:
    from aiconsole.services.model_library import ServerModels

MUTED = "$foreground-muted"  # not $text-muted: "auto 60%" comes out pure white (black) in a Content span
STALE_STYLE = "$warning bold"
MIB = 1024 * 1024


class RowKey(NamedTuple):
    """What a row is: a pull, a server's header, an Ollama model, or an OpenAI server's model id."""

    kind: str
    """"pull", "server", "model" or "listed"."""
    vm: str
    name: str = ""
    """The model's name (as the server sent it); "" for a server's header."""
    service: str = ""


Group = tuple[RowKey | None, list[Content]]
"""Lines of the board: a selectable item's (its key), or lines to read only (None)."""

# -- columns -----------------------------------------------------------------------------

MARK_WIDTH = 2
FAMILY_WIDTH = 8
PARAMS_WIDTH = 6
QUANT_WIDTH = 7
SIZE_WIDTH = 8
MODIFIED_WIDTH = 8
NAME_MIN, NAME_MAX = 16, 40
_FIXED = (
    MARK_WIDTH + (1 + FAMILY_WIDTH) + (1 + PARAMS_WIDTH) + (1 + QUANT_WIDTH) + (1 + SIZE_WIDTH) + (1 + MODIFIED_WIDTH)
)
VRAM_WIDTH = 8
PROCESSOR_WIDTH = 15  # "48%/52% CPU/GPU"
CONTEXT_WIDTH = 7
UNTIL_WIDTH = 10
_LOADED_COLUMNS = (2 + VRAM_WIDTH) + (1 + PROCESSOR_WIDTH) + (1 + CONTEXT_WIDTH) + (1 + UNTIL_WIDTH)
WIDE_WIDTH = _FIXED + 24 + _LOADED_COLUMNS
"""From this many columns on, a loaded model's figures are columns of its row."""
DETAIL_INDENT = " " * (MARK_WIDTH + 4)


class Layout(NamedTuple):
    width: int
    name_width: int
    wide: bool

    @classmethod
    def of(cls, width: int) -> Layout:
        wide = width >= WIDE_WIDTH
        room = width - _FIXED - (_LOADED_COLUMNS if wide else 0)
        return cls(width, max(NAME_MIN, min(NAME_MAX, room)), wide)


def fit_text(text: str, width: int) -> str:
    """`text` cut to `width` cells with "…" (the columns hold short ASCII words)."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def message_lines(text: str, style: str, width: int, *, indent: str = "    ", max_lines: int = 3) -> list[Content]:
    """A server's message (sanitised here), wrapped under `indent`: an error must be read whole."""
    room = max(10, width - len(indent))
    return [Content.styled(indent + line, style) for line in wrap_cut(sanitize_line(text, 2000), room, max_lines)]


def column_titles(layout: Layout) -> Content:
    titles = [
        " " * MARK_WIDTH + "model".ljust(layout.name_width), "family".ljust(FAMILY_WIDTH),
        "params".rjust(PARAMS_WIDTH), "quant".ljust(QUANT_WIDTH), "size".rjust(SIZE_WIDTH),
        "modified".rjust(MODIFIED_WIDTH),
    ]  # fmt: skip
    if layout.wide:
        titles += [
            " " + "in VRAM".rjust(VRAM_WIDTH), "processor".ljust(PROCESSOR_WIDTH),
            "context".rjust(CONTEXT_WIDTH), "unloads in".rjust(UNTIL_WIDTH),
        ]  # fmt: skip
    return Content.styled(" ".join(titles), f"bold {MUTED}")


# -- figures -----------------------------------------------------------------------------


def ago(seconds: float) -> str:
    """ "now", "12m ago", "5h ago", "3d ago", "4mo ago": how long ago a model was modified."""
    if seconds < 60:
        return "now"
    if seconds < 3_600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86_400:
        return f"{int(seconds // 3_600)}h ago"
    if seconds < 60 * 86_400:
        return f"{int(seconds // 86_400)}d ago"
    return f"{int(seconds // (30 * 86_400))}mo ago"


def until_text(model: LoadedModel, now: datetime) -> str:
    """When its keep-alive runs out: "4m 12s", "now", or "forever" (kept loaded)."""
    left = model.keep_alive_left_s(now)
    if left is None:
        return "forever"
    return "now" if left < 1 else format_duration(left)


def gpu_memory(telemetry: TelemetrySnapshot | None, vm: str) -> tuple[int | None, int | None]:
    """(total, used) VRAM bytes over the VM's GPUs, from live telemetry only: figures past
    their freshness or missing give (None, None), and the fit estimate says it cannot tell."""
    outline = telemetry.outline(vm) if telemetry is not None else None
    if outline is None or outline.state is not FeedState.LIVE or not outline.gpu_indices:
        return None, None
    host = telemetry.host(vm) if telemetry is not None else None
    if host is None or any(view.stale for view in host.gpus):
        return None, None
    totals = [view.sample.mem_total_mib for view in host.gpus]
    used = [view.sample.mem_used_mib for view in host.gpus]
    if any(value is None for value in (*totals, *used)):
        return None, None
    return int(sum(totals) * MIB), int(sum(used) * MIB)  # type: ignore[arg-type]


def fit_for(
    need_bytes: int | None, memory: tuple[int | None, int | None], loaded: Sequence[LoadedModel], model: str
) -> FitEstimate:
    total, used = memory
    return estimate_fit(need_bytes, gpu_total_bytes=total, gpu_used_bytes=used, loaded=tuple(loaded), model=model)


_FIT_LOOK = {
    "fits": ("✓ ", "$success", ""),
    "evicts": ("⚠ EVICTS: ", "$warning bold", "$warning"),
    "spills": ("⚠ SPILLS: ", "$error bold", "$error"),
    "unknown": ("? ", MUTED, MUTED),
}


def fit_content(estimate: FitEstimate) -> Content:
    """The estimate in words; a warning (EVICTS, SPILLS) is marked and coloured as one."""
    glyph, glyph_style, text_style = _FIT_LOOK[estimate.fit.value]
    # The message names loaded models, which come from the server.
    return Content.assemble((glyph, glyph_style), (sanitize_line(estimate.message(), 400), text_style))


# -- a server's block --------------------------------------------------------------------


def _status(server: ServerModels, now: datetime) -> tuple[str, str]:
    """The header's right side: counts and freshness, or staleness with its age."""
    if server.fetched_at is None:
        return ("reading…" if not server.error else "no answer yet", MUTED if not server.error else "$error")
    age = format_duration((now - server.fetched_at).total_seconds())
    if server.stale(now):
        return (f"stale {age}", STALE_STYLE)
    if server.server.kind == "ollama":
        counts = f"{len(server.installed)} models · {len(server.loaded)} loaded"
    else:
        counts = f"{len(server.listed)} models"
    return (f"{counts} · {'reading… ' if server.refreshing else ''}read {age} ago", MUTED)


def server_title(server: ServerModels, now: datetime, width: int) -> Content:
    info = server.server
    label = info.service if info.service == info.kind else f"{info.service} ({info.kind})"
    if info.kind != "ollama":
        label += " · read-only"
    left = Content.assemble((sanitize_line(info.vm, 60), "bold"), "  ", (sanitize_line(label, 60), MUTED))
    status, style = _status(server, now)
    gap = max(2, width - left.cell_length - len(status))
    return Content.assemble(left, " " * gap, (status, style)).truncate(width, ellipsis=True)


def _usage_line(label: str, parts: list[tuple[float, str]], figures: str, width: int, track: str) -> Content:
    bar_width = width - 2 - 5 - len(figures) - 2
    if not parts or bar_width < 8:  # no total to draw against, or no room: the figures say it
        return Content.assemble(("  " + label.ljust(5), MUTED), figures.strip())
    return Content.assemble(("  " + label.ljust(5), MUTED), *bar_pieces(parts, bar_width, track), "  ", figures)


def usage_lines(server: ServerModels, memory: tuple[int | None, int | None], width: int, track: str) -> list[Content]:
    """Disk used by the models against the VM's disk, VRAM of the loaded ones against the GPU's."""
    models, disk = server.models_bytes, server.disk
    in_vram = sum(model.vram_bytes for model in server.loaded)
    total, used = memory
    if disk is not None and disk.total_bytes > 0:
        disk_text = (
            f"{format_bytes(models)} models · {format_bytes(disk.free_bytes)} free of {format_bytes(disk.total_bytes)}"
        )
        other = max(0, disk.used_bytes - models)
        disk_parts = [(models / disk.total_bytes, "$accent"), (other / disk.total_bytes, MUTED)]
    else:
        disk_text, disk_parts = f"{format_bytes(models)} models · free space unknown (needs the VM's ssh)", []
    if total:
        vram_text = f"{format_bytes(in_vram)} models · {format_bytes(used or 0)} used of {format_bytes(total)}"
        vram_parts = [(in_vram / total, "$accent"), (max(0, (used or 0) - in_vram) / total, MUTED)]
    else:
        vram_text, vram_parts = f"{format_bytes(in_vram)} models · GPU figures unknown (no live telemetry)", []
    if not server.loaded:
        vram_text = vram_text.replace(f"{format_bytes(in_vram)} models", "nothing loaded")
    figures = max(len(disk_text), len(vram_text))
    return [
        _usage_line("disk", disk_parts, disk_text.rjust(figures), width, track),
        _usage_line("VRAM", vram_parts, vram_text.rjust(figures), width, track),
    ]


def _cell(text: str, width: int, *, right: bool = False) -> str:
    """Server text in a column: sanitised, cut to `width` and padded."""
    cut = fit_text(sanitize_line(text, 300), width)
    return cut.rjust(width) if right else cut.ljust(width)


def model_row(model: InstalledModel | LoadedModel, loaded: LoadedModel | None, now: datetime, layout: Layout,
              *, stale: bool) -> list[Content]:  # fmt: skip
    """A model's row, and at 80 columns a second line for a loaded one's figures."""
    installed = model if isinstance(model, InstalledModel) else None
    modified = installed.modified_at if installed else None
    cells = [
        ("● " if loaded else "  ", "$success" if loaded else ""),
        (_cell(model.name, layout.name_width), "bold" if loaded else ""), " ",
        (_cell(installed.family if installed else "", FAMILY_WIDTH), MUTED), " ",
        _cell(installed.parameter_size if installed else "", PARAMS_WIDTH, right=True), " ",
        (_cell(installed.quantization if installed else "", QUANT_WIDTH), MUTED), " ",
        (format_bytes(installed.size_bytes) if installed else "—").rjust(SIZE_WIDTH), " ",
        ((ago((now - modified).total_seconds()) if modified else "—").rjust(MODIFIED_WIDTH), MUTED),
    ]  # fmt: skip
    lines: list[Content] = []
    if loaded is not None and layout.wide:
        cells += [
            "  ", format_bytes(loaded.vram_bytes).rjust(VRAM_WIDTH),
            " ", loaded.processor.ljust(PROCESSOR_WIDTH),
            " ", str(loaded.context_length or "—").rjust(CONTEXT_WIDTH),
            " ", until_text(loaded, now).rjust(UNTIL_WIDTH),
        ]  # fmt: skip
    elif loaded is not None:
        until = until_text(loaded, now)
        keep = "stays loaded" if until == "forever" else f"unloads in {until}" if until != "now" else "unloading now"
        context = f" · context {loaded.context_length}" if loaded.context_length else ""
        detail = f"{format_bytes(loaded.vram_bytes)} in VRAM · {loaded.processor}{context} · {keep}"
        lines.append(Content.styled(DETAIL_INDENT + detail, MUTED))
    row = Content.assemble(*cells)
    lines.insert(0, row)
    if stale:  # old figures: none of them may look current
        lines = [Content.styled(line.plain, MUTED) for line in lines]
    return [line.truncate(layout.width) for line in lines]


def server_groups(
    server: ServerModels, now: datetime, memory: tuple[int | None, int | None], layout: Layout, track: str
) -> list[Group]:
    """The server's title (and error) as an item, its disk, VRAM and column titles as plain
    lines (nothing to select there), then one item a model."""
    info = server.server
    title = [server_title(server, now, layout.width)]
    if server.error:
        title += message_lines("✖ " + server.error, "$error", layout.width, indent="  ", max_lines=2)
    groups: list[Group] = [(RowKey("server", info.vm, service=info.service), title)]
    if server.fetched_at is None:
        return groups
    stale = server.stale(now)
    if info.kind != "ollama":
        groups.append((None, [Content.styled("  model id" if server.listed else "  no models listed", f"bold {MUTED}")]))
        for model_id in server.listed:
            line = Content.styled("  " + sanitize_line(model_id, 300), MUTED if stale else "")
            line = line.truncate(layout.width, ellipsis=True)
            groups.append((RowKey("listed", info.vm, model_id, info.service), [line]))
        return groups
    has_models = server.installed or server.loaded
    titles = column_titles(layout) if has_models else Content.styled("  no models installed", MUTED)
    groups.append((None, [*usage_lines(server, memory, layout.width, track), titles]))
    for model in server.installed:
        lines = model_row(model, server.is_loaded(model.name), now, layout, stale=stale)
        groups.append((RowKey("model", info.vm, model.name, info.service), lines))
    for model in server.loaded:  # held in memory but gone from the disk list (deleted while loaded)
        if not any(same_model(item.name, model.name) for item in server.installed):
            lines = model_row(model, model, now, layout, stale=stale)
            groups.append((RowKey("model", info.vm, model.name, info.service), lines))
    return groups
