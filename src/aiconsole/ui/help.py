"""`?`: every key that works where the user pressed it, with what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from aiconsole.ui.bindings import binding
from aiconsole.ui.dialog import DialogScreen

# (key as shown, description): built by the caller from the screen's active bindings.
KeyRow = tuple[str, str]


class HelpScreen(DialogScreen[None]):
    # Wider than the other dialogs: at 80 columns the list scrolls, and a row that wrapped
    # beside the scrollbar would read as two keys.
    DEFAULT_CSS = """
    HelpScreen > .dialog-box { width: 76; }
    HelpScreen #keys { width: 100%; }
    """

    BINDINGS = [binding("help-close", "dismiss", label="Close")]

    def __init__(self, rows: list[KeyRow], footnote: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.footnote = footnote

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog-box") as scroll:
            scroll.border_title = "Keys"
            scroll.border_subtitle = "esc to close"
            yield Static(self._table(), id="keys")

    def _table(self) -> Content:
        width = max((len(key) for key, _ in self.rows), default=4) + 2
        lines = [
            Content.assemble((key.ljust(width), "$accent bold"), description)
            for key, description in self.rows
        ]
        if self.footnote:
            lines += [Content(""), Content.styled(self.footnote, "$foreground-muted")]
        return Content("\n").join(lines)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
