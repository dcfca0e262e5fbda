"""`p` on the Models tab: which model to pull onto a VM, checked and estimated before any request.

The name is checked against Ollama's grammar as it is typed (`model_name_problem`), and
the answer is shown under the input; enter pulls only a valid name. Suggestions come
from the config's standard set and from the models other VMs have; for one of those
the size is known, so the dialog says at once whether it will fit on this VM's GPU.
For any other name the size comes with the download, and so does the estimate.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.suggester import SuggestFromList
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.ui.bindings import binding
from aiconsole.ui.dialog import DialogScreen
from aiconsole.ui.model_actions import PullOffer, Suggestion, verdict
from aiconsole.ui.widgets.model_lines import MUTED


def suggestion_prompt(suggestion: Suggestion) -> Content:
    return Content.assemble(
        (sanitize_line(suggestion.name, 200), "bold"), "  ", (sanitize_line(suggestion.note, 80), MUTED)
    )


class PullDialog(DialogScreen[str | None]):
    """Answers the model name to pull, or None when closed."""

    DEFAULT_CSS = """
    PullDialog > Vertical.dialog-box { width: 72; }
    PullDialog #pull-verdict { height: auto; margin: 0 0 1 0; }
    PullDialog #pull-suggestions { height: auto; max-height: 8; border: none; padding: 0; }
    PullDialog .hint { color: $text-muted; }
    """

    BINDINGS = [binding("dialog-close", "close", label="Close")]

    def __init__(self, offer: PullOffer, value: str = "") -> None:
        super().__init__()
        self.offer = offer
        self.value = value
        self._shown: list[Suggestion] = []

    def compose(self) -> ComposeResult:
        names = [s.name for s in self.offer.suggestions]
        with Vertical(classes="dialog-box") as box:
            box.border_title = Content.assemble("Pull a model onto ", (sanitize_line(self.offer.vm, 60), "bold"))
            box.border_subtitle = "enter pulls · tab: suggestions · esc closes"
            yield Input(self.value, placeholder="model name, e.g. llama3.1:8b", id="pull-name",
                        suggester=SuggestFromList(names, case_sensitive=False))  # fmt: skip
            yield Static(id="pull-verdict")
            yield OptionList(id="pull-suggestions")

    def on_mount(self) -> None:
        self._update(self.value)
        self.query_one(Input).focus()

    def _update(self, text: str) -> None:
        said, _ = verdict(self.offer, text)
        self.query_one("#pull-verdict", Static).update(said)
        wanted = text.strip().lower()
        shown = [s for s in self.offer.suggestions if wanted in s.name.lower()] or list(self.offer.suggestions)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(suggestion_prompt(s), id=f"s{i}") for i, s in enumerate(shown)])
        self._shown = shown

    def on_input_changed(self, event: Input.Changed) -> None:
        self._update(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        _, ok = verdict(self.offer, event.value)
        if ok:
            self.dismiss(event.value.strip())
        else:
            self.app.bell()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """A suggestion picked: into the input, to see its estimate before enter pulls it."""
        event.stop()
        name_input = self.query_one(Input)
        name_input.value = self._shown[event.option_index].name
        name_input.cursor_position = len(name_input.value)
        name_input.focus()

    def action_close(self) -> None:
        self.dismiss(None)
