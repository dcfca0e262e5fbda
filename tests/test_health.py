"""Service health checks: HealthChecker against FakeServiceHealth over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from aiconsole.config import ServiceConfig
from aiconsole.demo.health_api import FakeServiceHealth
from aiconsole.domain.health import (
    HealthState,
    HealthTarget,
    health_path,
    health_urls,
    shown_url,
    state_for_status,
    unchecked,
)
from aiconsole.services.health import HealthChecker
from providers_conftest import HOSTILE_NAME, HOSTILE_NAME_SHOWN, has_no_control_chars, unused_loopback_url

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
async def checker():
    async with HealthChecker(timeout_s=2.0, clock=lambda: AT) as checker:
        yield checker


@pytest.fixture
async def ollama():
    async with FakeServiceHealth("ollama") as fake:
        yield fake


# --- where each kind is checked (pure) -------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "url", "expected"),
    [
        ("ollama", "http://127.0.0.1:11434", "http://127.0.0.1:11434/api/version"),
        ("ollama", "http://127.0.0.1:11434/", "http://127.0.0.1:11434/api/version"),
        ("ollama", "https://proxy.lan/ollama/", "https://proxy.lan/ollama/api/version"),
        ("mlflow", "http://127.0.0.1:5001", "http://127.0.0.1:5001/health"),
        ("openai", "http://gpu:8000/v1", "http://gpu:8000/health"),
        ("openai", "http://gpu:8000/v1/", "http://gpu:8000/health"),
        ("openai", "https://proxy.lan/vllm/v1", "https://proxy.lan/vllm/health"),
        ("openai", "http://pve-gpu.lan:8080/readyz", "http://pve-gpu.lan:8080/readyz"),
        ("http", "http://host:3000/health", "http://host:3000/health"),
        ("http", "http://127.0.0.1:5000/", "http://127.0.0.1:5000/"),
    ],
)
def test_health_path_per_kind(kind: str, url: str, expected: str) -> None:
    assert health_path(kind, url) == expected


def test_openai_falls_back_from_health_to_readyz_for_localai() -> None:
    assert health_urls("openai", "http://pve-gpu.lan:8080/v1") == (
        "http://pve-gpu.lan:8080/health",
        "http://pve-gpu.lan:8080/readyz",
    )
    assert health_urls("ollama", "http://h:11434") == ("http://h:11434/api/version",)


@pytest.mark.parametrize(
    ("status", "state"),
    [(200, "up"), (204, "up"), (503, "starting"), (500, "down"), (502, "down"), (404, "down"), (302, "down")],
)
def test_state_for_status(status: int, state: str) -> None:
    assert state_for_status(status) == HealthState(state)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:hunter22@host:3000/health", "http://host:3000/health"),
        ("http://token@host/health?key=abc123#frag", "http://host/health"),
        ("http://u:p@[::1]:8080/readyz", "http://[::1]:8080/readyz"),
        ("http://host:notaport/", "(invalid URL)"),
    ],
)
def test_shown_url_drops_userinfo_query_and_fragment(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_unchecked_is_unknown_and_not_healthy() -> None:
    health = unchecked("ollama", "ollama", "http://u:pw1@h:11434")
    assert health.state is HealthState.UNKNOWN and not health.healthy
    assert health.url_shown == "http://h:11434"


# --- up ----------------------------------------------------------------------------------


async def test_ollama_up_with_latency_and_version(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    health = await checker.check("ollama", "ollama", ollama.url)
    assert health.state is HealthState.UP and health.healthy
    assert health.version == "0.12.6"
    assert health.latency_ms is not None and 0 < health.latency_ms < 2000
    assert health.error == ""
    assert health.checked_at == AT
    assert health.url_shown == ollama.url
    assert ollama.requests == [("GET", "/api/version")]


@pytest.mark.parametrize(
    ("role", "kind", "suffix", "paths"),
    [
        ("open-webui", "http", "/health", ["/health"]),
        ("mlflow", "mlflow", "", ["/health"]),
        ("vllm", "openai", "/v1", ["/health"]),
        ("localai", "openai", "/v1", ["/health", "/readyz"]),
    ],
)
async def test_each_service_is_up_on_its_own_path(
    checker: HealthChecker, role, kind: str, suffix: str, paths: list[str]
) -> None:
    async with FakeServiceHealth(role) as fake:
        health = await checker.check(role, kind, fake.url + suffix)
        assert health.state is HealthState.UP, health.error
        assert health.version == "" and health.latency_ms is not None
        assert [path for _, path in fake.requests] == paths


async def test_localai_path_is_remembered(checker: HealthChecker) -> None:
    """After /health answered 404 once, the next check goes to /readyz directly."""
    async with FakeServiceHealth("localai") as fake:
        await checker.check("localai", "openai", fake.url + "/v1")
        fake.requests.clear()
        assert (await checker.check("localai", "openai", fake.url + "/v1")).healthy
        assert fake.requests == [("GET", "/readyz")]


# --- down --------------------------------------------------------------------------------


async def test_connection_refused_is_down_with_the_reason(checker: HealthChecker) -> None:
    health = await checker.check("ollama", "ollama", unused_loopback_url())
    assert health.state is HealthState.DOWN
    assert "refused" in health.error.lower()
    assert health.latency_ms is None and health.checked_at == AT


async def test_slow_server_times_out_as_down() -> None:
    async with FakeServiceHealth("vllm") as fake, HealthChecker(timeout_s=0.2) as checker:
        fake.slow(2.0)
        health = await checker.check("vllm", "openai", fake.url + "/v1")
    assert health.state is HealthState.DOWN
    assert "timed out" in health.error and "0.2 s" in health.error


async def test_slow_but_within_the_timeout_is_up_with_its_latency() -> None:
    async with FakeServiceHealth("mlflow") as fake, HealthChecker(timeout_s=2.0) as checker:
        fake.slow(0.15)
        health = await checker.check("mlflow", "mlflow", fake.url)
    assert health.state is HealthState.UP
    assert health.latency_ms is not None and health.latency_ms >= 150


async def test_server_that_goes_down_and_comes_back(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    url = ollama.url
    await ollama.go_down()
    down = await checker.check("ollama", "ollama", url)
    assert down.state is HealthState.DOWN and "refused" in down.error.lower()
    await ollama.go_up()
    assert (await checker.check("ollama", "ollama", url)).state is HealthState.UP


async def test_500_is_down_with_the_servers_reason(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    ollama.fail(500, {"error": "llama runner process has terminated: exit status 2"})
    health = await checker.check("ollama", "ollama", ollama.url)
    assert health.state is HealthState.DOWN
    assert health.error == ("HTTP 500 Internal Server Error: llama runner process has terminated: exit status 2")
    assert health.latency_ms is not None and health.version == ""
    ollama.recover()
    assert (await checker.check("ollama", "ollama", ollama.url)).healthy


async def test_502_html_page_is_down_without_the_html(checker: HealthChecker) -> None:
    async with FakeServiceHealth("open-webui") as fake:
        fake.faults.fail_next(502, body=b"<html><body>Bad Gateway</body></html>", headers={"Content-Type": "text/html"})
        health = await checker.check("open-webui", "http", fake.health_url)
    assert health.state is HealthState.DOWN
    assert health.error == "HTTP 502 Bad Gateway"


async def test_404_on_a_generic_url_is_down(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    health = await checker.check("api", "http", ollama.url + "/nope")
    assert health.state is HealthState.DOWN and health.error.startswith("HTTP 404 Not Found")


async def test_dropped_connection_is_down(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    ollama.faults.drop_next()
    health = await checker.check("ollama", "ollama", ollama.url)
    assert health.state is HealthState.DOWN and health.error


async def test_invalid_url_is_down_not_an_exception(checker: HealthChecker) -> None:
    for url in ("not a url", "ftp://host/health", "http://host:notaport/"):
        health = await checker.check("x", "http", url)
        assert health.state is HealthState.DOWN, url
        assert health.error


# --- starting ------------------------------------------------------------------------------


async def test_503_while_loading_is_starting_then_up_when_ready(checker: HealthChecker) -> None:
    async with FakeServiceHealth("vllm") as fake:
        fake.loading()
        starting = await checker.check("vllm", "openai", fake.url + "/v1")
        assert starting.state is HealthState.STARTING and not starting.healthy
        assert starting.error == "HTTP 503 Service Unavailable: loading model"
        fake.ready()
        assert (await checker.check("vllm", "openai", fake.url + "/v1")).state is HealthState.UP


async def test_loading_for_some_seconds_ends_by_itself(checker: HealthChecker) -> None:
    now = [100.0]
    async with FakeServiceHealth("localai", clock=lambda: now[0]) as fake:
        fake.loading(30)
        assert (await checker.check("localai", "openai", fake.url + "/v1")).state is HealthState.STARTING
        now[0] += 31
        assert (await checker.check("localai", "openai", fake.url + "/v1")).state is HealthState.UP


async def test_ollama_503_is_starting(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    ollama.faults.fail_next(503, body={"error": "server busy, please try again"})
    health = await checker.check("ollama", "ollama", ollama.url)
    assert health.state is HealthState.STARTING and "server busy" in health.error


# --- untrusted text and secrets -----------------------------------------------------------


async def test_hostile_error_body_is_inert(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    ollama.fail(500, {"error": HOSTILE_NAME + "\x1bP+q544e\x1b\\ after\r\nline two"})
    health = await checker.check("ollama", "ollama", ollama.url)
    assert health.state is HealthState.DOWN
    assert has_no_control_chars(health.error) and "\x1b" not in health.error
    assert HOSTILE_NAME_SHOWN in health.error  # markup stays literal text, rendered markup=False
    assert "pwn" not in health.error and "544e" not in health.error
    assert health.error.endswith("after line two")


async def test_hostile_text_body_and_version_are_inert(checker: HealthChecker) -> None:
    async with FakeServiceHealth("mlflow") as fake:
        fake.fail(500, "\x1b[2J\x1b]52;c;cGF5bG9hZA==\x07[link=http://evil]click[/link]")
        health = await checker.check("mlflow", "mlflow", fake.url)
    assert has_no_control_chars(health.error)
    assert health.error == "HTTP 500 Internal Server Error: [link=http://evil]click[/link]"
    async with FakeServiceHealth("ollama", version="\x1b[31m0.1[b]x[/b]\x9b2J" + "9" * 100) as fake:
        health = await checker.check("ollama", "ollama", fake.url)
    assert health.healthy and has_no_control_chars(health.version)
    assert health.version.startswith("0.1[b]x[/b]") and len(health.version) <= 40


async def test_long_error_body_is_cut_short(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    ollama.fail(500, "x" * 1_000_000)
    health = await checker.check("ollama", "ollama", ollama.url)
    assert health.state is HealthState.DOWN and len(health.error) <= 160


async def test_url_userinfo_is_never_shown(checker: HealthChecker, ollama: FakeServiceHealth) -> None:
    secret_url = ollama.url.replace("http://", "http://admin:hunter22@") + "/?token=tok-9876"
    ollama.fail(500, {"error": "denied for admin:hunter22 with token tok-9876"})
    health = await checker.check("ollama", "ollama", secret_url)
    assert health.url_shown == ollama.url + "/"
    for secret in ("hunter22", "tok-9876", "admin"):
        assert secret not in health.error and secret not in health.url_shown
    refused = unused_loopback_url().replace("http://", "http://admin:hunter22@")
    health = await checker.check("ollama", "ollama", refused)
    assert health.state is HealthState.DOWN
    assert "hunter22" not in health.error and "hunter22" not in health.url_shown


async def test_forwarded_service_shows_the_url_seen_from_the_vm(
    checker: HealthChecker, ollama: FakeServiceHealth
) -> None:
    [health] = await checker.check_all(
        [HealthTarget("ollama", "ollama", ollama.url, shown_as="http://u:pw@127.0.0.1:11434")]
    )
    assert health.healthy and health.url_shown == "http://127.0.0.1:11434"


# --- many at once ----------------------------------------------------------------------------


async def test_check_all_keeps_order_and_takes_service_configs(checker: HealthChecker) -> None:
    async with FakeServiceHealth("ollama") as ollama, FakeServiceHealth("mlflow") as mlflow:
        services = [
            ServiceConfig(name="mlflow", kind="mlflow", url=mlflow.url),
            ServiceConfig(name="gone", kind="http", url=unused_loopback_url() + "/health"),
            ServiceConfig(name="ollama", kind="ollama", url=ollama.url),
        ]
        board = await checker.check_all(services)
    assert [(h.name, h.state) for h in board] == [
        ("mlflow", HealthState.UP),
        ("gone", HealthState.DOWN),
        ("ollama", HealthState.UP),
    ]
    assert board[2].version == "0.12.6"


class _CountingFake(FakeServiceHealth):
    in_flight = 0
    most = 0

    async def serve(self, request):
        type(self).in_flight += 1
        type(self).most = max(type(self).most, type(self).in_flight)
        try:
            return await super().serve(request)
        finally:
            type(self).in_flight -= 1


async def test_check_all_runs_concurrently_under_a_cap() -> None:
    fakes = [_CountingFake("mlflow") for _ in range(6)]
    for fake in fakes:
        await fake.start()
        fake.slow(0.1)
    try:
        async with HealthChecker(timeout_s=2.0, max_concurrent=3) as checker:
            board = await checker.check_all(HealthTarget(f"s{i}", "mlflow", f.url) for i, f in enumerate(fakes))
    finally:
        for fake in fakes:
            await fake.close()
    assert all(health.healthy for health in board)
    assert _CountingFake.most == 3


async def test_a_bug_in_the_client_is_reported_not_raised() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom at http://u:hunter22@h")

    client = httpx.AsyncClient(transport=httpx.MockTransport(explode))
    checker = HealthChecker(client)
    health = await checker.check("x", "http", "http://u:hunter22@h/health")
    await client.aclose()
    assert health.state is HealthState.UNKNOWN
    assert "RuntimeError" in health.error and "hunter22" not in health.error


async def test_cancelling_a_check_cancels_it(ollama: FakeServiceHealth) -> None:
    ollama.slow(5)
    async with HealthChecker(timeout_s=10) as checker:
        task = asyncio.create_task(checker.check("ollama", "ollama", ollama.url))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
