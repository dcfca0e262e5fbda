"""FakeOllama against the real `ollama` client (ollama.AsyncClient) over loopback HTTP.

Each test checks a shape or a behaviour real Ollama 0.12.x has (server/routes.go,
images.go, download.go, api/types.go), so the model library and chat can be tested
against the fake and trusted against the real thing.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import ollama
import pytest

from aiconsole.demo.fleet_telemetry import DemoTelemetry
from aiconsole.demo.ollama_api import GIB, FakeOllama
from aiconsole.demo.ollama_library import LIBRARY
from aiconsole.demo.ollama_wire import go_duration_s, go_time, keep_alive_s, tokens
from providers_conftest import HOSTILE_NAME, FakeClock

NOW = 1_795_000_000.0
"""2026-11-18 11:06:40 UTC."""
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
REPLY = "Use `ollama ps`:\n\n```bash\nollama ps\n```\n\nIt shows **VRAM** per model.\n"


def at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


async def raw(method: str, url: str, **kwargs) -> httpx.Response:
    """A request without the ollama client, to see the bytes (async: the server shares this loop)."""
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.request(method, url, **kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def fake(clock: FakeClock):
    async with FakeOllama(clock=clock, sleep=clock.sleep, tokens_per_s=None, reply_text=REPLY) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeOllama):
    async with ollama.AsyncClient(host=fake.url, timeout=10) as client:
        yield client


async def pulled(client: ollama.AsyncClient, name: str) -> list[ollama.ProgressResponse]:
    return [event async for event in await client.pull(name, stream=True)]


async def pulled_until_error(client: ollama.AsyncClient, name: str, error: type[Exception]) -> tuple[list, Exception]:
    seen: list[ollama.ProgressResponse] = []
    with pytest.raises(error) as caught:
        async for event in await client.pull(name, stream=True):
            seen.append(event)
    return seen, caught.value


def by_layer(events: list[ollama.ProgressResponse]) -> dict[str, list[ollama.ProgressResponse]]:
    layers: dict[str, list[ollama.ProgressResponse]] = {}
    for event in events:
        if event.digest:
            layers.setdefault(event.digest, []).append(event)
    return layers


# --- wire details --------------------------------------------------------------------------


@pytest.fixture
def local_zone(monkeypatch):
    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_times_are_written_as_go_writes_them(local_zone) -> None:
    local_zone("Asia/Kolkata")  # +05:30, no DST
    assert go_time(1_700_000_000.0) == "2023-11-15T03:43:20+05:30"
    assert go_time(1_700_000_000.25, utc=True) == "2023-11-14T22:13:20.25Z"
    local_zone("UTC")
    assert go_time(1_700_000_000.0) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10m", 600.0), ("1h30m", 5400.0), ("300ms", 0.3), ("0", 0.0), (30, 30.0), (2.5, 2.5), (0, 0.0), (None, 300.0)],
)
def test_keep_alive_forms(value: object, seconds: float) -> None:
    assert keep_alive_s(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, "-1m", -0.5])
def test_negative_keep_alive_is_forever(value: object) -> None:
    assert keep_alive_s(value) > 290 * 365 * 86_400


@pytest.mark.parametrize(
    ("text", "message"),
    [("10", 'time: missing unit in duration "10"'), ("abc", 'time: invalid duration "abc"'),
     ("1d", 'time: unknown unit "d" in duration "1d"')],
)  # fmt: skip
def test_bad_durations_fail_with_gos_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        go_duration_s(text)


def test_tokens_join_back_to_the_text() -> None:
    assert tokens("a  b\n\n```py\nx = 1\n```\n") == ["a", "  b", "\n\n```py", "\nx", " =", " 1", "\n```", "\n"]
    assert "".join(tokens(REPLY)) == REPLY


# --- list, ps, show -------------------------------------------------------------------------


async def test_list_shows_the_installed_models_with_real_shapes(fake: FakeOllama, client) -> None:
    listing = await client.list()
    assert [m.model for m in listing.models] == ["deepseek-coder-v2:16b", "llama3.1:8b", "mistral:7b"]
    llama = listing.models[1]
    assert llama.size == 4_920_753_328
    assert llama.digest == "46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e"
    assert llama.modified_at == at(NOW - 7 * 86_400)
    assert llama.details is not None and llama.details.family == "llama" and llama.details.families == ["llama"]
    assert (llama.details.parameter_size, llama.details.quantization_level) == ("8.0B", "Q4_K_M")

    row = (await raw("GET", fake.url + "/api/tags")).json()["models"][0]
    assert set(row) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert set(row["details"]) == {"parent_model", "format", "family", "families", "parameter_size",
                                   "quantization_level"}  # fmt: skip
    assert RFC3339.fullmatch(row["modified_at"]) and re.fullmatch(r"[0-9a-f]{64}", row["digest"])


async def test_ps_shows_loaded_models_with_expiry_vram_and_context(clock: FakeClock) -> None:
    loaded = {"llama3.1:8b": None, "deepseek-coder-v2:16b": -1}
    async with FakeOllama(loaded=loaded, clock=clock) as fake, ollama.AsyncClient(host=fake.url) as client:
        running = (await client.ps()).models
        rows = (await raw("GET", fake.url + "/api/ps")).json()["models"]
    assert [m.model for m in running] == ["deepseek-coder-v2:16b", "llama3.1:8b"]  # longest-lived first
    pinned, llama = running
    assert llama.expires_at == at(NOW + 300)  # the default keep-alive, 5 minutes
    assert pinned.expires_at is not None and pinned.expires_at.year > 2300  # keep_alive -1: "forever"
    assert llama.size_vram == llama.size > 4_920_753_328  # all on the GPU; weights + KV cache + graph
    assert (llama.context_length, pinned.context_length) == (4096, 4096)  # not the 163840 it was trained for
    assert set(rows[0]) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}


async def test_a_model_that_does_not_fit_beside_the_others_is_split_with_the_cpu(clock: FakeClock) -> None:
    async with (
        FakeOllama(loaded=["llama3.1:8b"], clock=clock, gpu_total_bytes=8 * GIB) as fake,
        ollama.AsyncClient(host=fake.url) as client,
    ):
        loading = await client.generate("mistral:7b")
        running = {m.model: m for m in (await client.ps()).models}
    assert loading.done and loading.done_reason == "load"
    llama, mistral = running["llama3.1:8b"], running["mistral:7b"]
    assert llama.size_vram == llama.size
    assert 0 < mistral.size_vram < mistral.size
    assert llama.size_vram + mistral.size_vram == 8 * GIB


async def test_show_gives_license_template_parameters_and_model_info(fake: FakeOllama, client) -> None:
    shown = await client.show("llama3.1:8b")
    assert shown.license is not None and shown.license.startswith("LLAMA 3.1 COMMUNITY LICENSE AGREEMENT")
    assert shown.template is not None and "<|start_header_id|>" in shown.template
    assert (
        shown.parameters is not None and 'stop                           "<|eot_id|>"' in shown.parameters.splitlines()
    )
    assert shown.modelfile is not None and shown.modelfile.startswith('# Modelfile generated by "ollama show"')
    assert shown.capabilities == ["completion", "tools"]
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["general.parameter_count"] == 8_030_261_248
    assert shown.modelinfo["llama.context_length"] == 131_072
    assert shown.details is not None and shown.details.quantization_level == "Q4_K_M"
    assert shown.modified_at == at(NOW - 7 * 86_400)

    legacy = (await raw("POST", fake.url + "/api/show", json={"name": "deepseek-coder-v2:16b"})).json()
    assert legacy["model_info"]["deepseek2.context_length"] == 163_840
    assert legacy["details"]["family"] == "deepseek2" and legacy["details"]["quantization_level"] == "Q4_0"


async def test_show_of_a_model_not_installed_is_404(client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client.show("llama3.1")  # = llama3.1:latest; only :8b is installed
    assert (caught.value.status_code, caught.value.error) == (404, "model 'llama3.1' not found")


async def test_names_match_as_ollama_matches_them(fake: FakeOllama, client) -> None:
    assert (await client.show("LLAMA3.1:8B")).capabilities == ["completion", "tools"]
    assert (await client.show("registry.ollama.ai/library/mistral:7b")).details.family == "llama"
    fake.pulls.rate_bps = math.inf
    await client.pull("nomic-embed-text")
    assert "nomic-embed-text:latest" in [m.model for m in (await client.list()).models]
    assert (await client.show("nomic-embed-text")).capabilities == ["embedding"]


# --- pull -------------------------------------------------------------------------------------


async def test_pull_streams_each_layer_to_success_at_the_download_rate(fake: FakeOllama, client, clock) -> None:
    model = LIBRARY["qwen2.5-coder:7b"]
    events = await pulled(client, "qwen2.5-coder:7b")

    assert events[0].status == "pulling manifest"
    assert [e.status for e in events[-3:]] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = by_layer(events)
    assert list(layers) == [layer.digest for layer in model.layers]  # weights, template, license, config
    for layer in model.layers:
        seen = layers[layer.digest]
        assert all(e.status == f"pulling {layer.digest[7:19]}" and e.total == layer.size for e in seen)
        completed = [e.completed or 0 for e in seen]
        assert completed == sorted(completed) and completed[-1] == layer.size
    weights = model.layers[0]
    assert layers[weights.digest][0].completed is None  # Go's omitempty at 0 bytes
    assert len(layers[weights.digest]) == math.ceil(weights.size / 250e6 / 0.06) + 1  # one a 60 ms tick
    assert all(len(layers[layer.digest]) == 1 for layer in model.layers[1:])  # small: done within a tick
    assert sum(clock.slept) == pytest.approx(weights.size / 250e6)

    listed = {m.model: m for m in (await client.list()).models}
    assert listed["qwen2.5-coder:7b"].size == 4_683_087_519
    assert listed["qwen2.5-coder:7b"].modified_at == at(clock.now)


async def test_pull_of_a_model_the_registry_lacks_fails_inside_the_stream(fake: FakeOllama, client) -> None:
    seen, error = await pulled_until_error(client, "no-such-model:7b", ollama.ResponseError)
    assert [e.status for e in seen] == ["pulling manifest"]
    assert error.error == "pull model manifest: file does not exist"

    answer = await raw("POST", fake.url + "/api/pull", json={"model": "no-such-model:7b"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-ndjson"
    assert answer.text.splitlines() == ['{"status":"pulling manifest"}',
                                     '{"error":"pull model manifest: file does not exist"}']  # fmt: skip
    with pytest.raises(ollama.ResponseError) as caught:
        await client.pull("no-such-model:7b")  # stream=False: the error alone, as a 500
    assert (caught.value.status_code, caught.value.error) == (500, "pull model manifest: file does not exist")


async def test_pull_without_streaming_answers_success_once_installed(fake: FakeOllama, client) -> None:
    fake.pulls.rate_bps = math.inf
    assert (await client.pull("phi3:mini")).status == "success"
    assert "phi3:mini" in fake.installed


async def test_a_pull_cut_off_resumes_from_the_bytes_already_received(fake: FakeOllama, client) -> None:
    fake.pulls.rate_bps, fake.pulls.events_per_layer = math.inf, 10
    fake.cut_pull_after(5)  # manifest, then 4 events of the weights
    seen, _ = await pulled_until_error(client, "gemma3:12b", httpx.HTTPError)
    assert len(seen) == 5 and "gemma3:12b" not in fake.installed
    weights = LIBRARY["gemma3:12b"].layers[0]
    received = seen[-1].completed
    assert received is not None and 0 < received < weights.size

    retry = await pulled(client, "gemma3:12b")
    resumed = by_layer(retry)[weights.digest]
    assert resumed[0].completed == received  # the part files were kept
    assert resumed[-1].completed == weights.size and retry[-1].status == "success"
    assert "gemma3:12b" in fake.installed


async def test_a_pull_can_fail_with_an_error_line_mid_stream(fake: FakeOllama, client) -> None:
    fake.pulls.rate_bps = math.inf
    fake.pull_fails_with("max retries exceeded: unexpected EOF", after_events=3)
    seen, error = await pulled_until_error(client, "phi3:mini", ollama.ResponseError)
    assert len(seen) == 3 and error.error == "max retries exceeded: unexpected EOF"
    assert "phi3:mini" not in fake.installed
    assert (await pulled(client, "phi3:mini"))[-1].status == "success"  # the fault was for one pull


async def test_fast_mode_sends_ten_thousand_progress_events(fake: FakeOllama, client) -> None:
    fake.pulls.fast_events = 10_000
    events = await pulled(client, "gemma3:12b")
    progress = [e for e in events if e.digest]
    assert len(progress) == 10_000
    weights = LIBRARY["gemma3:12b"].layers[0]
    completed = [e.completed or 0 for e in progress if e.digest == weights.digest]
    assert completed == sorted(completed) and completed[-1] == weights.size
    assert events[-1].status == "success"


async def test_pulls_of_different_models_run_at_once(clock: FakeClock) -> None:
    """A slow pull stays open mid-layer while a second one runs to success beside it."""
    async with FakeOllama(clock=clock) as fake, ollama.AsyncClient(host=fake.url, timeout=10) as client:
        fake.pulls.rate_bps = 1e6  # phi3's weights would take ~36 min; a 1 kB model, a millisecond
        fake.add_model("tiny:1b", size=1000, installed=False, pullable=True)
        slow = await client.pull("phi3:mini", stream=True)
        first = [await anext(slow), await anext(slow)]
        assert [e.status for e in first] == ["pulling manifest", f"pulling {LIBRARY['phi3:mini'].layers[0].short}"]
        assert (await pulled(client, "tiny:1b"))[-1].status == "success"
        assert "tiny:1b" in fake.installed and "phi3:mini" not in fake.installed
        await slow.aclose()


# --- delete ------------------------------------------------------------------------------------


async def test_delete_removes_unloads_and_forgets_the_layers(clock: FakeClock) -> None:
    async with FakeOllama(loaded=["llama3.1:8b"], clock=clock) as fake, ollama.AsyncClient(host=fake.url) as client:
        assert (await client.delete("llama3.1:8b")).status == "success"
        assert "llama3.1:8b" not in [m.model for m in (await client.list()).models]
        assert (await client.ps()).models == []
        with pytest.raises(ollama.ResponseError) as caught:
            await client.delete("llama3.1:8b")
        fake.pulls.rate_bps, fake.pulls.events_per_layer = math.inf, 3
        again = by_layer(await pulled(client, "llama3.1:8b"))
    assert (caught.value.status_code, caught.value.error) == (404, "model 'llama3.1:8b' not found")
    assert next(iter(again.values()))[0].completed is None  # downloaded from the first byte again


# --- residency -------------------------------------------------------------------------------


async def test_keep_alive_0_without_a_prompt_unloads(clock: FakeClock) -> None:
    loaded = ["llama3.1:8b", "mistral:7b"]
    async with FakeOllama(loaded=loaded, clock=clock) as fake, ollama.AsyncClient(host=fake.url) as client:
        unloaded = await client.generate("llama3.1:8b", keep_alive=0)
        chat_unloaded = await client.chat("mistral:7b", messages=[], keep_alive=0)
        assert (await client.ps()).models == []
        chat_loaded = await client.chat("mistral:7b", messages=[])
        assert [m.model for m in (await client.ps()).models] == ["mistral:7b"]
    assert (unloaded.done, unloaded.done_reason, unloaded.response) == (True, "unload", "")
    assert (chat_unloaded.done_reason, chat_unloaded.message.content) == ("unload", "")
    assert chat_loaded.done_reason == "load"


async def test_loaded_models_expire_by_the_clock(fake: FakeOllama, client, clock: FakeClock) -> None:
    await client.generate("mistral:7b", keep_alive="10m")
    await client.generate("llama3.1:8b", keep_alive=30)
    await client.generate("deepseek-coder-v2:16b", keep_alive=-1)
    expiries = {m.model: m.expires_at for m in (await client.ps()).models}
    assert expiries["mistral:7b"] == at(NOW + 600) and expiries["llama3.1:8b"] == at(NOW + 30)
    clock.now += 30
    assert [m.model for m in (await client.ps()).models] == ["deepseek-coder-v2:16b", "mistral:7b"]
    clock.now += 569
    assert "mistral:7b" in fake.loaded
    clock.now += 1
    assert [m.model for m in (await client.ps()).models] == ["deepseek-coder-v2:16b"]
    clock.now += 10**8  # three years on: pinned
    assert list(fake.loaded) == ["deepseek-coder-v2:16b"]


async def test_keep_alive_counts_from_the_end_of_a_reply(clock: FakeClock) -> None:
    async with (
        FakeOllama(clock=clock, sleep=clock.sleep, tokens_per_s=20, reply_text=REPLY) as fake,
        ollama.AsyncClient(host=fake.url) as client,
    ):
        parts = [p async for p in await client.chat("mistral:7b", [{"role": "user", "content": "hi"}], stream=True)]
        expires = (await client.ps()).models[0].expires_at
    streamed_s = (len(parts) - 2) / 20  # one pause between tokens; the final line follows the last token
    assert clock.slept == [pytest.approx(0.05)] * (len(parts) - 2)
    assert abs((expires - at(NOW + streamed_s + 300)).total_seconds()) < 1e-3
    assert parts[-1].eval_duration == pytest.approx((len(parts) - 1) / 20 * 1e9)


async def test_a_bad_keep_alive_is_refused_as_ollama_does(fake: FakeOllama) -> None:
    answer = await raw("POST", fake.url + "/api/generate", json={"model": "mistral:7b", "keep_alive": "10"})
    assert answer.status_code == 400 and answer.json() == {"error": 'time: missing unit in duration "10"'}


# --- chat and generate -----------------------------------------------------------------------


async def test_chat_streams_tokens_that_join_to_the_reply(fake: FakeOllama, client) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I see VRAM?"}]
    parts = [part async for part in await client.chat("mistral:7b", messages, stream=True)]
    *pieces, final = parts
    assert "".join(p.message.content or "" for p in pieces) == REPLY
    assert all(p.model == "mistral:7b" and not p.done and p.message.role == "assistant" for p in pieces)
    assert RFC3339.fullmatch(pieces[0].created_at or "") and pieces[0].created_at.endswith("Z")
    assert final.done and final.done_reason == "stop" and final.message.content == ""
    assert final.eval_count == len(pieces) == len(tokens(REPLY))
    assert final.prompt_eval_count == len(tokens("Be brief.")) + len(tokens("How do I see VRAM?")) + 4 * 2 + 1
    assert final.eval_duration and final.prompt_eval_duration and final.load_duration
    assert final.total_duration == final.load_duration + final.prompt_eval_duration + final.eval_duration
    assert "mistral:7b" in fake.loaded


async def test_generate_streams_and_answers_whole_when_not_streaming(client) -> None:
    parts = [part async for part in await client.generate("llama3.1:8b", "Why is the sky blue?", stream=True)]
    *pieces, final = parts
    assert "".join(p.response or "" for p in pieces) == REPLY
    assert final.done_reason == "stop" and final.response == "" and final.eval_count == len(pieces)
    assert final.context and all(isinstance(token, int) for token in final.context)

    whole = await client.generate("llama3.1:8b", "Why is the sky blue?", stream=False)
    assert (whole.response, whole.done, whole.done_reason, whole.eval_count) == (REPLY, True, "stop", len(pieces))
    chat = await client.chat("llama3.1:8b", [{"role": "user", "content": "hi"}], stream=False)
    assert chat.message.content == REPLY and chat.done_reason == "stop"


async def test_a_first_request_reports_the_load_time_and_a_warm_one_not(client) -> None:
    cold = await client.generate("llama3.1:8b", "hi")
    warm = await client.generate("llama3.1:8b", "hi")
    assert cold.load_duration > 1e9 > warm.load_duration  # seconds to read 4.9 GB; milliseconds when loaded


async def test_inference_on_a_model_not_installed_is_404(client) -> None:
    for call in (client.chat("nope:1b", [{"role": "user", "content": "hi"}]), client.generate("nope:1b", "hi")):
        with pytest.raises(ollama.ResponseError) as caught:
            await call
        assert (caught.value.status_code, caught.value.error) == (404, "model 'nope:1b' not found")


async def test_an_embedding_model_cannot_chat(fake: FakeOllama, client) -> None:
    fake.pulls.rate_bps = math.inf
    await client.pull("nomic-embed-text")
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("nomic-embed-text", [{"role": "user", "content": "hi"}])
    assert (caught.value.status_code, caught.value.error) == (400, '"nomic-embed-text" does not support chat')


async def test_a_reply_can_fail_mid_stream_and_be_cut(fake: FakeOllama, client, clock: FakeClock) -> None:
    fake.reply_fails_with("CUDA error: out of memory", after_tokens=3)
    seen = []
    with pytest.raises(ollama.ResponseError) as caught:
        async for part in await client.chat("mistral:7b", [{"role": "user", "content": "hi"}], stream=True):
            seen.append(part)
    assert len(seen) == 3 and caught.value.error == "CUDA error: out of memory"

    fake.cut_reply_after(2)
    seen = []
    with pytest.raises(httpx.HTTPError):
        async for part in await client.generate("mistral:7b", "hi", stream=True):
            seen.append(part)
    assert len(seen) == 2
    await asyncio.sleep(0.05)  # the server notices the cut and closes the reply
    clock.now += 301
    assert fake.loaded == {}  # neither broken reply left the model pinned "in use"


# --- test helpers, the health side and the demo -------------------------------------------


async def test_added_models_keep_hostile_text_for_the_client_to_neutralise(fake: FakeOllama, client) -> None:
    fake.add_model(HOSTILE_NAME, details={"family": HOSTILE_NAME}, license=f"{HOSTILE_NAME}\n[link=x]y[/link]")
    listed = {m.model: m for m in (await client.list()).models}
    assert listed[HOSTILE_NAME].details.family == HOSTILE_NAME
    assert (await client.show(HOSTILE_NAME)).license == f"{HOSTILE_NAME}\n[link=x]y[/link]"


async def test_the_health_side_still_works(fake: FakeOllama, client) -> None:
    assert (await raw("GET", fake.url + "/api/version")).json() == {"version": "0.12.6"}
    assert (await raw("GET", fake.url + "/")).text == "Ollama is running"
    await fake.go_down()
    with pytest.raises(ConnectionError):
        await client.list()
    await fake.go_up()
    assert len((await client.list()).models) == 3


async def test_the_demo_inference_vm_runs_a_full_ollama(tmp_path) -> None:
    async with DemoTelemetry(tmp_path) as telemetry:
        service = next(s for s in telemetry.services if s.name == "ollama")
        assert isinstance(service.fake, FakeOllama)
        async with ollama.AsyncClient(host=service.fake.url, timeout=10) as client:
            installed = [m.model for m in (await client.list()).models]
            running = {m.model: m for m in (await client.ps()).models}
    assert sorted(installed) == ["deepseek-coder-v2:16b", "llama3.1:8b", "mistral:7b"]
    assert set(running) == {"deepseek-coder-v2:16b", "llama3.1:8b"}
    now = datetime.now(UTC)
    assert running["deepseek-coder-v2:16b"].expires_at > now + timedelta(days=365 * 200)
    assert now + timedelta(minutes=59) < running["llama3.1:8b"].expires_at <= now + timedelta(hours=1)
