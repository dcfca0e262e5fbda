"""services/chat_service.py: routing, personas, activity and start-on-demand, against loopback
servers (FakeOllama, FakeOpenAI) and the demo fleet's TensorDock provider."""

from __future__ import annotations

import asyncio

import pytest
from tests.ui_helpers import demo_env, fast_fleet

from aiconsole.assembly import build_chat_service, model_servers
from aiconsole.config import settings_from_toml_text
from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.demo.openai_api import FakeOpenAI
from aiconsole.domain.chat import ChatMessage
from aiconsole.domain.power import PowerState
from aiconsole.runtime import demo_runtime
from aiconsole.services.chat_base import ChatError
from aiconsole.services.chat_service import CHAT_LEASE_S, ChatOptions, ChatService, ChatTarget
from aiconsole.services.endpoints import Endpoints

HELLO = [ChatMessage("user", "hello")]


class Fleet:
    """A stand-in for the monitor's power and activity surface (what the service uses)."""

    def __init__(self, power: PowerState = PowerState.RUNNING) -> None:
        self.power = power
        self.activity: list[tuple[str, str, str]] = []
        self.started: list[str] = []

    def powers(self) -> dict[str, PowerState]:
        return {"inference": self.power}

    async def start_vm(self, name: str) -> None:
        self.started.append(name)
        self.power = PowerState.RUNNING

    def note_activity(self, name: str, kind: str, detail: str, *, lease_s: float | None = None) -> None:
        self.activity.append((name, str(kind), detail, lease_s))


STATIC = 'provider = "static"'
COMMAND = 'provider = "command"\n[vm.command]\nstatus = "true"\nstart = "true"\nstop = "true"'


def config(ollama_url: str, openai_url: str = "http://127.0.0.1:9", extra: str = "", provider: str = STATIC) -> str:
    return f"""
[[vm]]
name = "inference"
hourly_usd = 0.35
{provider}
[[vm.service]]
name = "ollama"
kind = "ollama"
url = "{ollama_url}"
[[vm.service]]
name = "vllm"
kind = "openai"
url = "{openai_url}/v1"
api_key_env = "VLLM_KEY"
{extra}"""


def service_for(text: str, fleet: Fleet | None = None, environ: dict | None = None) -> ChatService:
    settings = settings_from_toml_text(text)
    endpoints = Endpoints()
    for vm in settings.vm:
        endpoints.add_vm(vm)
    return build_chat_service(settings, endpoints, fleet=fleet, environ=environ or {})


@pytest.fixture
async def ollama():
    async with FakeOllama(reply_text="Fine, thanks.", tokens_per_s=None) as fake:
        yield fake


async def read(service: ChatService, target: ChatTarget, model: str, messages) -> tuple[str, object]:
    async with service.reply(target, model, messages) as reply:
        text = "".join([piece async for piece in reply])
    return text, reply.stats


async def test_targets_are_the_configs_ollama_and_openai_services(ollama) -> None:
    settings = settings_from_toml_text(config(ollama.url))
    targets = model_servers(settings)
    assert [(t.vm, t.service, t.kind, t.hourly_usd, t.can_power) for t in targets] == [
        ("inference", "ollama", "ollama", 0.35, False),
        ("inference", "vllm", "openai", 0.35, False),
    ]
    service = service_for(config(ollama.url))
    assert service.target("inference").service == "ollama"  # the first one
    assert service.target("inference", "vllm").kind == "openai"
    with pytest.raises(ChatError, match="no chat server 'training'.*inference/ollama, inference/vllm"):
        service.target("training")


def test_auto_routes_by_the_configured_rules_and_says_which_rule() -> None:
    service = service_for(config("http://127.0.0.1:9"))
    code = service.choose_model("auto", "Why does this raise? ```py\nx = [1][2]\n```")
    assert (code.model, code.rule) == ("deepseek-coder-v2:16b", "code")
    quick = service.choose_model("auto", "Capital of Peru?")
    assert (quick.model, quick.rule) == ("mistral:7b", "quick")
    general = service.choose_model("auto", " ".join(["Tell me about the history of the printing press"] * 3))
    assert (general.model, general.rule) == ("llama3.1:8b", "default")
    chosen = service.choose_model("gemma3:12b", "anything")
    assert (chosen.model, chosen.rule, chosen.reason) == ("gemma3:12b", "", "chosen")


def test_routes_from_the_config_replace_the_defaults() -> None:
    extra = '[chat]\nfallback_model = "gemma3:12b"\n[[chat.route]]\nname = "blog"\nmodel = "llama3.1:8b"\nkeywords = ["draft"]\n'
    service = service_for(config("http://127.0.0.1:9", extra=extra))
    assert service.choose_model("auto", "A draft intro please").rule == "blog"
    assert service.choose_model("auto", "def f(): pass").model == "gemma3:12b"  # no code rule any more


async def test_the_personas_system_prompt_is_sent_first(ollama) -> None:
    service = service_for(config(ollama.url))
    target = service.target("inference")
    history = [ChatMessage("user", "Titles for a post on LoRA?")]
    text, stats = await read(service, target, "llama3.1:8b", service.messages(history, "editor"))
    assert text == "Fine, thanks." and stats.done_reason == "stop"
    sent = ollama.last_body["messages"]
    assert sent[0]["role"] == "system" and "editorial assistant of a technical blog" in sent[0]["content"]
    assert sent[1:] == [{"role": "user", "content": "Titles for a post on LoRA?"}]


def test_a_persona_replaces_an_earlier_system_turn_and_none_drops_it() -> None:
    service = service_for(config("http://127.0.0.1:9"))
    history = [ChatMessage("system", "old"), ChatMessage("user", "hi"), ChatMessage("assistant", "yo")]
    sent = service.messages(history, "editor")
    assert [m.role for m in sent] == ["system", "user", "assistant"] and sent[0].content != "old"
    assert [m.role for m in service.messages(history, None)] == ["user", "assistant"]
    with pytest.raises(ChatError, match="no persona 'poet' \\(personas: editor\\)"):
        service.messages(history, "poet")


async def test_an_openai_server_is_reached_with_its_key_from_the_environment() -> None:
    async with FakeOpenAI(models=["meta-llama/Llama-3.1-8B-Instruct"], api_key="k-123", reply_text="Hi!") as fake:
        service = service_for(config("http://127.0.0.1:9", fake.url), environ={"VLLM_KEY": "k-123"})
        target = service.target("inference", "vllm")
        text, stats = await read(service, target, "meta-llama/Llama-3.1-8B-Instruct", HELLO)
        assert text == "Hi!" and stats.done_reason == "stop"
        assert fake.last_body["stream"] is True
        await service.aclose()


async def test_a_missing_api_key_is_said_before_any_request() -> None:
    service = service_for(config("http://127.0.0.1:9", "http://127.0.0.1:9"))
    with pytest.raises(ChatError, match="the API key variable VLLM_KEY is not set"):
        await read(service, service.target("inference", "vllm"), "m", HELLO)


async def test_a_streaming_reply_counts_as_activity_for_the_idle_timer(ollama) -> None:
    ollama.tokens_per_s = 20.0
    ollama.reply_text = "word " * 30  # ~1.5 s
    fleet = Fleet()
    service = service_for(config(ollama.url), fleet)
    await read(service, service.target("inference"), "llama3.1:8b", HELLO)
    # A lease at the start (renewed every 5 s while it streams), an instant when it ends:
    # the VM is busy while the reply streams, and idle counts from its end.
    assert fleet.activity[0] == ("inference", "chat", "chat stream", CHAT_LEASE_S)
    assert fleet.activity[-1] == ("inference", "chat", "chat stream", None)
    count = len(fleet.activity)
    await asyncio.sleep(1.2)
    assert len(fleet.activity) == count  # the reply ended: no more activity
    await service.aclose()


async def test_a_client_is_kept_per_server(ollama) -> None:
    service = service_for(config(ollama.url))
    target = service.target("inference")
    first = await service._backend(target)
    assert await service._backend(target) is first
    await service.aclose()


# --- start on demand ------------------------------------------------------------------------------


async def test_a_stopped_vm_is_started_then_waited_for_before_sending(ollama) -> None:
    fleet = Fleet(PowerState.STOPPED)
    service = service_for(config(ollama.url, provider=COMMAND), fleet)
    target = service.target("inference")
    assert target.can_power and service.needs_start(target)
    steps: list[str] = []
    await service.start(target, steps.append)
    assert fleet.started == ["inference"] and not service.needs_start(target)
    assert steps[0] == "starting inference…" and steps[-1].startswith("waiting for ollama on inference")


async def test_waiting_for_a_server_that_never_comes_up_gives_up_with_the_reason(ollama) -> None:
    ollama.loading()  # 503 until ready(): Ollama loading after a boot
    fleet = Fleet(PowerState.RUNNING)
    service = ChatService(
        [ChatTarget("inference", "ollama", "ollama", 0.35, can_power=True)],
        _endpoints(ollama.url),
        ChatOptions(ready_timeout_s=1.0),
        fleet=fleet,
    )
    with pytest.raises(ChatError, match="inference/ollama was not ready within 1 s"):
        await service.start(service.target("inference"))
    assert fleet.started == []  # running already: only waited for


def _endpoints(url: str) -> Endpoints:
    endpoints = Endpoints()
    endpoints.add("inference", "ollama", url)
    return endpoints


async def test_start_on_demand_against_the_demo_provider(tmp_path) -> None:
    """The demo's TensorDock API stops the inference VM; sending starts it through the real
    provider client, waits for running and for Ollama (through its SSH forward), then replies."""
    fleet = fast_fleet()
    runtime = demo_runtime(demo_env(tmp_path), fleet=fleet, transition_poll_seconds=0.05)
    monitor = runtime.monitor
    pool = runtime.build_ssh_pool()
    try:
        await monitor.open()
        async with pool:
            endpoints = Endpoints(pool)
            for vm in runtime.settings.vm:
                endpoints.add_vm(vm)
            service = build_chat_service(runtime.settings, endpoints, fleet=monitor, environ={})
            await monitor.refresh()
            await monitor.stop_vm("inference")
            target = service.target("inference")
            assert monitor.powers()["inference"] == PowerState.STOPPED and service.needs_start(target)
            steps: list[str] = []
            await service.start(target, steps.append)
            assert monitor.powers()["inference"] == PowerState.RUNNING
            starts = [path for method, path in fleet.tensordock.requests if method == "POST" and path.endswith("/start")]
            assert len(starts) == 1  # through the provider's API, once
            assert steps[0] == "starting inference…"
            text, stats = await read(service, target, "llama3.1:8b", HELLO)
            assert text and stats.done_reason == "stop"
            await service.aclose()
    finally:
        await monitor.close()
        runtime.finish()
