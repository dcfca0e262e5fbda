"""Pictures of the Chat tab (snapshots/test_ui_chat_snapshots/, 80x24): a streamed Markdown
reply with a code block, a stopped reply, the routing badge, the start-on-demand dialog.

Each app runs its own loopback Ollama, paced, so its own counters (tokens/s) are the same
on every run; the service's stepping clock makes the client-timed figures (TTFT, cost)
the same too (tests/chat_helpers.py).
"""

from __future__ import annotations

from pathlib import Path

from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.domain.power import PowerState
from aiconsole.ui.chat_dialogs import StartDialog
from tests.chat_helpers import REPLY, Fleet, send, serving_app, until

SIZE = (80, 24)


def test_a_streamed_markdown_reply_with_a_code_block(snap_compare, tmp_path: Path) -> None:
    app = serving_app(tmp_path, FakeOllama(reply_text=REPLY, tokens_per_s=1000.0))

    async def run_before(pilot) -> None:
        await send(pilot, "Write an add function in Python")
        await until(pilot, lambda: app.pane.live is None and len(app.pane.chat.turns) == 2)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_reply_stopped_with_escape(snap_compare, tmp_path: Path) -> None:
    ollama = FakeOllama(reply_text="The history of the GPU begins with " + "arcade machines " * 50, tokens_per_s=None)
    ollama.hold_reply_after(12)  # then silent until we leave: the same partial text every run
    app = serving_app(tmp_path, ollama)

    async def run_before(pilot) -> None:
        await send(pilot, "Tell me the whole history of the GPU, from the very first arcade boards to today")
        await until(pilot, lambda: app.pane.live is not None and app.pane.transcript.pieces_received == 12)
        await pilot.press("escape")
        await until(pilot, lambda: app.pane.live is None)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_routing_badge_says_which_rule_chose_the_model(snap_compare, tmp_path: Path) -> None:
    app = serving_app(tmp_path, FakeOllama(reply_text="Lima.", tokens_per_s=1000.0))

    async def run_before(pilot) -> None:
        await send(pilot, "Capital of Peru?")
        await until(pilot, lambda: len(app.pane.chat.turns) == 2)
        await send(pilot, "Why does `sorted(d)` return only the keys of my dict?")
        await until(pilot, lambda: app.pane.live is None and len(app.pane.chat.turns) == 4)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_start_on_demand_dialog(snap_compare, tmp_path: Path) -> None:
    app = serving_app(tmp_path, FakeOllama(reply_text="never", tokens_per_s=None), fleet=Fleet(PowerState.STOPPED))

    async def run_before(pilot) -> None:
        await send(pilot, "Draft an intro for my post on LoRA fine-tuning")
        await until(pilot, lambda: isinstance(app.screen, StartDialog))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
