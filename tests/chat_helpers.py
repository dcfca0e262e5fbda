"""The chat UI tests' harness: the Chat tab in an app of its own, fed by the real service.

`ChatApp` holds a `ChatPane` and a footer; `chat_app()` runs it (80x24) with the real
`ChatService` talking to a loopback `FakeOllama` through the real client, a real SQLite
history in the test's folder, and `Fleet`, a stand-in for the monitor's power. The
service reads `SteppingClock`, so TTFT, tokens/s and cost come out the same every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Footer

from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.domain.power import PowerState
from aiconsole.services.chat_history import ChatHistory
from aiconsole.services.chat_service import ChatOptions, ChatService, ChatTarget
from aiconsole.services.endpoints import Endpoints
from aiconsole.ui.chat_pane import ChatPane, ChatPaneOptions
from aiconsole.ui.widgets.chat_transcript import ChatTranscript

REPLY = """\
Here is a function:

```python
def add(a, b):
    return a + b
```

It **adds** two numbers.
"""


class SteppingClock:
    """Each read is 50 ms after the last: replies' figures come out the same every run."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


class Fleet:
    """The monitor's power and activity, as the chat uses them."""

    def __init__(self, power: PowerState = PowerState.RUNNING) -> None:
        self.power = power
        self.started: list[str] = []
        self.activity: list[str] = []

    def powers(self) -> dict[str, PowerState]:
        return {"inference": self.power}

    async def start_vm(self, name: str) -> None:
        self.started.append(name)
        await asyncio.sleep(0.05)
        self.power = PowerState.RUNNING

    def note_activity(self, name: str, kind: str, detail: str, *, lease_s: float | None = None) -> None:
        self.activity.append(name)


class ChatApp(App[None]):
    """The Chat tab alone, with its footer, fed by a real service."""

    def __init__(self, service: ChatService, history: ChatHistory | None, *, read_only: bool = False,
                 options: ChatPaneOptions | None = None) -> None:  # fmt: skip
        super().__init__()
        self.service, self.history = service, history
        self.pane = ChatPane(options or ChatPaneOptions(), read_only=read_only, id="chat")

    def compose(self) -> ComposeResult:
        yield self.pane
        yield Footer()

    server: FakeOllama | None = None
    """A server the app starts and stops on its own loop (snapshot tests run the app themselves)."""

    async def on_mount(self) -> None:
        if self.server is not None:
            await self.server.start()
        self.pane.use_service(self.service, self.history)
        self.pane.prompt.cursor_blink = False  # a blinking cursor would differ between pictures
        self.pane.prompt.focus()

    async def on_unmount(self) -> None:
        await self.service.aclose()
        if self.server is not None:
            await self.server.close()
        if self.history is not None:
            self.history.close()


def build_chat_app(tmp_path: Path, ollama: FakeOllama, *, fleet: Fleet | None = None, read_only: bool = False,
                   options: ChatPaneOptions | None = None, history: bool = True) -> ChatApp:  # fmt: skip
    """The app, its service pointed at `ollama` (bound already: its URL is known)."""
    endpoints = Endpoints()
    endpoints.add("inference", "ollama", ollama.url)
    target = ChatTarget("inference", "ollama", "ollama", 0.35, can_power=True)
    personas = {"editor": "You are the editorial assistant of a technical blog."}
    service = ChatService([target], endpoints, ChatOptions(personas=personas), fleet=fleet or Fleet(),
                          clock=SteppingClock())  # fmt: skip
    store = ChatHistory.open(tmp_path / "chats.sqlite3") if history else None
    return ChatApp(service, store, read_only=read_only, options=options)


def serving_app(tmp_path: Path, ollama: FakeOllama, **options) -> ChatApp:
    """`build_chat_app` whose app starts `ollama` on mount and stops it on unmount."""
    ollama.server.bind()
    app = build_chat_app(tmp_path, ollama, **options)
    app.server = ollama
    return app


@asynccontextmanager
async def chat_app(tmp_path: Path, ollama: FakeOllama, **options) -> AsyncIterator[tuple[ChatApp, object]]:
    """The app running headless at 80x24 against the running `ollama`: (app, pilot)."""
    app = build_chat_app(tmp_path, ollama, **options)
    async with app.run_test(size=(80, 24)) as pilot:
        yield app, pilot


def screen_text(transcript: ChatTranscript) -> str:
    """Every line of the conversation as drawn (also those scrolled out of view)."""
    transcript.paint()  # what is pending, now: the 10 Hz paint may not have come yet
    return "\n".join(transcript.line_at(row).text for row in range(transcript.line_count))


async def send(pilot, text: str) -> None:
    pilot.app.pane.prompt.text = text
    await pilot.press("enter")


async def until(pilot, condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition never held")
