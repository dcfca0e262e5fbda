"""What the Models tab's dialogs and the palette are given, without the widgets: the pull
offer for a VM and what the pull dialog says of a name typed (`verdict`), the details
screen's fit estimate, the delete question, the palette's commands. Built from the
snapshot the board drew and the latest telemetry. (The dialogs themselves, with their
input widgets, are imported when first opened.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.content import Content

from aiconsole.domain.models import (
    FitEstimate,
    ModelDetails,
    PullState,
    format_bytes,
    model_name_problem,
    same_model,
    vram_needed,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import TelemetrySnapshot
from aiconsole.ui.widgets.model_lines import MUTED, fit_content, fit_for, gpu_memory

if TYPE_CHECKING:
    from aiconsole.services.model_library import ModelsSnapshot, ServerModels
    from aiconsole.ui.model_source import ModelsOptions
    from aiconsole.ui.models_pane import ModelsPane

Command = tuple[str, str, Callable[[], Any], bool]
"""(title, help, callback, listed when the palette opens) of a palette command."""


@dataclass(frozen=True)
class Suggestion:
    name: str
    note: str
    """Why it is offered: "standard", "4.9 GB on homelab", "installed here"."""
    size_bytes: int | None = None
    """Its size where another VM has it (the fit estimate's input)."""
    size_from: str = ""
    """That VM."""


@dataclass(frozen=True)
class PullOffer:
    """What the dialog needs to know about the VM a model would be pulled onto."""

    vm: str
    suggestions: tuple[Suggestion, ...]
    installed_here: tuple[str, ...]
    pulling_here: tuple[str, ...]
    context: int
    """The context the estimate assumes (`[models] context_length`)."""
    estimate: Callable[[str, int], FitEstimate]
    """(name, size in bytes) -> will it fit on this VM's GPU now."""

    def known_size(self, name: str) -> Suggestion | None:
        return next((s for s in self.suggestions if s.size_bytes and same_model(s.name, name)), None)


def verdict(offer: PullOffer, text: str) -> tuple[Content, bool]:
    """What the dialog says under the input, and whether the name may be pulled."""
    name = text.strip()
    if not name:
        return Content.styled("Type a model name ([namespace/]model[:tag]) or pick one below.", MUTED), False
    problem = model_name_problem(name)
    if problem:  # the operator's own typing, but shown as plain text all the same
        return Content.assemble(("✖ not a model name: ", "$error bold"), (sanitize_line(problem, 300), "$error")), False
    if any(same_model(name, pulling) for pulling in offer.pulling_here):
        return Content.styled(f"✖ already being pulled onto {offer.vm}", "$error bold"), False
    lines = []
    if any(same_model(name, installed) for installed in offer.installed_here):
        lines.append(Content.styled(f"already on {offer.vm}: pulling again fetches only what changed", MUTED))
    known = offer.known_size(name)
    if known is None:
        lines.append(Content.styled("? will it fit: the estimate comes when the download's size is known", MUTED))
    else:
        size = known.size_bytes or 0
        lines.append(fit_content(offer.estimate(name, size)))
        source = f"{format_bytes(size)}, as on {sanitize_line(known.size_from, 60)}"
        lines.append(Content.styled(f"  (at context {offer.context}; its size: {source})", MUTED))
    return Content("\n").join(lines), True


def _suggestions(snapshot: ModelsSnapshot, vm: str, standard: tuple[str, ...]) -> tuple[Suggestion, ...]:
    """The standard set first, then what the other VMs have, each with a size where one is known."""
    here = snapshot.server(vm)
    elsewhere = [(server.vm, model) for server in snapshot.servers if server.vm != vm
                 and server.server.kind == "ollama" for model in server.installed]  # fmt: skip
    suggestions: list[Suggestion] = []
    for name in standard:
        found = next(((where, m) for where, m in elsewhere if same_model(m.name, name)), None)
        notes = ["standard"]
        if here is not None and any(same_model(m.name, name) for m in here.installed):
            notes.append("installed here")
        if found is not None:
            notes.append(f"{format_bytes(found[1].size_bytes)} on {found[0]}")
        size, source = (found[1].size_bytes, found[0]) if found else (None, "")
        suggestions.append(Suggestion(name, " · ".join(notes), size, source))
    for where, model in sorted(elsewhere, key=lambda pair: pair[1].name):
        if not any(same_model(s.name, model.name) for s in suggestions):
            note = f"{format_bytes(model.size_bytes)} on {where}"
            suggestions.append(Suggestion(model.name, note, model.size_bytes, where))
    return tuple(suggestions)


def pull_offer(
    snapshot: ModelsSnapshot, vm: str, telemetry: TelemetrySnapshot | None, options: ModelsOptions
) -> PullOffer:
    server = snapshot.server(vm)
    loaded = server.loaded if server is not None else ()
    memory = gpu_memory(telemetry, vm)

    def estimate(name: str, size_bytes: int) -> FitEstimate:
        return fit_for(vram_needed(size_bytes, options.context_length), memory, loaded, name)

    pulls = zip(snapshot.pull_vms, snapshot.pulls)
    pulling = tuple(status.model for where, status in pulls if where == vm and status.state is PullState.RUNNING)
    installed = tuple(m.name for m in server.installed) if server is not None else ()
    suggestions = _suggestions(snapshot, vm, options.standard)
    return PullOffer(vm, suggestions, installed, pulling, options.context_length, estimate)


def details_estimate(
    server: ServerModels | None, model: str, memory: tuple[int | None, int | None], context: int
) -> Callable[[ModelDetails], FitEstimate | None]:
    """The details screen's fit estimate: the installed size, and the KV cache per token its
    architecture needs (from the details); None for a model not on the disk list."""
    installed = next((m for m in server.installed if m.name == model), None) if server is not None else None

    def estimate(details: ModelDetails) -> FitEstimate | None:
        if installed is None or server is None:
            return None
        need = vram_needed(installed.size_bytes, context, details.kv_bytes_per_token)
        return fit_for(need, memory, server.loaded, model)

    return estimate


def delete_question(server: ServerModels | None, model: str) -> tuple[Content, Content]:
    """The confirm dialog's question and details: what it frees, and what else it means."""
    name = sanitize_line(model, 200)
    vm = server.vm if server is not None else "?"
    question = Content.assemble("Delete ", (name, "bold"), " from ", (vm, "bold"), "?")
    installed = next((m for m in server.installed if m.name == model), None) if server is not None else None
    size = format_bytes(installed.size_bytes) if installed is not None else "an unknown amount"
    details = f"This frees {size} of disk on {vm}"
    if server is not None and server.disk is not None:
        details += f" ({format_bytes(server.disk.free_bytes)} free now)"
    details += "."
    if server is not None and server.is_loaded(model):
        details += " It is loaded: Ollama unloads it first."
    details += " Using it again means pulling it again."
    return question, Content(details)


def palette_commands(snapshot: ModelsSnapshot, pane: ModelsPane, *, read_only: bool) -> Iterator[Command]:
    """Pull onto each Ollama VM and cancel each running pull (listed), and per model its
    details, delete and unload (found by searching: a fleet has many). Only for names that
    pass Ollama's grammar: the palette parses titles as markup, and those cannot hold any."""
    for server in snapshot.servers:
        if server.server.kind != "ollama":
            continue
        vm = server.vm
        if not read_only:
            yield f"Pull a model onto {vm}", "Asks which model", partial(pane.action_pull, vm), True
        for model in server.installed:
            if model_name_problem(model.name):
                continue
            for title, help_text, action in _model_commands(pane, read_only, server.is_loaded(model.name) is not None):
                yield title.format(model=model.name, vm=vm), help_text, partial(action, vm, model.name), False
    if read_only:
        return
    for vm, status in zip(snapshot.pull_vms, snapshot.pulls):
        if status.state is PullState.RUNNING and not model_name_problem(status.model):
            title = f"Cancel pulling {status.model} onto {vm}"
            yield title, "The layers that arrived stay", partial(pane.action_cancel, vm, status.model), True


def _model_commands(pane: ModelsPane, read_only: bool, loaded: bool) -> list[tuple[str, str, Callable[..., Any]]]:
    commands: list[tuple[str, str, Callable[..., Any]]] = [
        ("Details of {model} on {vm}", "Parameters, template, license", pane.action_details)
    ]
    if not read_only:
        commands.append(("Delete {model} from {vm}", "Asks first", pane.action_delete))
        if loaded:
            commands.append(("Unload {model} on {vm}", "Frees its memory; the files stay", pane.action_unload))
    return commands
