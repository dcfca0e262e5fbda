"""services/ollama_models.py and services/model_library.py against the loopback Ollama.

The real `ollama` client (inside `OllamaModels`) talks HTTP to `FakeOllama`; for the
library, also through a port forward on a real (loopback) SSH connection, as the demo's
inference VM is reached, with `df` answered by the demo's GPU host over SSH.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aiconsole.demo.gpu_host import GpuHost
from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.demo.ssh_server import LoopbackSshServer
from aiconsole.domain.models import PullState
from aiconsole.services.endpoints import Endpoints
from aiconsole.services.model_library import ModelLibrary, ModelServer, parse_df
from aiconsole.services.ollama_models import ModelError, ModelNotFound, ModelTimeouts, OllamaModels
from aiconsole.services.ssh import SshPool

FAST = ModelTimeouts(connect_s=2.0, read_s=2.0, pull_read_s=2.0)


@pytest.fixture
async def ollama():
    async with FakeOllama(loaded={"llama3.1:8b": "10m"}) as fake:
        fake.pulls.rate_bps = 20e9  # seconds, not minutes: ~0.25 s for a 4.9 GB model
        yield fake


@pytest.fixture
async def models(ollama):
    async with OllamaModels(ollama.url, FAST) as client:
        yield client


async def test_lists_installed_models_with_details(models) -> None:
    installed = await models.installed()
    names = [m.name for m in installed]
    assert names == ["deepseek-coder-v2:16b", "llama3.1:8b", "mistral:7b"]  # largest first
    llama = installed[1]
    assert llama.size_bytes == 4_920_753_328 and llama.family == "llama"
    assert llama.parameter_size == "8.0B" and llama.quantization == "Q4_K_M"
    assert llama.modified_at is not None and llama.digest.startswith("46e0c10c")


async def test_lists_loaded_models_with_vram_and_keep_alive(models) -> None:
    [loaded] = await models.loaded()
    assert loaded.name == "llama3.1:8b"
    assert loaded.vram_bytes == loaded.size_bytes > 4_920_753_328  # weights + KV cache + graph, all on GPU
    assert loaded.context_length == 4096
    assert loaded.expires_at is not None


async def test_a_model_kept_forever_has_no_expiry(ollama, models) -> None:
    ollama.load("mistral:7b", keep_alive=-1)
    loaded = {m.name: m for m in await models.loaded()}
    assert loaded["mistral:7b"].expires_at is None


async def test_show_details_and_kv_cache(models) -> None:
    details = await models.details("llama3.1:8b")
    assert details.family == "llama" and details.context_length == 131072
    assert details.license_head.startswith("LLAMA 3.1 COMMUNITY LICENSE AGREEMENT")
    assert details.kv_bytes_per_token == 131072  # 32 blocks x 8 KV heads x 128 x K,V x f16
    assert "completion" in details.capabilities


async def test_show_of_an_unknown_model_is_not_found(models) -> None:
    with pytest.raises(ModelNotFound, match="model 'nope:1b' not found") as caught:
        await models.details("nope:1b")
    assert caught.value.status == 404 and not caught.value.retryable


async def test_pull_progress_to_success(ollama, models) -> None:
    events = [event async for event in models.pull("qwen2.5-coder:7b")]
    statuses = [event.status for event in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert statuses[-3:-1] == ["verifying sha256 digest", "writing manifest"]
    weights = [e for e in events if e.digest and e.total and e.total > 1e9]
    assert weights[-1].completed == weights[-1].total
    assert "qwen2.5-coder:7b" in [m.name for m in await models.installed()]


async def test_pull_of_an_unknown_model_fails_mid_stream_with_the_servers_message(models) -> None:
    seen = []
    with pytest.raises(ModelError, match="pull model manifest: file does not exist") as caught:
        async for event in models.pull("no-such-model:1b"):
            seen.append(event.status)
    assert seen == ["pulling manifest"]  # HTTP 200 and a first line, then the error line
    assert not caught.value.retryable


async def test_a_pull_cut_off_mid_stream_is_reported_and_a_retry_resumes(ollama, models) -> None:
    ollama.cut_pull_after(6)
    with pytest.raises(ModelError, match="connection dropped mid-answer; pull again to resume") as caught:
        async for _ in models.pull("phi3:mini"):
            pass
    assert caught.value.retryable
    retry = [event async for event in models.pull("phi3:mini")]
    first_progress = next(e for e in retry if e.total and e.total > 1e9)
    assert first_progress.completed and first_progress.completed > 0  # resumed, not from zero
    assert retry[-1].status == "success"


async def test_closing_a_pull_early_closes_the_request(ollama, models) -> None:
    ollama.pulls.rate_bps = 50e6  # slow: the pull is far from done when we stop reading
    stream = models.pull("gemma3:12b")
    async for event in stream:
        if event.completed:
            break
    await stream.aclose()
    await asyncio.sleep(0.3)
    assert "gemma3:12b" not in [m.name for m in await models.installed()]


async def test_delete_and_delete_of_a_missing_model(ollama, models) -> None:
    await models.delete("mistral:7b")
    assert "mistral:7b" not in [m.name for m in await models.installed()]
    with pytest.raises(ModelNotFound, match="deleting mistral:7b: model 'mistral:7b' not found"):
        await models.delete("mistral:7b")


async def test_unload_frees_the_model(models) -> None:
    await models.unload("llama3.1:8b")
    assert await models.loaded() == ()


@pytest.mark.parametrize("name", ["bad name", "-x", "x\x1b[31m", "a/b/c/d", "[b]x", ""])
async def test_invalid_names_are_refused_without_a_request(ollama, models, name) -> None:
    before = len(ollama.requests)
    for call in (models.details, models.delete, models.unload):
        with pytest.raises(ModelError, match="invalid model name"):
            await call(name)
    with pytest.raises(ModelError, match="invalid model name"):
        async for _ in models.pull(name):
            pass
    assert len(ollama.requests) == before


async def test_a_server_that_is_down(ollama, models) -> None:
    await ollama.go_down()
    with pytest.raises(ModelError, match="cannot reach Ollama at .*connection refused") as caught:
        await models.installed()
    assert caught.value.retryable
    with pytest.raises(ModelError, match="cannot reach Ollama"):
        async for _ in models.pull("phi3:mini"):
            pass


async def test_a_server_that_is_slow(ollama) -> None:
    ollama.slow(2.0)
    async with OllamaModels(ollama.url, ModelTimeouts(connect_s=1.0, read_s=0.3)) as client:
        started = time.monotonic()
        with pytest.raises(ModelError, match="did not answer in time") as caught:
            await client.installed()
    assert caught.value.retryable and time.monotonic() - started < 1.5


async def test_a_pull_that_stops_moving_is_stopped_by_its_watchdog(ollama) -> None:
    ollama.slow(3.0)  # no answer at all for 3 s: nothing moves
    async with OllamaModels(ollama.url, ModelTimeouts(connect_s=1.0, read_s=1.0, pull_read_s=0.4)) as client:
        started = time.monotonic()
        with pytest.raises(ModelError, match=r"pulling phi3:mini: no progress from Ollama for 0.4 s") as caught:
            async for _ in client.pull("phi3:mini"):
                pass
    assert caught.value.retryable and 0.3 < time.monotonic() - started < 1.5


async def test_a_steady_pull_outlasts_its_watchdog(ollama) -> None:
    ollama.pulls.rate_bps = 2e9  # ~1.1 s for phi3:mini, events every 60 ms: progress all along
    async with OllamaModels(ollama.url, ModelTimeouts(connect_s=1.0, read_s=1.0, pull_read_s=0.4)) as client:
        statuses = [part.status async for part in client.pull("phi3:mini")]
    assert statuses[-1] == "success"


async def test_a_server_answering_garbage_is_reported(ollama, models) -> None:
    ollama.faults.garble_next()
    with pytest.raises(ModelError, match="not Ollama's API"):
        await models.installed()


async def test_a_500_is_reported_with_the_servers_message(ollama, models) -> None:
    ollama.faults.fail_next(500, body={"error": "disk full\x1b[2J"})
    with pytest.raises(ModelError) as caught:
        await models.installed()
    assert str(caught.value) == "listing models: HTTP 500: disk full" and caught.value.retryable


# --- the library: through the VM's SSH forward, with df over SSH ---------------------------------


@pytest.fixture
async def vm(tmp_path):
    async with LoopbackSshServer(tmp_path / "vm", GpuHost(seed=1)) as server:
        yield server


@pytest.fixture
async def pool(vm, tmp_path):
    async with SshPool(
        known_hosts=vm.known_hosts_path, config_file=tmp_path / "no-ssh-config",
        client_keys=[vm.client_key_path], use_agent=False,
    ) as pool:  # fmt: skip
        yield pool


@pytest.fixture
def library(pool, vm, ollama):
    endpoints = Endpoints(pool)
    port = ollama.url.rsplit(":", 1)[1]
    endpoints.add("inference", "ollama", f"http://127.0.0.1:{port}", via_ssh=True, ssh=vm.target)
    signals: list[tuple[str, str]] = []
    server = ModelServer("inference", "ollama", "ollama", hourly_usd=0.35, ssh=vm.target)
    library = ModelLibrary([server], endpoints, pool, on_activity=lambda v, d: signals.append((v, d)), timeouts=FAST)
    library.signals = signals
    yield library


async def test_library_reads_models_and_disk_through_ssh(library, ollama) -> None:
    await library.refresh()
    state = library.snapshot().server("inference")
    assert state is not None and not state.error and state.fetched_at is not None
    assert len(state.installed) == 3 and [m.name for m in state.loaded] == ["llama3.1:8b"]
    assert state.disk is not None and state.disk.total_bytes == pytest.approx(70e9, rel=1e-3)
    assert state.models_bytes == sum(m.size_bytes for m in state.installed)
    assert ollama.server.url.rsplit(":", 1)[1] not in library._clients[("inference", "ollama")].url


async def test_library_keeps_old_data_as_stale_when_the_server_fails(library, ollama) -> None:
    await library.refresh()
    await ollama.go_down()
    await library.refresh()
    state = library.snapshot().server("inference")
    assert "no answer from Ollama" in state.error and len(state.installed) == 3  # what a forward shows
    assert state.stale(library.snapshot().at)


async def test_library_pull_runs_in_the_background_and_counts_as_activity(library, ollama) -> None:
    ollama.pulls.rate_bps = 4e9  # about 1.5 s for phi3:mini's 2.2 GB
    job = library.pull("inference", "phi3:mini")
    with pytest.raises(ModelError, match="already being pulled"):
        library.pull("inference", "PHI3:mini")  # the same model, spelt otherwise
    await asyncio.wait_for(job.task, 10)
    status = library.snapshot().pulls[0]
    assert status.state is PullState.SUCCEEDED and status.fraction == 1.0
    assert status.hourly_usd == 0.35 and status.cost_usd > 0
    assert ("inference", "pulling phi3:mini") in library.signals
    assert "phi3:mini" in [m.name for m in library.snapshot().server("inference").installed]  # refreshed


async def test_library_pull_failure_and_cancel(library, ollama) -> None:
    failing = library.pull("inference", "nope:1b")
    await asyncio.wait_for(failing.task, 5)
    assert failing.status(time.monotonic()).error.endswith("pull model manifest: file does not exist")
    assert not failing.retryable
    ollama.pulls.rate_bps = 10e6
    slow = library.pull("inference", "gemma3:12b")
    await asyncio.sleep(0.3)
    assert library.cancel_pull("inference", "mistral:7b") is False  # not being pulled
    assert library.cancel_pull("inference", "Gemma3:12b")
    with pytest.raises(asyncio.CancelledError):
        await slow.task
    assert slow.status(time.monotonic()).state is PullState.CANCELLED


async def test_library_delete_refreshes(library) -> None:
    await library.refresh()
    await library.delete("inference", "mistral:7b")
    assert "mistral:7b" not in [m.name for m in library.snapshot().server("inference").installed]
    with pytest.raises(ModelNotFound):
        await library.delete("inference", "mistral:7b")


def test_parse_df_takes_the_first_existing_folder() -> None:
    text = (
        "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
        "/dev/vda1         68359375 30761718  37597657      45% /\n"
        "/dev/vda1         68359375 30761718  37597657      45% /\n"
    )
    disk = parse_df(text)
    assert disk is not None and disk.free_bytes == 37597657 * 1024 and disk.mount == "/"
    assert parse_df("df: nothing\n") is None and parse_df("") is None
