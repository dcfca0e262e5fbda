"""`aiconsole chat` through `main()`, on the demo fleet: the real Ollama client reaches the
inference VM's `FakeOllama` through its SSH forward, and a stopped VM is started through the
demo's TensorDock API. Each run gets a demo fleet of its own, with fast starts, whose
Ollama a test may set up first (reply text, pacing, faults)."""

from __future__ import annotations

import io
import os
import pty
import re
import signal
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.threaded import ThreadedFake

import aiconsole.runtime as runtime_module
from aiconsole.cli import main
from aiconsole.demo.fleet import INFERENCE_ID, DemoFleet
from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.demo.ollama_wire import tokens
from aiconsole.demo.openai_api import FakeOpenAI, openai_error
from aiconsole.domain.sanitize import sanitize
from aiconsole.services.chat_history import ChatHistory

REPLY = "Lima is the capital of Peru."
STATS = re.compile(r"^TTFT \d+\.\d\d s · \d+ tokens · \d+\.\d tokens/s · <?\$0\.\d{4}$")
CODE_QUESTION = "Why does this raise? ```py\nx = [1][2]\n```"
# Escape sequences cut in two by the stream's pieces (word-sized: split at the spaces):
# a clipboard write (OSC 52), a window title, a cursor-shape CSI, an 8-bit CSI.
HOSTILE = "Hi \x1b]52;c;cHdu ZWQ=\x07there \x1b[2 qend \x1b]0;pwn ed\x07! \x9b31mred"
HOSTILE_SHOWN = "Hi there end ! red"


class Stream(io.StringIO):
    """stdin, stdout or stderr, a terminal or not."""

    def __init__(self, text: str = "", *, tty: bool = False) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@dataclass
class Demo:
    """The demo runs `main()` builds: `setup(fleet, ollama)` runs before each."""

    setup: Callable[[DemoFleet, FakeOllama], None] = lambda fleet, ollama: None
    fleets: list[DemoFleet] = field(default_factory=list)
    activity: list[tuple[str, str, str]] = field(default_factory=list)
    history_path: Path | None = None
    """Where the demo keeps its chat history (its own, removed after, when None)."""

    @property
    def ollama(self) -> FakeOllama:
        return ollama_of(self.fleets[-1])

    def start_requests(self) -> list[str]:
        return [path for method, path in self.fleets[-1].tensordock.requests if path.endswith("/start")]


def ollama_of(fleet: DemoFleet) -> FakeOllama:
    return next(service.fake for service in fleet.telemetry.services if service.name == "ollama")


@pytest.fixture
def demo(monkeypatch) -> Demo:
    demo = Demo()
    real = runtime_module.demo_runtime

    def demo_runtime(environ, *, read_only: bool = False, **_: object):
        fleet = DemoFleet(start_seconds=0.3, stop_seconds=0.3)
        ollama = ollama_of(fleet)
        ollama.reply_text, ollama.tokens_per_s = REPLY, None
        demo.setup(fleet, ollama)
        demo.fleets.append(fleet)
        runtime = real(environ, read_only=read_only, fleet=fleet, transition_poll_seconds=0.05)
        if demo.history_path is not None:
            runtime.chat_history_path = demo.history_path
        noted = runtime.monitor.note_activity
        runtime.monitor.note_activity = lambda vm, kind, detail, at=None, **lease: (
            demo.activity.append((vm, str(kind), detail)),
            noted(vm, kind, detail, at, **lease),
        )
        return runtime

    monkeypatch.setattr(runtime_module, "demo_runtime", demo_runtime)
    return demo


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}


def chat(
    monkeypatch, env: dict[str, str], *argv: str, stdin: str = "", stdin_tty: bool = False, stdout_tty: bool = False,
    stdout: io.StringIO | None = None,
) -> tuple[int, str, str]:  # fmt: skip
    """`aiconsole chat ARGV --demo`: its exit status, stdout and stderr."""
    out, err = stdout or Stream(tty=stdout_tty), Stream()
    monkeypatch.setattr(sys, "stdin", Stream(stdin, tty=stdin_tty))
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["chat", *argv, "--demo"], environ=env)
    return code, out.getvalue(), err.getvalue()


# --- replying ---------------------------------------------------------------------------------------


def test_the_reply_streams_to_stdout_then_one_line_of_figures(monkeypatch, env, demo) -> None:
    code, out, err = chat(monkeypatch, env, "inference", "--model", "llama3.1:8b", "Capital of Peru?")
    assert code == 0, err
    assert out == REPLY + "\n"  # a newline added: the reply had none
    route, figures = err.splitlines()
    assert route == "→ llama3.1:8b"
    assert STATS.match(figures), figures
    body = demo.ollama.last_body
    assert body["model"] == "llama3.1:8b" and body["messages"] == [{"role": "user", "content": "Capital of Peru?"}]


def test_auto_says_which_model_and_why_before_the_reply(monkeypatch, env, demo) -> None:
    code, _out, err = chat(monkeypatch, env, "inference", CODE_QUESTION)  # [chat] model = "auto" by default
    assert code == 0, err
    assert err.splitlines()[0] == "→ deepseek-coder-v2:16b (auto: code — contains code)"
    assert demo.ollama.last_body["model"] == "deepseek-coder-v2:16b"


def test_the_personas_system_prompt_is_sent_first(monkeypatch, env, demo) -> None:
    code, _out, err = chat(monkeypatch, env, "inference", "--persona", "editor", "Titles for a post on LoRA?")
    assert code == 0, err
    system, user = demo.ollama.last_body["messages"]
    assert system["role"] == "system" and "editorial assistant of a technical blog" in system["content"]
    assert user == {"role": "user", "content": "Titles for a post on LoRA?"}


def test_a_stream_counts_as_the_vms_activity(monkeypatch, env, demo) -> None:
    code, _out, err = chat(monkeypatch, env, "inference", "hello")
    assert code == 0, err
    assert ("inference", "chat", "chat stream") in demo.activity


def test_hostile_text_is_sanitised_on_a_terminal_even_split_across_pieces(monkeypatch, env, demo) -> None:
    pieces = tokens(HOSTILE)
    assert any(piece.count("\x1b") and not piece.endswith(("\x07", "m")) for piece in pieces)  # really split
    demo.setup = lambda fleet, ollama: setattr(ollama, "reply_text", HOSTILE)
    code, out, err = chat(monkeypatch, env, "inference", "hello", stdout_tty=True)
    assert code == 0, err
    assert out == HOSTILE_SHOWN + "\n" == sanitize(HOSTILE) + "\n"
    assert "pwn" not in out and "cHdu" not in out


def test_piped_output_is_the_text_as_sent(monkeypatch, env, demo) -> None:
    demo.setup = lambda fleet, ollama: setattr(ollama, "reply_text", HOSTILE + "\n")
    code, out, err = chat(monkeypatch, env, "inference", "hello")
    assert code == 0, err
    assert out == HOSTILE + "\n"  # the reply's own newline: none added
    assert "\x1b" not in err


def test_an_error_mid_stream_exits_1_with_the_servers_message_keeping_the_start(monkeypatch, env, demo) -> None:
    demo.setup = lambda fleet, ollama: ollama.reply_fails_with("CUDA error: out of memory", after_tokens=3)
    code, out, err = chat(monkeypatch, env, "inference", "hello")
    assert code == 1
    assert out == "".join(tokens(REPLY)[:3]) + "\n"
    assert err.splitlines()[-1].startswith("aiconsole: ") and "CUDA error: out of memory" in err


def test_ctrl_c_closes_the_request_keeps_the_partial_reply_and_exits_130(monkeypatch, env, demo) -> None:
    def slow(fleet: DemoFleet, ollama: FakeOllama) -> None:
        ollama.reply_text, ollama.tokens_per_s = "word " * 200, 50.0  # 4 s if not stopped

    class Interrupting(Stream):
        """Ctrl+C once the third piece is shown."""

        sent = False

        def write(self, text: str) -> int:
            written = super().write(text)
            if self.getvalue().count("word") == 3 and not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)
            return written

    demo.setup = slow
    started = time.monotonic()
    code, out, err = chat(monkeypatch, env, "inference", "hello", stdout=Interrupting())
    assert code == 130, err
    assert time.monotonic() - started < 3.5
    assert out.startswith("word word word") and out.endswith("\n") and out.count("word") < 200
    assert err.splitlines()[-1].endswith("stopped")
    residency = demo.ollama.loaded["mistral:7b"]
    assert residency.in_use == 0  # the server saw the request end


# --- the prompt -------------------------------------------------------------------------------------


def test_the_prompt_can_come_from_stdin(monkeypatch, env, demo) -> None:
    code, _out, err = chat(monkeypatch, env, "inference", stdin="What is 2+2?\n")
    assert code == 0, err
    assert demo.ollama.last_body["messages"][-1]["content"] == "What is 2+2?\n"
    code, _out, err = chat(monkeypatch, env, "inference", "-", stdin="Capital of Peru?")
    assert code == 0, err
    assert demo.ollama.last_body["messages"][-1]["content"] == "Capital of Peru?"


def test_piped_stdin_with_a_prompt_is_appended_in_a_fenced_block(monkeypatch, env, demo) -> None:
    diff = "--- a/x.py\n+++ b/x.py\n+print('```')\n"
    code, _out, err = chat(monkeypatch, env, "inference", "review this", stdin=diff)
    assert code == 0, err
    assert demo.ollama.last_body["messages"][-1]["content"] == f"review this\n\n````\n{diff}````\n"
    assert err.startswith("→ deepseek-coder-v2:16b (auto: code")  # routed on the whole text


@pytest.mark.parametrize(
    ("argv", "stdin_tty", "message"),
    [
        (["inference"], True, "no prompt: give it as an argument, or pipe it in"),
        (["inference", "  "], True, "the prompt is empty"),
        (["nowhere", "hi"], False, "no VM named 'nowhere' (VMs: inference, training, homelab, brain)"),
        (["brain", "hi"], False, "no chat server 'brain'"),
        (["inference", "--service", "open-webui", "hi"], False, "no chat server 'inference/open-webui'"),
        (["inference", "--persona", "poet", "hi"], False, "no persona 'poet' (personas: editor)"),
    ],
)
def test_usage_problems_exit_2_before_anything_is_sent(monkeypatch, env, demo, argv, stdin_tty, message) -> None:
    code, out, err = chat(monkeypatch, env, *argv, stdin_tty=stdin_tty)
    assert code == 2 and out == ""
    assert message in err
    assert all(ollama_of(fleet).last_body is None for fleet in demo.fleets)


# --- a stopped VM -----------------------------------------------------------------------------------


def stopped(fleet: DemoFleet, ollama: FakeOllama) -> None:
    fleet.tensordock.instances[INFERENCE_ID].status = "Stopped"


def test_a_stopped_vm_is_not_started_without_start_or_a_terminal(monkeypatch, env, demo) -> None:
    demo.setup = stopped
    code, out, err = chat(monkeypatch, env, "inference", "hello")
    assert code == 1 and out == ""
    assert err.strip() == "aiconsole: inference is stopped; pass --start to start it ($0.35/h)"
    assert demo.start_requests() == [] and demo.ollama.last_body is None


def test_start_starts_it_through_the_provider_waits_for_ollama_then_sends(monkeypatch, env, demo) -> None:
    demo.setup = stopped
    code, out, err = chat(monkeypatch, env, "inference", "--start", "hello")
    assert code == 0, err
    assert len(demo.start_requests()) == 1
    lines = err.splitlines()
    assert lines[0] == "starting inference…" and lines[1].startswith("waiting for ollama on inference…")
    assert lines[-2] == "→ mistral:7b (auto: quick — 1 words ≤ 12)" and STATS.match(lines[-1])
    assert out == REPLY + "\n"


def test_read_only_refuses_to_start_it(monkeypatch, env, demo) -> None:
    demo.setup = stopped
    code, out, err = chat(monkeypatch, env, "inference", "--start", "--read-only", "hello")
    assert code == 1 and out == ""
    assert "read-only" in err and "inference is stopped and will not be started ($0.35/h)" in err
    assert demo.start_requests() == []


def test_a_vm_already_starting_is_waited_for_not_started_again(monkeypatch, env, demo) -> None:
    def starting(fleet: DemoFleet, ollama: FakeOllama) -> None:
        instance = fleet.tensordock.instances[INFERENCE_ID]
        instance.status, instance.next_status, instance.changes_at = "Starting", "Running", time.monotonic() + 0.5

    demo.setup = starting
    code, out, err = chat(monkeypatch, env, "inference", "hello")
    assert code == 0, err
    assert demo.start_requests() == [] and out == REPLY + "\n"
    assert err.startswith("waiting for ollama on inference…")


def test_on_a_terminal_it_asks_first_showing_the_cost(monkeypatch, env, demo) -> None:
    demo.setup = stopped
    master, slave = pty.openpty()
    attributes = termios.tcgetattr(slave)
    attributes[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    os.write(master, b"y\n")  # typed ahead: the terminal keeps the line until it is read
    err = Stream(tty=True)
    with open(slave, encoding="utf-8", closefd=True) as terminal:
        monkeypatch.setattr(sys, "stdin", terminal)
        monkeypatch.setattr(sys, "stdout", out := Stream())
        monkeypatch.setattr(sys, "stderr", err)
        code = main(["chat", "inference", "hello", "--demo"], environ=env)
    os.close(master)
    assert code == 0, err.getvalue()
    assert err.getvalue().startswith("inference is stopped. Start it ($0.35/h)? [y/N] ")
    assert "\r\x1b[Kstarting inference…" in err.getvalue()  # progress redrawn in place
    assert len(demo.start_requests()) == 1 and out.getvalue() == REPLY + "\n"


# --- the history ------------------------------------------------------------------------------------


def test_the_exchange_is_kept_in_the_history_as_said(monkeypatch, env, demo, tmp_path) -> None:
    demo.history_path = tmp_path / "chats.sqlite3"
    demo.setup = lambda fleet, ollama: setattr(ollama, "reply_text", HOSTILE)
    prompt = "Why does this raise? \x1b[31m```py\nx = [1][2]\n```"
    code, out, err = chat(monkeypatch, env, "inference", "--persona", "editor", prompt, stdout_tty=True)
    assert code == 0, err
    assert out == HOSTILE_SHOWN + "\n"
    with ChatHistory.open(demo.history_path) as history:
        [summary] = history.chats()
        chat_ = history.load(summary.id)
    assert (summary.vm, summary.service, summary.model, summary.persona) == ("inference", "ollama", "auto", "editor")
    user, assistant = chat_.messages
    assert (user.role, user.content) == ("user", prompt)
    assert (assistant.role, assistant.content) == ("assistant", HOSTILE)  # the original, not what was shown
    assert (assistant.model, assistant.route_rule, assistant.route_reason) == (
        "deepseek-coder-v2:16b",
        "code",
        "contains code",
    )
    assert assistant.stats is not None and assistant.stats.done_reason == "stop" and assistant.error == ""


def test_a_failed_reply_is_kept_with_its_error(monkeypatch, env, demo, tmp_path) -> None:
    demo.history_path = tmp_path / "chats.sqlite3"
    demo.setup = lambda fleet, ollama: ollama.reply_fails_with("CUDA error: out of memory", after_tokens=3)
    code, _out, _err = chat(monkeypatch, env, "inference", "--model", "llama3.1:8b", "hello")
    assert code == 1
    with ChatHistory.open(demo.history_path) as history:
        _user, assistant = history.load(history.chats()[0].id).messages
    assert assistant.content == "".join(tokens(REPLY)[:3]) and "CUDA error: out of memory" in assistant.error
    assert (assistant.model, assistant.route_rule, assistant.route_reason) == ("llama3.1:8b", "", "")


def test_no_history_keeps_nothing(monkeypatch, env, demo, tmp_path) -> None:
    demo.history_path = tmp_path / "chats.sqlite3"
    code, _out, err = chat(monkeypatch, env, "inference", "--no-history", "hello")
    assert code == 0, err
    assert not demo.history_path.exists()


def test_a_history_that_cannot_be_opened_is_said_and_the_reply_still_comes(monkeypatch, env, demo, tmp_path) -> None:
    demo.history_path = tmp_path  # a folder, not a database
    code, out, err = chat(monkeypatch, env, "inference", "hello")
    assert code == 0 and out == REPLY + "\n"
    warning = err.splitlines()[1]
    assert warning.startswith(f"aiconsole: not kept in the chat history: cannot open chat history {tmp_path}")


def test_the_demo_never_writes_the_operators_history(monkeypatch, env, demo) -> None:
    code, _out, err = chat(monkeypatch, env, "inference", "hello")
    assert code == 0, err
    data = Path(env["AICONSOLE_DATA_DIR"])
    assert not (data / "chats.sqlite3").exists()
    assert not (data / "demo").exists() or list((data / "demo").iterdir()) == []  # its own folder, removed


def test_a_prompt_that_is_not_utf8_is_a_usage_error(monkeypatch, env, demo) -> None:
    code, out, err = chat(monkeypatch, env, "inference", stdin="ab\udcff\udcfe")  # bytes 0xff 0xfe, surrogateescaped
    assert code == 2 and out == ""
    assert "the prompt is not UTF-8 text (at character 2)" in err


# --- an OpenAI-compatible server of our own, with a key -----------------------------------------------

KEY = "sk-cli-chat-secret-0123456789"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FREE_STATS = re.compile(r"TTFT \d+\.\d\d s · \d+ tokens · [\d.]+ tokens/s")  # an always-on box: no $


def openai_config(folder: Path, url: str) -> Path:
    path = folder / "config.toml"
    path.write_text(
        '[[vm]]\nname = "box"\nprovider = "static"\n'
        f'[[vm.service]]\nname = "vllm"\nkind = "openai"\nurl = "{url}/v1"\napi_key_env = "VLLM_KEY"\n'
    )
    return path


def test_an_openai_server_answers_with_the_key_and_the_key_is_never_shown(monkeypatch, env, tmp_path) -> None:
    with ThreadedFake(FakeOpenAI(models=[MODEL], api_key=KEY, reply_text=REPLY)) as fake:
        argv = ["chat", "box", "--model", MODEL, "hello", "--config", str(openai_config(tmp_path, fake.url))]
        monkeypatch.setattr(sys, "stdin", Stream())
        monkeypatch.setattr(sys, "stdout", out := Stream())
        monkeypatch.setattr(sys, "stderr", err := Stream())
        assert main(argv, environ=env | {"VLLM_KEY": KEY}) == 0, err.getvalue()
        assert out.getvalue() == REPLY + "\n"
        assert FREE_STATS.fullmatch(err.getvalue().splitlines()[-1])
        assert fake.last_body["model"] == MODEL and fake.last_body["stream"] is True
        # The server turns the key away, quoting it back: it is masked.
        fake.faults.fail_next(401, body=openai_error(f"Incorrect API key provided: {KEY}", code="invalid_api_key"))
        monkeypatch.setattr(sys, "stdout", out := Stream())
        monkeypatch.setattr(sys, "stderr", err := Stream())
        code = main(argv, environ=env | {"VLLM_KEY": KEY})
    assert code == 1 and out.getvalue() == ""
    assert "401" in err.getvalue() and KEY not in err.getvalue(), err.getvalue()
    with ChatHistory.open(Path(env["AICONSOLE_DATA_DIR"]) / "chats.sqlite3") as history:  # the data dir's own
        assert history.count() == 2
