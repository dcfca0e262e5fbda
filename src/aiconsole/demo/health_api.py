"""`FakeServiceHealth`: the health endpoint of one AI service, served on loopback.

It plays one of the services of FLEET.md, answering what the real one answers when
healthy (as documented or seen; bodies the checker does not rely on are kept plain):

| role | path | healthy answer |
|---|---|---|
| `ollama` | `GET /api/version` | `{"version": "0.12.6"}` (and `GET /` "Ollama is running") |
| `open-webui` | `GET /health` | `{"status": true}` |
| `mlflow` | `GET /health` | `OK` (text/plain) |
| `vllm` | `GET /health` | 200, empty body |
| `localai` | `GET /readyz` (and `/healthz`) | `OK`; no `/health` (404), as in LocalAI |

Knobs, for the tests and the demo:
- `slow(seconds)`: every answer waits that long first (0 to stop);
- `loading(seconds=None)`: answer 503 while "loading a model", for `seconds` (by `clock`)
  or until `ready()`;
- `fail(status, body)`: answer that status and body until `recover()` (error bodies can
  carry escape sequences and markup: the checker must make them inert);
- `go_down()` / `go_up()`: close the listening socket (connections are refused) and
  listen again on the same port;
- `faults`: the per-request `FaultPlan` every fake has (one 500, one dropped connection).

The OpenAI-compatible roles (`vllm`, `localai`) also list their models at `GET /v1/models`
(`{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}`), the
models FLEET.md names for each; `models` changes the list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

from aiconsole.demo.fake_api import FakeApi
from aiconsole.demo.httpserver import Body, LoopbackHttpServer, Request, Response

Role = Literal["ollama", "open-webui", "mlflow", "vllm", "localai"]

HEALTH_PATHS: dict[str, str] = {
    "ollama": "/api/version",
    "open-webui": "/health",
    "mlflow": "/health",
    "vllm": "/health",
    "localai": "/readyz",
}
"""Where each role answers its health check."""

OPENAI_MODELS: dict[str, tuple[str, ...]] = {
    "vllm": ("meta-llama/Llama-3.1-8B-Instruct", "google/gemma-3-12b-it", "allenai/Molmo-7B-D-0924"),
    "localai": ("mistral-7b-instruct", "phi-3-mini", "nomic-embed-text"),
}
"""What each OpenAI-compatible role serves (FLEET.md)."""


class FakeServiceHealth(FakeApi):
    """One service's health endpoint with knobs for up, down, slow, loading and failing."""

    def __init__(
        self,
        role: Role = "ollama",
        *,
        version: str = "0.12.6",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if role not in HEALTH_PATHS:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(HEALTH_PATHS)}")
        self.role = role
        self.version = version
        self._clock = clock
        self.delay_s = 0.0
        self._loading_until: float | None = None
        self._failure: Response | None = None
        self._port: int | None = None
        self._listening = False
        self.router.add("GET", HEALTH_PATHS[role], self._health)
        if role == "ollama":
            self.router.add("GET", "/", self._ollama_root)
        if role == "localai":
            self.router.add("GET", "/healthz", self._health)
        self.models: list[str] = list(OPENAI_MODELS.get(role, ()))
        if role in OPENAI_MODELS:
            self.router.add("GET", "/v1/models", self._openai_models)

    @property
    def url(self) -> str:
        """The service's base URL; stays the same while the server is down."""
        if self._port is None:
            return super().url
        return f"http://127.0.0.1:{self._port}"

    @property
    def health_url(self) -> str:
        return self.url + HEALTH_PATHS[self.role]

    @property
    def is_up(self) -> bool:
        return self._port is not None and self._listening

    async def start(self) -> FakeServiceHealth:
        await super().start()
        self._port = int(self.server.url.rsplit(":", 1)[1])
        self._listening = True
        return self

    async def close(self) -> None:
        self._listening = False
        await super().close()

    # --- knobs ---------------------------------------------------------------------

    def slow(self, seconds: float) -> None:
        self.delay_s = max(0.0, seconds)

    def loading(self, seconds: float | None = None) -> None:
        """Answer 503 for `seconds` from now, or until `ready()` when None."""
        self._loading_until = float("inf") if seconds is None else self._clock() + seconds

    def ready(self) -> None:
        self._loading_until = None

    @property
    def is_loading(self) -> bool:
        return self._loading_until is not None and self._clock() < self._loading_until

    def fail(self, status: int = 500, body: Body = None, reason: str = "") -> None:
        """Answer `status` with `body` (default: the role's usual error shape) until `recover()`."""
        body = self._error_body("internal error") if body is None else body
        self._failure = Response(status, body, reason=reason)

    def recover(self) -> None:
        self._failure = None

    async def go_down(self) -> None:
        """Stop listening: connections to the port are refused until `go_up()`."""
        self._listening = False
        await self.server.close()

    async def go_up(self) -> None:
        """Listen again on the same port (the URL a checker holds stays valid)."""
        if self._listening:
            return
        self.server = LoopbackHttpServer(self.handle, port=self._port or 0)
        await self.server.start()
        self._listening = True

    # --- answers -------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # real time: the checker's timeout is under test
        if self._failure is not None:
            return self._failure
        return await self.router(request)

    async def _health(self, request: Request) -> Response:
        if self.is_loading:
            return Response(503, self._error_body("loading model"))
        if self.role == "ollama":
            return Response(200, {"version": self.version})
        if self.role == "open-webui":
            return Response(200, {"status": True})
        if self.role == "vllm":
            return Response(200, b"")
        return Response(200, "OK")  # mlflow, localai

    async def _openai_models(self, request: Request) -> Response:
        owner = "vllm" if self.role == "vllm" else "localai"
        data = [{"id": name, "object": "model", "created": 1_730_000_000, "owned_by": owner} for name in self.models]
        return Response(200, {"object": "list", "data": data})

    async def _ollama_root(self, request: Request) -> Response:
        return Response(200, "Ollama is running")

    def _error_body(self, message: str) -> Body:
        if self.role in ("mlflow", "localai"):
            return message
        return {"error": message}
