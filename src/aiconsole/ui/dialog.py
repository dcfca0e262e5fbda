"""The look the console's dialogs share: one box in the middle, over the dimmed screen."""

from __future__ import annotations

from textual.screen import ModalScreen, ScreenResultType


class DialogScreen(ModalScreen[ScreenResultType]):
    """A modal screen whose box is its child with the class `dialog-box` (64 columns wide,
    as tall as its content, at most 90 % of the screen); subclasses may widen it."""

    DEFAULT_CSS = """
    DialogScreen { align: center middle; background: $background 60%; }
    DialogScreen > .dialog-box {
        width: 64;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    """
