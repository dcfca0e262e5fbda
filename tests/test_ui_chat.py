"""The Chat tab: sending, streaming, stopping, routing, personas, start on demand, history, copy.

The pane runs in a small app of its own (tests/chat_helpers.py) with the real
`ChatService` talking to the loopback Ollama (`FakeOllama`) through the real client, a
real SQLite history in the test's folder, and a stand-in for the fleet's power.
"""

from __future__ import annotations

from tests.chat_helpers import REPLY, Fleet, chat_app, screen_text, send, until

from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.domain.power import PowerState
from aiconsole.ui.chat_dialogs import StartDialog
from aiconsole.ui.chat_pane import ChatPaneOptions


async def test_a_reply_streams_in_and_ends_with_its_figures(tmp_path) -> None:
    async with FakeOllama(reply_text=REPLY, tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Write an add function in Python")
            pane = app.pane
            await until(pilot, lambda: pane.live is None and len(pane.chat.turns) == 2)
            await pilot.pause(0.2)
            shown = screen_text(pane.transcript)
            assert "def add(a, b):" in shown and "It adds two numbers." in shown
            assert "deepseek-coder-v2:16b ← auto: code" in shown  # the routing badge
            assert "tokens/s" in shown and "$0.0" in shown  # figures and cost after the reply
            assert pane.chat.turns[1].content == REPLY
            assert pane.prompt.text == ""


async def test_esc_stops_the_reply_keeps_the_partial_text_and_closes_the_request(tmp_path) -> None:
    async with FakeOllama(reply_text="word " * 400, tokens_per_s=40.0) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Tell me a long story about GPUs and their fans")  # quick: mistral
            pane = app.pane
            await until(pilot, lambda: pane.live is not None and pane.transcript.pieces_received >= 5)
            assert ollama.loaded["mistral:7b"].in_use == 1
            await pilot.press("escape")
            await until(pilot, lambda: pane.live is None)
            await pilot.pause(0.2)
            partial = pane.chat.turns[-1].content
            assert partial.startswith("word ") and len(partial) < len("word " * 400)
            assert "stopped" in screen_text(pane.transcript)
            await until(pilot, lambda: ollama.loaded["mistral:7b"].in_use == 0)  # the server's generator ended


async def test_the_persona_chosen_sends_its_system_prompt(tmp_path) -> None:
    async with FakeOllama(reply_text="Three titles.", tokens_per_s=None) as ollama:
        options = ChatPaneOptions(model="llama3.1:8b", persona="editor", personas=(("editor", "blog"),))
        async with chat_app(tmp_path, ollama, options=options) as (app, pilot):
            await send(pilot, "Titles for my post on LoRA fine-tuning on one 4090, please")
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            sent = ollama.last_body["messages"]
            assert sent[0] == {"role": "system", "content": "You are the editorial assistant of a technical blog."}
            assert ollama.last_body["model"] == "llama3.1:8b"


async def test_a_second_message_carries_the_whole_conversation(tmp_path) -> None:
    async with FakeOllama(reply_text="Paris.", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Capital of France?")
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            await send(pilot, "And of Spain?")
            await until(pilot, lambda: len(app.pane.chat.turns) == 4)
            roles = [(m["role"], m["content"]) for m in ollama.last_body["messages"]]
            assert roles == [("user", "Capital of France?"), ("assistant", "Paris."), ("user", "And of Spain?")]


async def test_an_error_mid_reply_is_shown_and_the_partial_text_kept(tmp_path) -> None:
    async with FakeOllama(reply_text="one two three four five six", tokens_per_s=None) as ollama:
        ollama.reply_fails_with("model runner has unexpectedly stopped", after_tokens=2)
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Hello there, how are you today?")
            await until(pilot, lambda: app.pane.live is None and len(app.pane.chat.turns) == 2)
            await pilot.pause(0.2)
            assert "model runner has unexpectedly stopped" in screen_text(app.pane.transcript)


async def test_hostile_tokens_are_inert_on_screen_and_kept_as_sent_in_the_history(tmp_path) -> None:
    hostile = "A\x1b]52;c;cm0gLXJmIH4=\x07B \x1b[31m[bold red]red[/] \u202eesrever\u202c [x](https://evil.example)"
    async with FakeOllama(reply_text=hostile, tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Say something odd, at length, without any code in it")
            await until(pilot, lambda: app.pane.live is None and len(app.pane.chat.turns) == 2)
            await pilot.pause(0.2)
            shown = screen_text(app.pane.transcript)
            assert "AB" in shown and "[bold red]red[/]" in shown and "https://evil.example" in shown
            assert "\x1b" not in shown and "\u202e" not in shown and "52;c" not in shown
            stored = app.history.load(app.pane.chat.chat_id).messages
            assert stored[-1].content == hostile  # the original, byte for byte


async def test_sending_to_a_stopped_vm_asks_starts_it_then_sends(tmp_path) -> None:
    fleet = Fleet(PowerState.STOPPED)
    async with FakeOllama(reply_text="Up and running.", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama, fleet=fleet) as (app, pilot):
            await send(pilot, "Are you there? Please answer with a long sentence.")
            await until(pilot, lambda: isinstance(app.screen, StartDialog))
            assert ollama.last_body is None  # nothing sent before the answer
            await pilot.press("y")
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            assert fleet.started == ["inference"] and app.pane.chat.turns[1].content == "Up and running."


async def test_declining_the_start_sends_nothing_and_keeps_the_message(tmp_path) -> None:
    fleet = Fleet(PowerState.STOPPED)
    async with FakeOllama(reply_text="never", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama, fleet=fleet) as (app, pilot):
            await send(pilot, "Are you there?")
            await until(pilot, lambda: isinstance(app.screen, StartDialog))
            await pilot.press("n")
            await pilot.pause(0.2)
            assert fleet.started == [] and ollama.last_body is None
            assert app.pane.prompt.text == "Are you there?"


async def test_read_only_never_starts_a_stopped_vm(tmp_path) -> None:
    fleet = Fleet(PowerState.STOPPED)
    async with FakeOllama(reply_text="never", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama, fleet=fleet, read_only=True) as (app, pilot):
            await send(pilot, "Are you there?")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, StartDialog) and fleet.started == []
            assert "read-only" in app.pane._note


async def test_copy_puts_the_sanitised_reply_and_code_block_on_the_clipboard(tmp_path) -> None:
    async with FakeOllama(reply_text=REPLY.replace("It", "\x1b[2JIt"), tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Write an add function in Python")
            await until(pilot, lambda: app.pane.live is None and len(app.pane.chat.turns) == 2)
            await pilot.press("ctrl+r")
            assert app.clipboard == REPLY
            await pilot.press("ctrl+b")
            assert app.clipboard == "def add(a, b):\n    return a + b"


async def test_new_chat_clears_and_history_resumes(tmp_path) -> None:
    async with FakeOllama(reply_text="Paris.", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Capital of France?")
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            first = app.pane.chat.chat_id
            await pilot.press("ctrl+n")
            assert app.pane.chat.turns == [] and app.pane.chat.chat_id is None
            assert "Paris." not in screen_text(app.pane.transcript)
            await pilot.press("ctrl+o")
            await pilot.pause(0.1)
            await pilot.press("enter")
            await until(pilot, lambda: app.pane.chat.chat_id == first)
            await pilot.pause(0.2)
            assert [m.content for m in app.pane.chat.turns] == ["Capital of France?", "Paris."]
            assert "Paris." in screen_text(app.pane.transcript)
            await send(pilot, "And of Spain?")
            await until(pilot, lambda: len(app.pane.chat.turns) == 4)
            assert len(app.history.load(first).messages) == 4  # went on in the same saved chat


async def test_a_stream_counts_as_activity_for_the_vms_idle_timer(tmp_path) -> None:
    fleet = Fleet()
    async with FakeOllama(reply_text="word " * 30, tokens_per_s=30.0) as ollama:
        async with chat_app(tmp_path, ollama, fleet=fleet) as (app, pilot):
            await send(pilot, "Count slowly to thirty for me, in words please")
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            assert fleet.activity.count("inference") >= 1


# --- the whole console on the demo fleet -------------------------------------------------------


async def test_the_console_chats_through_the_demo_fleets_ssh_forward_and_saves_the_chat(tmp_path) -> None:
    """`5`, type, enter: the chat service built after telemetry reaches the inference VM's
    Ollama through its SSH forward, the reply streams in, the VM counts as busy, and the
    exchange lands in the demo's own chat history."""
    from tests.ui_helpers import telemetry_app, wait_until

    app = telemetry_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.console_tabs is not None, what="the tabs")
        await pilot.press("5")
        console = app.console_tabs
        assert console.active == "chat"
        pane = console.chat

        def found() -> str:  # what the console was doing instead, should it never come
            hub, workers = app.hub, [(w.name or w.group, w.state.name, repr(w.error)) for w in app.workers]
            told = [n.message for n in app._notifications]
            return f"ready={pane.ready} service={pane.service} note={pane._note!r} hub={hub} workers={workers} {told=}"

        await wait_until(
            pilot, lambda: pane.ready and pane.service is not None, timeout=20, what="the chat service", explain=found
        )
        assert app.screen.focused is pane.prompt
        await pilot.press(*"Why is my GPU hot?")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(pane.chat.turns) == 2, timeout=20, what="the reply")
        assert "fits on a GPU" in pane.chat.turns[1].content  # the demo Ollama's reply
        assert "mistral:7b ← auto: quick" in screen_text(pane.transcript)
        signals = {(s.kind, s.detail) for s in app.runtime.monitor.ledger.latest_activities("inference")}
        assert ("chat", "chat stream") in signals  # the idle timer's activity, kept in the ledger
        stored = pane.history.load(pane.chat.chat_id)
        assert [m.role for m in stored.messages] == ["user", "assistant"]
        assert app.runtime.chat_history_path.is_relative_to(tmp_path)  # never the user's data dir


async def test_ctrl_t_chooses_the_model_and_persona_for_the_next_messages(tmp_path) -> None:
    from textual.widgets import Select

    from aiconsole.ui.chat_dialogs import SetupDialog

    options = ChatPaneOptions(personas=(("editor", "blog"),))
    async with FakeOllama(reply_text="Done.", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama, options=options) as (app, pilot):
            await pilot.press("ctrl+t")
            await until(pilot, lambda: isinstance(app.screen, SetupDialog))
            app.screen.query_one("#model", Select).value = "mistral:7b"
            app.screen.query_one("#persona", Select).value = "editor"
            await pilot.click("#ok")
            await until(pilot, lambda: not isinstance(app.screen, SetupDialog))
            assert (app.pane.chat.model, app.pane.chat.persona) == ("mistral:7b", "editor")
            assert "inference/ollama · mistral:7b · editor" in str(app.pane.query_one("#chat-bar").render())
            await send(pilot, "Write a Python function, please, that adds two numbers")  # auto would pick the coder
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            assert ollama.last_body["model"] == "mistral:7b"
            assert ollama.last_body["messages"][0]["role"] == "system"


async def test_saved_chats_can_be_deleted_after_asking_and_exported(tmp_path, monkeypatch) -> None:
    from aiconsole.ui.chat_history_screen import ChatHistoryScreen
    from aiconsole.ui.confirm import ConfirmScreen

    monkeypatch.chdir(tmp_path)  # export writes into the folder the console was started from
    async with FakeOllama(reply_text="Paris \x1b]52;c;aGk=\x07is the capital.", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            await send(pilot, "Capital of France?")
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            await pilot.press("ctrl+o")
            await until(pilot, lambda: isinstance(app.screen, ChatHistoryScreen))
            await pilot.press("e")
            exported = list(tmp_path.glob("chat-*.md"))
            assert len(exported) == 1
            text = exported[0].read_text()
            assert "Capital of France?" in text and "Paris is the capital." in text and "\x1b" not in text
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: app.history.count() == 0)
            assert isinstance(app.screen, ChatHistoryScreen)  # still browsing, the list now empty


async def test_the_send_key_can_be_rebound_and_enter_then_starts_a_new_line(tmp_path) -> None:
    async with FakeOllama(reply_text="Two lines read.", tokens_per_s=None) as ollama:
        async with chat_app(tmp_path, ollama) as (app, pilot):
            app.set_keymap({"chat-send": "ctrl+s"})
            await pilot.press(*"first", "enter", *"second")
            assert app.pane.prompt.text == "first\nsecond" and ollama.last_body is None
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(app.pane.chat.turns) == 2)
            assert ollama.last_body["messages"][-1]["content"] == "first\nsecond"
