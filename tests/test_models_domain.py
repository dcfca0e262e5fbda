"""domain/models.py: model names, fit estimates, pull progress. Pure, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiconsole.domain.models import (
    Fit,
    InvalidModelName,
    LoadedModel,
    PullState,
    PullTracker,
    estimate_fit,
    format_bytes,
    kv_bytes_per_token,
    license_head,
    model_name_problem,
    parse_model_name,
    same_model,
    vram_needed,
)

GB = 10**9
GIB = 1024**3
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("llama3.1:8b", "llama3.1:8b"),
        ("llama3.1", "llama3.1:latest"),
        ("  mistral:7b ", "mistral:7b"),
        ("deepseek-coder-v2:16b", "deepseek-coder-v2:16b"),
        ("library/mistral", "library/mistral:latest"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("localhost:5000/team/model:v1", "localhost:5000/team/model:v1"),
        ("_private", "_private:latest"),
        ("m@sha256:" + "a" * 64, "m:latest@sha256:" + "a" * 64),
    ],
)
def test_valid_names_parse_as_ollama_does(text, shown) -> None:
    assert str(parse_model_name(text)) == shown
    assert model_name_problem(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "required"),
        ("llama 3", "no spaces"),
        ("llama3:", "tag after ':' is empty"),
        ("-llama", "must start with"),
        (".hidden", "must start with"),
        ("a/b/c/d", "too many '/'"),
        ("/model", "namespace is empty"),
        ("my.team/model", "'.' is not allowed in the namespace"),
        ("model:v1:v2", "':' is not allowed in the model"),
        ("x" * 81, "longer than 80"),
        ("t:" + "x" * 81, "longer than 80"),
        ("evil\x1b[2J", "'\\x1b' is not allowed"),
        ("[bold]x", "must start with"),
        ("x[bold]", "'[' is not allowed"),
        ("modèle", "not allowed"),
        ("m@md5:abc", "digest"),
    ],
)
def test_invalid_names_are_refused_with_a_reason(text, reason) -> None:
    with pytest.raises(InvalidModelName, match=None) as caught:
        parse_model_name(text)
    assert reason in str(caught.value)
    assert model_name_problem(text) == str(caught.value)


def test_same_model_ignores_the_default_tag_and_case() -> None:
    assert same_model("llama3.1", "llama3.1:latest")
    assert same_model("Mistral:7B", "mistral:7b")
    assert not same_model("llama3.1:8b", "llama3.1:70b")


def test_kv_cache_per_token_from_model_info() -> None:
    llama = {  # Llama 3.1 8B's model_info (GQA: 8 KV heads of 32)
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.embedding_length": 4096,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
    }
    assert kv_bytes_per_token(llama) == 32 * 2 * 128 * 8 * 2  # 128 KiB
    explicit = llama | {"llama.attention.key_length": 192, "llama.attention.value_length": 128}
    assert kv_bytes_per_token(explicit) == 32 * (192 + 128) * 8 * 2
    assert kv_bytes_per_token({"general.architecture": "llama"}) is None
    assert kv_bytes_per_token({}) is None


def test_vram_needed_adds_kv_cache_and_graph() -> None:
    need = vram_needed(4_920_000_000, context=8192, kv_per_token=131072)
    assert need == 4_920_000_000 + 8192 * 131072 + 256 * 1024 * 1024  # 5 % of 4.9 GB is under the floor
    assert vram_needed(10 * GB, context=0) == 10 * GB + 500_000_000
    assert vram_needed(100, context=0) == 100 + 256 * 1024 * 1024  # the graph's floor


def loaded(name: str, vram: int, minutes: float | None = 5) -> LoadedModel:
    expires = None if minutes is None else NOW + timedelta(minutes=minutes)
    return LoadedModel(name, vram, vram, 4096, expires)


def test_fits_in_free_vram() -> None:
    fit = estimate_fit(6 * GIB, gpu_total_bytes=24 * GIB, gpu_used_bytes=10 * GIB, loaded=(loaded("a", 9 * GIB),))
    assert fit.fit is Fit.FITS and not fit.warns
    assert fit.free_bytes == 14 * GIB
    assert fit.message().startswith("fits: needs ~6.4 GB, 15.0 GB free of 25.8 GB")


def test_fits_only_once_idle_models_are_unloaded_soonest_to_expire_first() -> None:
    models = (loaded("deepseek-coder-v2:16b", 10 * GIB, minutes=4), loaded("llama3.1:8b", 6 * GIB, minutes=1))
    fit = estimate_fit(14 * GIB, gpu_total_bytes=24 * GIB, gpu_used_bytes=17 * GIB, loaded=models)
    assert fit.fit is Fit.EVICTS and fit.warns
    assert fit.evicted == ("llama3.1:8b", "deepseek-coder-v2:16b")  # 7 free + 6 is not yet 14
    assert "Ollama will unload llama3.1:8b, deepseek-coder-v2:16b first" in fit.message()


def test_one_eviction_is_enough_when_it_frees_enough() -> None:
    models = (loaded("big", 10 * GIB, minutes=1), loaded("small", 2 * GIB, minutes=9))
    fit = estimate_fit(12 * GIB, gpu_total_bytes=24 * GIB, gpu_used_bytes=14 * GIB, loaded=models)
    assert fit.fit is Fit.EVICTS and fit.evicted == ("big",)  # 10 free + 10


def test_spills_to_cpu_when_other_processes_hold_the_rest() -> None:
    # A training job holds 16 GiB that Ollama cannot free; 8 GiB is all it could ever get.
    fit = estimate_fit(10 * GIB, gpu_total_bytes=24 * GIB, gpu_used_bytes=18 * GIB, loaded=(loaded("m", 2 * GIB),))
    assert fit.fit is Fit.SPILLS and fit.cpu_bytes == 2 * GIB
    assert "would run on the CPU" in fit.message()


def test_unknown_without_live_gpu_figures_or_size() -> None:
    assert estimate_fit(6 * GIB, gpu_total_bytes=None, gpu_used_bytes=None).fit is Fit.UNKNOWN
    assert estimate_fit(None, gpu_total_bytes=24 * GIB, gpu_used_bytes=0).fit is Fit.UNKNOWN
    assert "no live GPU figures" in estimate_fit(6 * GIB, gpu_total_bytes=None, gpu_used_bytes=None).message()


def test_a_loaded_model_fits_whatever_the_figures() -> None:
    fit = estimate_fit(
        30 * GIB, gpu_total_bytes=24 * GIB, gpu_used_bytes=23 * GIB, loaded=(loaded("llama3.1:8b", 6 * GIB),),
        model="llama3.1:8b",
    )  # fmt: skip
    assert fit.fit is Fit.FITS


def test_loaded_model_shares_and_keep_alive() -> None:
    model = LoadedModel("m", 10 * GIB, 6 * GIB, 8192, NOW + timedelta(seconds=90))
    assert model.cpu_bytes == 4 * GIB and model.gpu_share == pytest.approx(0.6)
    assert model.keep_alive_left_s(NOW) == 90 and model.keep_alive_left_s(NOW + timedelta(hours=1)) == 0
    assert LoadedModel("m", 1, 1, None, None).keep_alive_left_s(NOW) is None


def test_pull_progress_overall_rate_eta_and_cost() -> None:
    tracker = PullTracker("llama3.1:8b", started_at=100.0, hourly_usd=0.36)
    tracker.feed(100.0, "pulling manifest")
    assert tracker.status().fraction is None
    tracker.feed(100.5, "pulling 667b0c1932bc", "sha256:667b", total=4_000_000_000)
    tracker.feed(101.0, "pulling 667b0c1932bc", "sha256:667b", total=4_000_000_000, completed=0)
    tracker.feed(111.0, "pulling 667b0c1932bc", "sha256:667b", total=4_000_000_000, completed=1_000_000_000)
    tracker.feed(111.0, "pulling 948af2743fc7", "sha256:948a", total=1_000_000_000, completed=0)
    status = tracker.status()
    assert status.state is PullState.RUNNING
    assert status.total_bytes == 5_000_000_000 and status.completed_bytes == 1_000_000_000
    assert status.fraction == pytest.approx(0.2)
    assert status.rate_bps == pytest.approx(100_000_000)  # 1 GB in the 10 s between readings
    assert status.eta_s == pytest.approx(40.0)
    assert status.elapsed_s == pytest.approx(11.0)
    assert status.projected_cost_usd == pytest.approx(51 * 0.36 / 3600)
    assert status.summary() == "llama3.1:8b  20% 1.0/5.0 GB 100 MB/s ETA 40s $0.01"
    tracker.feed(160.0, "verifying sha256 digest")
    tracker.feed(161.0, "success")
    done = tracker.status(now=500.0)  # a finished pull's clock stops
    assert done.state is PullState.SUCCEEDED and done.fraction == 1.0 and done.elapsed_s == 61.0
    assert done.summary() == "llama3.1:8b: pulled 5.0 GB in 1m 01s ($0.01 of VM time)"


def test_a_resumed_pull_does_not_count_its_head_start_as_speed() -> None:
    tracker = PullTracker("m", started_at=0.0)
    tracker.feed(1.0, "pulling aa", "sha256:aa", total=1000, completed=900)  # resumed at 90 %
    tracker.feed(2.0, "pulling aa", "sha256:aa", total=1000, completed=950)
    status = tracker.status()
    assert status.fraction == pytest.approx(0.95) and status.rate_bps == pytest.approx(50.0)


def test_failed_and_cancelled_pulls() -> None:
    tracker = PullTracker("nope:1b", started_at=0.0)
    tracker.feed(0.1, "pulling manifest")
    tracker.fail(0.2, "pull model manifest: file does not exist")
    status = tracker.status(now=9.0)
    assert status.state is PullState.FAILED and status.eta_s is None
    assert status.summary() == "nope:1b: failed: pull model manifest: file does not exist"
    other = PullTracker("m", started_at=0.0)
    other.feed(1.0, "pulling aa", "sha256:aa", total=1000, completed=250)
    other.cancel(2.0)
    assert other.status().summary() == "m: cancelled at  25%"


def test_license_head_keeps_the_first_lines() -> None:
    text = "\n\nLLAMA 3.1 COMMUNITY LICENSE AGREEMENT\n" + "\n".join(f"line {i}" for i in range(40))
    head = license_head(text, lines=3)
    assert head == "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\nline 0\nline 1"


def test_format_bytes() -> None:
    assert format_bytes(4_920_753_328) == "4.9 GB"
    assert format_bytes(512_000_000) == "512 MB"
    assert format_bytes(880) == "880 B"
    assert format_bytes(1_000_000_000, unit_of=4_900_000_000) == "1.0"
