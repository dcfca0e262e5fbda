"""The chat's dialogs: starting a stopped VM to send to it, and choosing VM, model and persona."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Label, Select

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.ui.bindings import binding
from aiconsole.ui.confirm import ConfirmScreen
from aiconsole.ui.dialog import DialogScreen

if TYPE_CHECKING:
    from aiconsole.services.chat_service import ChatService, ChatTarget

AUTO = "auto"


class StartDialog(ConfirmScreen):
    """ "inference is stopped: start it to send?" with what it costs while it runs."""

    def __init__(self, target: ChatTarget) -> None:
        vm = sanitize_line(target.vm, 60)
        rate = f"${target.hourly_usd:.2f}/h" if target.hourly_usd else "no hourly cost"
        question = Content(f"{vm} is stopped. Start it to send this message?")
        details = Content(
            f"It costs {rate} while it runs. The message is sent once {vm} is running and "
            f"{sanitize_line(target.service, 60)} answers its health check (often a minute or two). "
            "Its idle timer stops it again when nobody uses it."
        )
        super().__init__(question, details, "Start and send")


@dataclass(frozen=True)
class ChatSetup:
    target: ChatTarget | None
    model: str
    persona: str | None


class SetupDialog(DialogScreen[ChatSetup | None]):
    """Where the chat goes (VM and server), which model (or `auto`), and the persona."""

    DEFAULT_CSS = """
    SetupDialog Label { color: $foreground-muted; }
    SetupDialog Select { width: 1fr; }
    SetupDialog Horizontal { height: auto; align-horizontal: right; margin: 1 0 0 0; }
    SetupDialog Button { margin-left: 2; }
    """
    BINDINGS = [binding("dialog-close", "close", label="Cancel")]

    def __init__(self, service: ChatService, current: ChatSetup, personas: tuple[tuple[str, str], ...],
                 models_for: Callable[[ChatTarget], list[str]]) -> None:  # fmt: skip
        super().__init__()
        self.service, self.current, self.personas, self.models_for = service, current, personas, models_for

    def compose(self) -> ComposeResult:
        targets = [(self._target_label(t), index) for index, t in enumerate(self.service.targets)]
        current = self.current.target
        chosen = next((i for i, t in enumerate(self.service.targets) if t == current), Select.BLANK)
        personas = [("no persona", ""), *((f"{name}: {sanitize_line(about, 50)}" if about else name, name)
                                          for name, about in self.personas)]  # fmt: skip
        with Vertical(classes="dialog-box") as box:
            box.border_title = "Chat with"
            yield Label("VM and server", markup=False)
            yield Select(targets, value=chosen, allow_blank=False, id="target")
            yield Label("Model (auto: chosen per message by the [chat] rules)", markup=False)
            yield Select(self._model_options(current), value=self.current.model, allow_blank=False, id="model")
            yield Label("Persona (its system prompt is sent first)", markup=False)
            yield Select(personas, value=self.current.persona or "", allow_blank=False, id="persona")
            with Horizontal():
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def _target_label(self, target: ChatTarget) -> str:
        power = self.service.power(target).value
        rate = f", ${target.hourly_usd:.2f}/h" if target.hourly_usd else ""
        return sanitize_line(f"{target.label} ({target.kind}, {power}{rate})", 60)

    def _model_options(self, target: ChatTarget | None) -> list[tuple[str, str]]:
        names = self.models_for(target) if target is not None else []
        rules = [rule.model for rule in self.service.options.rules] + [self.service.options.fallback_model]
        ordered = list(dict.fromkeys([*names, *rules, self.current.model]))
        ordered = [name for name in ordered if name != AUTO]
        return [("auto", AUTO), *((sanitize_line(name, 60), name) for name in ordered)]

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "target" and isinstance(event.value, int):
            target = self.service.targets[event.value]
            model = self.query_one("#model", Select)
            value = model.value
            model.set_options(self._model_options(target))
            model.value = value if value in [v for _, v in self._model_options(target)] else AUTO

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.dismiss(self._chosen())
        else:
            self.dismiss(None)

    def _chosen(self) -> ChatSetup:
        index = self.query_one("#target", Select).value
        target = self.service.targets[index] if isinstance(index, int) else self.current.target
        model = self.query_one("#model", Select).value
        persona = self.query_one("#persona", Select).value
        return ChatSetup(
            target, model if isinstance(model, str) else AUTO, persona if isinstance(persona, str) and persona else None
        )

    def action_close(self) -> None:
        self.dismiss(None)
