"""The chat's prompt: a text area where `enter` sends and `ctrl+j` starts a new line.

A plain `Input` cannot hold the code or the multi-line text people paste into a chat,
and a `TextArea` inserts a newline on enter. Terminals cannot tell shift+enter from
enter, so a new line is `ctrl+j` (the line feed key), and pasted text keeps its own
newlines (a paste arrives as one event, not as enter keys).
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from aiconsole.keymap import KEYS_BY_ID
from aiconsole.ui.bindings import binding


class PromptArea(TextArea):
    DEFAULT_CSS = """
    PromptArea { height: auto; min-height: 3; max-height: 8; border: tall $border-blurred; padding: 0 1; }
    PromptArea:focus { border: tall $border; }
    """

    BINDINGS = [
        binding("chat-send", "submit", label="Send"),
        binding("chat-newline", "newline", show=False),
    ]

    class Submitted(Message):
        """The operator sent `text` (the prompt is not cleared: the pane decides when)."""

        def __init__(self, prompt: PromptArea, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.placeholder = "Message (enter: send · ctrl+j: new line · ctrl+t: model · f1: keys)"

    async def _on_key(self, event: events.Key) -> None:
        # TextArea inserts a newline for enter itself, before bindings are looked at: the
        # keys bound to sending (enter by default, or what the config rebinds) send instead.
        if event.key in self._send_keys():
            event.stop()
            event.prevent_default()
            self.action_submit()
            return
        await super()._on_key(event)

    def _send_keys(self) -> set[str]:
        keymap = self.app._keymap if hasattr(self.app, "_keymap") else {}
        keys = keymap.get("chat-send") or KEYS_BY_ID["chat-send"].keys
        return {key.strip() for key in keys.split(",")}

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")
