"""The Chat tab: a conversation with a model on one of the fleet's VMs, streamed.

    ┌ inference/ollama · auto · editor · running · $0.35/h ───────────┐  the bar
    │ you ▸ …                                                         │
    │ llama3.1:8b ← auto: default ▸ … (Markdown, painted 10x a second) │  ChatTranscript
    ├ ▶ llama3.1:8b · TTFT 0.31 s · 48.2 tokens/s · 312 tokens ───────┤  the status line
    └ Message (enter: send · ctrl+j: new line · …)                    ┘  PromptArea

Reading and painting are two jobs: the reply's worker reads the stream and hands each
piece to the transcript (`push`: an append, nothing drawn), and the transcript paints
from that buffer ten times a second, so a fast model never waits for the screen.
`esc` cancels the worker: leaving the backend's `reply` block closes the request (the
server stops generating), and what came so far stays, marked as stopped.

Sending to a VM that is stopped asks first (showing $/h), starts it through its
provider, waits for the model server's health, then sends. The chat service, built
after telemetry (it reaches servers through the SSH forwards), arrives with
`use_service`; until then the tab says it is starting. Each exchange is written to the
chat history (the original text; only the screen is sanitised).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import Worker

from aiconsole.domain.chat import ChatMessage, ReplyStats, stats_line
from aiconsole.domain.chat_history import StoredMessage
from aiconsole.domain.chat_routing import RouteDecision
from aiconsole.domain.sanitize import sanitize, sanitize_line
from aiconsole.ui.bindings import binding
from aiconsole.ui.chat_state import ChatPaneOptions, Conversation, LiveReply, live_status, reply_header, store_turn

if TYPE_CHECKING:
    from aiconsole.services.chat_history import ChatHistory, StoredChat
    from aiconsole.services.chat_service import ChatService, ChatTarget
    from aiconsole.ui.chat_prompt import PromptArea
    from aiconsole.ui.widgets.chat_transcript import ChatTranscript

MUTED = "$foreground-muted"
LIVE_EVERY_S = 0.5
STARTING = "◐ starting the chat (it reaches the servers through telemetry's SSH connections)…"


class ChatPane(Vertical):
    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #chat-bar { height: 1; padding: 0 1; background: $panel; color: $foreground-muted; }
    ChatPane #chat-body { height: 1fr; }
    ChatPane #chat-input { height: auto; }
    ChatPane ChatTranscript { height: 1fr; }
    ChatPane #chat-status { height: 1; padding: 0 1; color: $foreground-muted; }
    """

    BINDINGS = [
        binding("chat-stop", "stop", label="Stop"),
        binding("chat-new", "new_chat", label="New"),
        binding("chat-setup", "setup", label="Model"),
        binding("chat-history", "history", label="Chats"),
        binding("chat-copy-reply", "copy_reply", show=False),
        binding("chat-copy-code", "copy_code", show=False),
        binding("chat-prompt", "focus_prompt", show=False),
    ]

    def __init__(
        self, options: ChatPaneOptions | None = None, *, read_only: bool = False,
        clock: Callable[[], float] = time.monotonic, id: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(id=id)
        self.options = options or ChatPaneOptions()
        self.read_only = read_only
        self.service: ChatService | None = None
        self.history: ChatHistory | None = None
        self.models_for: Callable[[ChatTarget], list[str]] = lambda target: []
        self.chat = Conversation(model=self.options.model, persona=self.options.persona)
        self.live: LiveReply | None = None
        self._clock = clock
        self._live_timer: Timer | None = None
        self._note = STARTING

    def compose(self) -> ComposeResult:
        yield Static("", id="chat-bar", markup=False)
        yield Vertical(id="chat-body")
        yield Static(Content.styled(self._note, MUTED), id="chat-status", markup=False)
        yield Vertical(id="chat-input")

    def _mount_body(self) -> None:
        """The transcript and the prompt, once the chat can send. Not at start-up: importing
        them (Rich's Markdown, markdown-it, Pygments, TextArea) costs ~0.1 s, which the
        console's first screens have no room for (docs/performance.md)."""
        if self.query("#transcript"):
            return
        from aiconsole.ui.chat_prompt import PromptArea
        from aiconsole.ui.widgets.chat_transcript import ChatTranscript

        self.query_one("#chat-body").mount(ChatTranscript(id="transcript"))
        self.query_one("#chat-input").mount(PromptArea(id="prompt"))

    @property
    def ready(self) -> bool:
        """The transcript and prompt are there (the chat service came)."""
        return bool(self.query("#transcript"))

    @property
    def transcript(self) -> ChatTranscript:
        return self.query_one("#transcript")  # type: ignore[return-value]

    @property
    def prompt(self) -> PromptArea:
        return self.query_one("#prompt")  # type: ignore[return-value]

    @property
    def focus_target(self) -> PromptArea | None:
        return self.prompt if self.ready else None

    # -- what feeds it --------------------------------------------------------------------

    def use_service(self, service: ChatService, history: ChatHistory | None = None,
                    models_for: Callable[[ChatTarget], list[str]] | None = None) -> None:  # fmt: skip
        """The chat can send from now on; `history`: where exchanges are kept (None: nowhere)."""
        self.service, self.history = service, history
        self._mount_body()
        if models_for is not None:
            self.models_for = models_for
        if self.chat.target is None:
            self.chat.target = self._default_target(service)
        self.say(
            "" if self.chat.target else "No ollama or openai services in the config: add one under [[vm.service]]."
        )
        self.draw_bar()

    def _default_target(self, service: ChatService) -> ChatTarget | None:
        if self.options.vm is not None:
            return service.target(self.options.vm, self.options.service)
        return service.targets[0] if service.targets else None

    def failed(self, error: object) -> None:
        self.service = None
        self.say(f"The chat is off: {sanitize_line(str(error), 300)}")

    def say(self, note: str) -> None:
        """The status line's text when no reply streams (hints, progress of a start, errors)."""
        self._note = note or "enter: send · esc: stop · ctrl+n: new · ctrl+t: model · ctrl+o: chats"
        if self.live is None and self.is_mounted:
            self.query_one("#chat-status", Static).update(Content.styled(self._note, MUTED))

    def draw_bar(self) -> None:
        """The bar: where messages go, the model setting, the persona, the VM's power and rate."""
        chat, service = self.chat, self.service
        if chat.target is None or service is None:
            text = "chat · no server yet"
        else:
            power = service.power(chat.target).value
            rate = f" · ${chat.target.hourly_usd:.2f}/h" if chat.target.hourly_usd else ""
            text = f"{chat.target.label} · {chat.model} · {chat.persona or 'no persona'} · {power}{rate}"
        if self.is_mounted:
            self.query_one("#chat-bar", Static).update(sanitize_line(text, 300))

    # -- sending --------------------------------------------------------------------------

    def on_prompt_area_submitted(self, event: PromptArea.Submitted) -> None:
        event.stop()
        text = event.text.strip()
        if not text:
            return
        if self.live is not None:
            self.notify("A reply is still streaming: esc stops it.", severity="warning")
            return
        if self.service is None or self.chat.target is None:
            self.notify("The chat is not ready yet.", severity="warning")
            return
        self.send(text)

    def send(self, text: str) -> Worker[None]:
        """Send `text` as the prompt does (the worker ends when the reply has)."""
        return self.run_worker(self._send(text), group="chat-reply", exclusive=True, exit_on_error=False)

    async def _send(self, text: str) -> None:
        service, target = self.service, self.chat.target
        assert service is not None and target is not None
        if service.needs_start(target) and not await self._start(service, target):
            return
        decision = service.choose_model(self.chat.model, text)
        self.prompt.clear()
        self.transcript.add_turn("user", text, header="you")
        self.chat.turns.append(ChatMessage("user", text))
        self._store(StoredMessage("user", text, datetime.now(UTC)))
        from aiconsole.services.chat_base import ChatError

        try:
            messages = service.messages(self.chat.turns, self.chat.persona)
        except ChatError as error:
            self.say(str(error))
            return
        await self._stream(service, target, decision, messages)

    async def _start(self, service: ChatService, target: ChatTarget) -> bool:
        """Ask, then start the VM and wait for its server; False when not started."""
        from aiconsole.services.chat_base import ChatError
        from aiconsole.ui.chat_dialogs import StartDialog

        if self.read_only:
            self.say(f"{target.vm} is stopped, and read-only mode cannot start it.")
            return False
        if not await self.app.push_screen_wait(StartDialog(target)):
            return False
        try:
            await service.start(target, progress=self.say)
        except ChatError as error:
            self.say(str(error))
            self.notify(str(error), severity="error", markup=False)
            return False
        self.draw_bar()
        return True

    async def _stream(self, service: ChatService, target: ChatTarget, decision: RouteDecision,
                      messages: list[ChatMessage]) -> None:  # fmt: skip
        from aiconsole.services.chat_base import ChatError

        transcript = self.transcript
        transcript.begin_reply(reply_header(decision))
        live = self.live = LiveReply(decision.model, self._clock())
        self._live_timer = self.set_interval(LIVE_EVERY_S, self._show_live)
        reply = None
        try:
            async with service.reply(target, decision.model, messages) as reply:
                clock, push = self._clock, transcript.push
                async for piece in reply:  # the hot loop: a check and an append per piece
                    if live.first_at is None:
                        live.first_at = clock()
                    push(piece)
        except asyncio.CancelledError:
            self._finish(target, decision, reply.stats if reply else None, "")
            raise
        except ChatError as error:
            self._finish(target, decision, reply.stats if reply else None, str(error))
        else:
            self._finish(target, decision, reply.stats, "")

    def _finish(self, target: ChatTarget, decision: RouteDecision, stats: ReplyStats | None, error: str) -> None:
        """The reply ended (done, stopped or failed): its figures, its turn, its history row."""
        if self._live_timer is not None:
            self._live_timer.stop()
        self.live = None
        stopped = stats is not None and stats.done_reason == "cancelled"
        footer = stats_line(stats, target.hourly_usd, with_reason=not stopped) if stats else ""
        self.transcript.end_reply(footer, stopped=stopped, error=sanitize_line(error, 300) if error else "")
        text = self.transcript.last_reply_text
        if text:
            self.chat.turns.append(ChatMessage("assistant", text))
        self._store(StoredMessage.reply(text, datetime.now(UTC), decision, stats, error))
        self.say(sanitize_line(error, 300) if error else "stopped: the partial reply is kept" if stopped else "")

    def _show_live(self) -> None:
        if self.live is not None:
            text = live_status(self.live, self.transcript.pieces_received, self._clock())
            self.query_one("#chat-status", Static).update(Content.styled(sanitize_line(text), MUTED))

    def _store(self, message: StoredMessage) -> None:
        """One turn into the history (the original text). A failure to write is said, never fatal."""
        if self.history is None or self.chat.target is None:
            return
        try:
            store_turn(self.history, self.chat, message)
        except Exception as exc:  # a full disk or a locked file: the chat goes on, unsaved
            self.notify(f"Could not save the chat: {exc}", severity="warning", markup=False)

    # -- actions --------------------------------------------------------------------------

    def action_stop(self) -> None:
        """esc: stop the reply (or the start under way); idle: leave the prompt for the view."""
        if not self.ready:
            return
        workers = [w for w in self.workers if w.group == "chat-reply" and w.is_running]
        if workers:
            for worker in workers:
                worker.cancel()
            return
        if self.prompt.has_focus:
            self.transcript.focus()

    def action_focus_prompt(self) -> None:
        if self.ready:
            self.prompt.focus()

    def action_new_chat(self) -> None:
        if not self.ready:
            return
        if self.live is not None:
            self.notify("A reply is still streaming: esc stops it first.", severity="warning")
            return
        self.chat = Conversation(target=self.chat.target, model=self.chat.model, persona=self.chat.persona)
        self.transcript.clear()
        self.say("")
        self.prompt.focus()

    def action_setup(self) -> None:
        from aiconsole.ui.chat_dialogs import ChatSetup, SetupDialog

        if self.service is None:
            self.notify("The chat is not ready yet.", severity="warning")
            return
        current = ChatSetup(self.chat.target, self.chat.model, self.chat.persona)
        dialog = SetupDialog(self.service, current, self.options.personas, self.models_for)
        self.app.push_screen(dialog, self._set_up)

    def _set_up(self, setup: object) -> None:
        from aiconsole.ui.chat_dialogs import ChatSetup

        if isinstance(setup, ChatSetup):
            self.chat.target, self.chat.model, self.chat.persona = setup.target, setup.model, setup.persona
            if self.history is not None and self.chat.chat_id is not None and setup.target is not None:
                self.history.set_target(self.chat.chat_id, vm=setup.target.vm, service=setup.target.service,
                                        model=setup.model, persona=setup.persona or "")  # fmt: skip
            self.draw_bar()
        self.prompt.focus()

    def action_history(self) -> None:
        from aiconsole.ui.chat_history_screen import ChatHistoryScreen

        if self.history is None:
            self.notify("No chat history: it is off ([chat] history = false) or not ready yet.", severity="warning")
            return
        self.app.push_screen(ChatHistoryScreen(self.history), self._resume)

    def _resume(self, chat_id: object) -> None:
        if isinstance(chat_id, int) and self.history is not None and self.live is None:
            self.resume(self.history.load(chat_id))
        self.prompt.focus()

    def resume(self, stored: StoredChat) -> None:
        """Show a saved chat and go on with it (its target, model and persona if they still exist)."""
        target = self.chat.target  # the one shown now, unless the saved chat's still exists
        if self.service is not None:
            wanted = [
                t for t in self.service.targets if (t.vm, t.service) == (stored.summary.vm, stored.summary.service)
            ]
            target = wanted[0] if wanted else target
        known = {name for name, _ in self.options.personas}
        persona = stored.summary.persona if stored.summary.persona in known else None
        self.chat = Conversation(target, stored.summary.model, persona, stored.history(), stored.summary.id)
        self.transcript.clear()
        for message in stored.messages:
            if message.role == "system":
                continue
            header = (
                "you"
                if message.role == "user"
                else reply_header(RouteDecision(message.model, message.route_rule, message.route_reason))
            )
            hourly = target.hourly_usd if target else 0.0
            footer = stats_line(message.stats, hourly, with_reason=not message.stopped) if message.stats else ""
            self.transcript.add_turn(message.role, message.content, header=header, footer=footer,
                                     stopped=message.stopped)  # fmt: skip
        self.say(f"resumed: {sanitize_line(stored.summary.title, 80)}")
        self.draw_bar()

    def commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """The palette's chat commands: (title, help, callback)."""
        return [
            ("Chat: new chat", "Start a new conversation", self.action_new_chat),
            ("Chat: choose VM, model, persona", "Where messages go and who answers", self.action_setup),
            ("Chat: saved chats", "Resume, delete or export a chat", self.action_history),
            ("Chat: copy the last reply", "To the clipboard (OSC 52)", self.action_copy_reply),
            ("Chat: copy the last code block", "To the clipboard (OSC 52)", self.action_copy_code),
            ("Chat: stop the reply", "The partial reply is kept", self.action_stop),
        ]

    def action_copy_reply(self) -> None:
        if self.ready:
            self._copy(self.transcript.last_reply_text, "the last reply")

    def action_copy_code(self) -> None:
        if self.ready:
            self._copy(self.transcript.last_code_block() or "", "the last code block")

    def _copy(self, text: str, what: str) -> None:
        """Through OSC 52, so it works over SSH; the copy is sanitised like the screen (a
        clipboard pasted into a terminal must not carry escape sequences)."""
        if not text:
            self.notify(f"Nothing to copy: no {what.removeprefix('the ')} yet.", severity="warning")
            return
        clean = sanitize(text)
        self.app.copy_to_clipboard(clean)
        self.notify(f"Copied {what} ({len(clean):,} characters) with OSC 52.", markup=False)
