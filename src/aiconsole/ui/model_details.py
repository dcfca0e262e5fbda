"""`enter` on a model: its details from the server (`/api/show`) and whether it fits the GPU.

Everything here but the labels comes from the server: parameters, template and license
are shown as inert text (sanitised, never parsed as markup), newlines kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from aiconsole.domain.models import FitEstimate, ModelDetails
from aiconsole.domain.sanitize import sanitize, sanitize_line
from aiconsole.ui.bindings import binding
from aiconsole.ui.dialog import DialogScreen
from aiconsole.ui.widgets.model_lines import MUTED, fit_content

MAX_BLOCK_LINES = 40
"""A template or parameter block longer than this is cut: the screen is for a look, not a dump."""


def text_block(title: str, text: str) -> list[Content]:
    """A titled block of server text, indented, sanitised and inert; nothing when empty."""
    body = sanitize(text).expandtabs(4).strip("\n")
    if not body.strip():
        return []
    lines = body.splitlines()
    if len(lines) > MAX_BLOCK_LINES:
        lines = [*lines[:MAX_BLOCK_LINES], f"… ({len(lines) - MAX_BLOCK_LINES} more lines)"]
    return [Content(""), Content.styled(title, "bold"), *(Content("  " + line.rstrip()) for line in lines)]


def details_content(details: ModelDetails, fit: FitEstimate | None, context: int) -> Content:
    facts = [sanitize_line(part, 60) for part in (details.family, details.parameter_size, details.quantization) if part]
    if details.context_length:
        facts.append(f"trained context {details.context_length}")
    lines = [Content(" · ".join(facts) or "no details given")]
    if details.capabilities:
        capabilities = ", ".join(sanitize_line(c, 40) for c in details.capabilities)
        lines.append(Content.assemble(("capabilities ", MUTED), capabilities))
    if fit is not None:
        lines.append(Content.assemble((f"at context {context}: ", MUTED), fit_content(fit)))
    lines += text_block("Parameters", details.parameters)
    lines += text_block("Template", details.template)
    lines += text_block("License (first lines)", details.license_head)
    return Content("\n").join(lines)


class ModelDetailsScreen(DialogScreen[None]):
    """Loads the details in a worker: "loading…" first, then the details or the error."""

    DEFAULT_CSS = """
    ModelDetailsScreen > VerticalScroll.dialog-box { width: 90; }
    ModelDetailsScreen #details-body { width: 100%; }
    """

    BINDINGS = [binding("dialog-close", "close", label="Close")]

    def __init__(
        self,
        vm: str,
        model: str,
        load: Callable[[], Awaitable[ModelDetails]],
        estimate: Callable[[ModelDetails], FitEstimate | None],
        context: int,
    ) -> None:
        super().__init__()
        self.vm, self.model = vm, model
        self._loader, self._estimator, self._context_length = load, estimate, context

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog-box") as scroll:
            scroll.border_title = Content.assemble(
                (sanitize_line(self.model, 100), "bold"), " on ", sanitize_line(self.vm, 60)
            )
            scroll.border_subtitle = "esc to close"
            yield Static(Content.styled("loading…", MUTED), id="details-body")

    def on_mount(self) -> None:
        self.run_worker(self._show_details(), exclusive=True, exit_on_error=False)

    async def _show_details(self) -> None:
        body = self.query_one("#details-body", Static)
        try:
            details = await self._loader()
        except Exception as error:  # shown, never fatal: a 404, a server down
            body.update(Content.assemble(("✖ ", "$error bold"), (sanitize_line(str(error), 500), "$error")))
            return
        body.update(details_content(details, self._estimator(details), self._context_length))

    def action_close(self) -> None:
        self.dismiss(None)
