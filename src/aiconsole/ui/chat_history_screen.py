"""Saved chats: newest first; `enter` resumes, `d` deletes (asks first), `e` exports to Markdown.

Titles are the operator's own first lines, but they may quote anything a model said, so
they are shown sanitised and never as markup. Export writes into the folder the console
was started from, and says where.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.ui.bindings import binding
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.dialog import DialogScreen

if TYPE_CHECKING:
    from aiconsole.services.chat_history import ChatHistory, ChatSummary


def summary_line(summary: ChatSummary, now: datetime) -> Content:
    """`Titles for a LoRA post   inference · auto · 6 turns · 2h ago`."""
    from aiconsole.domain.format import format_duration

    age = format_duration((now - summary.updated_at).total_seconds())
    about = f"{summary.vm} · {summary.model}{' · ' + summary.persona if summary.persona else ''}"
    title = sanitize_line(summary.title or "(untitled)", 60)
    return Content.assemble(
        (title, "bold"),
        "  ",
        (sanitize_line(f"{about} · {summary.messages} turns · {age} ago", 80), "$foreground-muted"),
    )


class ChatHistoryScreen(DialogScreen[int | None]):
    """Answers the id of the chat to resume, or None."""

    DEFAULT_CSS = """
    ChatHistoryScreen > .dialog-box { width: 90; height: 80%; }
    ChatHistoryScreen OptionList { height: 1fr; border: none; }
    ChatHistoryScreen #history-help { color: $foreground-muted; height: 1; }
    """
    BINDINGS = [
        binding("history-resume", "resume", label="Resume"),
        binding("history-delete", "delete", label="Delete"),
        binding("history-export", "export", label="Export"),
        binding("dialog-close", "close", label="Close"),
    ]

    def __init__(self, history: ChatHistory, export_to: Path | None = None) -> None:
        super().__init__()
        self.history = history
        self.export_to = export_to or Path.cwd()
        self.summaries: list[ChatSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box") as box:
            box.border_title = "Saved chats"
            yield OptionList(id="chats")
            yield Static("enter: resume · d: delete · e: export to Markdown · esc: close", id="history-help")

    def on_mount(self) -> None:
        self.reload()
        self.query_one(OptionList).focus()

    def reload(self) -> None:
        from datetime import UTC

        now = datetime.now(UTC)
        self.summaries = self.history.chats()
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        if not self.summaries:
            options.add_option(Option(Content.styled("No saved chats yet.", "$foreground-muted"), disabled=True))
            return
        options.add_options([Option(summary_line(s, now), id=str(s.id)) for s in self.summaries])
        options.highlighted = min(highlighted or 0, len(self.summaries) - 1)

    def _selected(self) -> ChatSummary | None:
        index = self.query_one(OptionList).highlighted
        return self.summaries[index] if index is not None and index < len(self.summaries) else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_resume()

    def action_resume(self) -> None:
        if (summary := self._selected()) is not None:
            self.dismiss(summary.id)

    def action_delete(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        title = sanitize_line(summary.title or "(untitled)", 60)
        question = ConfirmScreen(
            Content(f"Delete the chat {title!r}?"),
            Content(f"Its {summary.messages} turns are removed for good."),
            "Delete",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.history.delete(summary.id)
                self.reload()

        self.app.push_screen(question, answered)

    def action_export(self) -> None:
        from aiconsole.assembly import local_timezone
        from aiconsole.services.chat_history import write_export

        summary = self._selected()
        if summary is None:
            return
        try:
            path = write_export(self.history.load(summary.id), self.export_to, local_timezone(None))
        except OSError as error:
            self.notify(f"Could not export: {error}", severity="error", markup=False)
            return
        self.notify(f"Exported to {path}", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
