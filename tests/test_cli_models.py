"""`aiconsole models list|pull|rm` on the demo fleet (Ollama through the inference VM's SSH
forward), and the pull progress printer against the loopback Ollama."""

from __future__ import annotations

import io
import json

import pytest

from aiconsole.commands_models import PROGRESS_EVERY_S, pull_with_progress
from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.services.ollama_models import OllamaModels
from test_cli_telemetry import run  # `main()` on the demo, output captured


def test_list_shows_each_vms_models_and_what_is_loaded(capsys, tmp_path) -> None:
    code, out, err = run(capsys, tmp_path, "models", "list", "--demo")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("inference · ollama (ollama)") and "disk 38.5 GB free of 70.0 GB" in lines[0]
    assert lines[1].split() == ["NAME", "SIZE", "PARAMS", "QUANT", "FAMILY", "MODIFIED", "LOADED"]
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert set(rows) == {"deepseek-coder-v2:16b", "llama3.1:8b", "mistral:7b"}
    assert "100% GPU, kept loaded" in rows["deepseek-coder-v2:16b"]
    assert "100% GPU" in rows["llama3.1:8b"] and "left" in rows["llama3.1:8b"]
    assert "GPU" not in rows["mistral:7b"]  # installed, not loaded
    assert lines[5] == "homelab · localai (openai), read-only: mistral-7b-instruct, nomic-embed-text, phi-3-mini"
    assert "\x1b" not in out


def test_list_json_for_one_vm(capsys, tmp_path) -> None:
    code, out, err = run(capsys, tmp_path, "models", "list", "inference", "--json", "--demo")
    assert code == 0, err
    [server] = json.loads(out)["servers"]
    assert server["vm"] == "inference" and server["contacted"] and server["error"] is None and not server["stale"]
    assert server["disk"]["free_bytes"] > 0 and server["disk"]["models_bytes"] > 18e9
    models = {m["name"]: m for m in server["models"]}
    assert models["llama3.1:8b"]["size_bytes"] == 4_920_753_328
    assert models["llama3.1:8b"]["loaded"]["gpu_share"] == 1.0 and models["llama3.1:8b"]["loaded"]["expires_in_s"] > 0
    assert models["deepseek-coder-v2:16b"]["loaded"]["expires_in_s"] is None  # kept loaded for good
    assert models["mistral:7b"]["loaded"] is None


def test_list_of_an_unknown_vm_is_a_usage_error(capsys, tmp_path) -> None:
    code, out, err = run(capsys, tmp_path, "models", "list", "nowhere", "--demo")
    assert code == 2 and out == "" and "no VM named 'nowhere'" in err


def test_pull_prints_plain_lines_when_piped(capsys, tmp_path) -> None:
    code, out, err = run(capsys, tmp_path, "models", "pull", "inference", "nomic-embed-text", "--demo")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "pulling manifest" and lines[-2] == "success"
    assert lines[-1].startswith("nomic-embed-text: pulled 274 MB in")
    assert "\r" not in out and "\x1b" not in out


def test_pull_of_an_unknown_model_exits_1_with_the_servers_message(capsys, tmp_path) -> None:
    code, _out, err = run(capsys, tmp_path, "models", "pull", "inference", "no-such-model:1b", "--demo")
    assert code == 1
    assert err.strip() == (
        "aiconsole: pull of no-such-model:1b on inference failed: "
        "pulling no-such-model:1b: pull model manifest: file does not exist"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pull", "inference", "bad name"], "invalid model name 'bad name': a model name has no spaces"),
        (["pull", "training", "phi3:mini"], "training has no ollama service in the config"),
        (["pull", "nowhere", "phi3:mini"], "no VM named 'nowhere' in the config"),
        (["pull", "inference", "phi3:mini", "--read-only"], "read-only: refusing to pull phi3:mini on inference"),
        (["rm", "inference", "mistral:7b", "--read-only"], "read-only: refusing to delete mistral:7b on inference"),
        (["rm", "inference", "mistral:7b"], "not deleting mistral:7b from inference without --yes"),
    ],
)
def test_usage_problems_exit_2(capsys, tmp_path, argv, message) -> None:
    code, _out, err = run(capsys, tmp_path, "models", *argv, "--demo")
    assert code == 2 and message in err


def test_rm_with_yes_deletes_and_a_missing_model_exits_1(capsys, tmp_path) -> None:
    code, out, err = run(capsys, tmp_path, "models", "rm", "inference", "mistral:7b", "--yes", "--demo")
    assert code == 0, err
    assert out.strip() == "deleted mistral:7b from inference, 4.4 GB freed"
    code, out, err = run(capsys, tmp_path, "models", "rm", "inference", "nope:7b", "--yes", "--demo")
    assert code == 1 and err.strip() == "aiconsole: deleting nope:7b: model 'nope:7b' not found"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Ticks:
    """A clock that moves 1 ms per reading (once per event): 10,000 events span ~10 s of "time"."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


async def test_terminal_progress_redraws_in_place_at_most_four_times_a_second() -> None:
    async with FakeOllama() as fake:
        fake.pulls.fast_events = 10_000
        clock, out, err = Ticks(), Terminal(), io.StringIO()
        async with OllamaModels(fake.url) as client:
            code = await pull_with_progress(client, "phi3:mini", out, err, hourly_usd=0.35, clock=clock)
    assert code == 0 and err.getvalue() == ""
    frames = out.getvalue().split("\r\x1b[K")[1:]
    assert frames[-1] == "phi3:mini: pulled 2.2 GB in 10s (<$0.01 of VM time)\n"
    limit = clock.now / PROGRESS_EVERY_S + 2  # one per quarter second, the first and the last
    assert 10 < len(frames) <= limit
    assert any("%" in frame and "GB" in frame for frame in frames[1:-1])


async def test_a_pull_cut_off_says_it_can_be_retried() -> None:
    async with FakeOllama() as fake:
        fake.pulls.fast_events = 100
        fake.cut_pull_after(20)
        out, err = io.StringIO(), io.StringIO()
        async with OllamaModels(fake.url) as client:
            code = await pull_with_progress(client, "phi3:mini", out, err)
    assert code == 1
    assert "connection dropped mid-answer" in err.getvalue() and "retry: the download resumes" in err.getvalue()
