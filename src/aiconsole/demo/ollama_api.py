"""`FakeOllama`: an Ollama server on loopback that speaks the real HTTP API, as 0.12.x does.

The demo's inference VM runs one, and the tests of the model library and chat drive the
real `ollama` client against it. What it answers, as read in github.com/ollama/ollama
(server/routes.go, server/images.go `PullModel`, server/download.go, api/types.go):

| route | answer |
|---|---|
| `GET /api/tags` | installed models, most recently modified first |
| `GET /api/ps` | loaded models, `size` (all memory) and `size_vram`, `context_length`, `expires_at`; longest-lived first |
| `POST /api/show` | license, modelfile, parameters, template, details, model_info, capabilities, modified_at |
| `POST /api/pull` | NDJSON `pulling manifest`, per layer `pulling <12 hex>` + digest/total/completed, `verifying sha256 digest`, `writing manifest`, `success` |
| `DELETE /api/delete` | 200 and no body |
| `POST /api/generate`, `/api/chat` | a token stream, then `done` with `done_reason` and counters (ns); no prompt/messages: load (`load`), or with `keep_alive` 0 unload (`unload`) |
| `GET /api/version`, `GET /` | as `FakeServiceHealth` (whose knobs all still work) |

Errors are `{"error": ...}`: `model 'NAME' not found` (404, NAME as sent) for show, delete,
generate and chat; a pull from the registry of a name it lacks sends
`pull model manifest: file does not exist` inside the stream, on HTTP 200 (500 with
`"stream": false`). Names match as Ollama's do: any case, `:latest` implied.

Residency: a request loads its model with `keep_alive` (default 5m; "10m", seconds, 0 =
unload, negative = forever) and `expires_at` counts from the request's end; expired models
drop out when the next request comes (time from `clock`). A model takes its weights plus KV
cache and graph for its context (`domain.models.vram_needed`); what does not fit next to
the loaded ones sits on the CPU (`size_vram < size`), as in Ollama's partial offload. Real
Ollama would first unload idle models to make room: this fake never evicts.

Knobs: `reply_text`, `tokens_per_s` (None: no pacing), `gpu_total_bytes`, `pulls` (pull
pacing, see `ollama_pull.Downloads`), and the one-shot faults `cut_pull_after`,
`pull_fails_with`, `cut_reply_after`, `reply_fails_with`, `hold_reply_after`. `last_body`:
the last generate or chat request as sent.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

from aiconsole.demo.health_api import FakeServiceHealth
from aiconsole.demo.httpserver import Request, Response
from aiconsole.demo.ollama_library import LIBRARY, SEED_MODELS, FakeModel, make_model
from aiconsole.demo.ollama_pull import Downloads, Sleep
from aiconsole.demo.ollama_wire import Event, Fault, faulted, go_time, keep_alive_s, single, streamed, tokens
from aiconsole.domain.models import (
    DEFAULT_CONTEXT,
    InvalidModelName,
    kv_bytes_per_token,
    parse_model_name,
    vram_needed,
)

GIB = 1024**3
Kind = Literal["generate", "chat"]

DEFAULT_REPLY = """\
Here is a small Python function that tells whether a model fits on a GPU:

```python
def fits(weights_gb: float, free_gb: float, kv_cache_gb: float = 0.5) -> bool:
    \"\"\"True when the weights and the KV cache fit in free VRAM.\"\"\"
    return weights_gb + kv_cache_gb <= free_gb
```

- **Weights** load at about the size of the GGUF file.
- **KV cache** grows with the context length.

Run `ollama ps` to see how much of a loaded model sits on the GPU.
"""

_PROMPT_TOKENS_PER_S = 2500.0
"""Prompt evaluation speed reported in the counters (an 8B model on an RTX 4090)."""
_LOAD_BYTES_PER_S = 2e9
"""Weights read into VRAM a second, for a cold start's `load_duration`."""
_WARM_LOAD_NS = 15_000_000


@dataclass
class Residency:
    """A loaded model, as a row of /api/ps shows it."""

    name: str
    size: int
    """Memory it takes in all: weights, KV cache, graph."""
    size_vram: int
    context_length: int
    expires_at: float
    """Epoch seconds, by the fake's clock."""
    in_use: int = 0
    """Requests streaming from it now; a model in use never expires."""


class OllamaError(Exception):
    """A handler's refusal, answered `{"error": message}` with `status` as Ollama does."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class FakeOllama(FakeServiceHealth):
    """Ollama's model library, residency and inference API, with knobs for tests and the demo."""

    def __init__(
        self,
        installed: Iterable[str] = SEED_MODELS,
        loaded: Iterable[str] | Mapping[str, object] = (),
        *,
        registry: Iterable[FakeModel] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        gpu_total_bytes: int = 24 * GIB,
        context_length: int = DEFAULT_CONTEXT,
        keep_alive: object = "5m",
        version: str = "0.12.6",
        reply_text: str = DEFAULT_REPLY,
        tokens_per_s: float | None = 100.0,
    ) -> None:
        """`installed`/`registry` name library models (`ollama_library.LIBRARY`); `loaded`
        is names, or names to keep-alive values; `clock` is wall time in epoch seconds."""
        super().__init__("ollama", version=version, clock=clock)
        self._sleep = sleep
        self.gpu_total_bytes = gpu_total_bytes
        """The GPU's VRAM (an RTX 4090: 24 GiB)."""
        self.context_length = context_length
        """`num_ctx` for requests that set none."""
        self.default_keep_alive_s = keep_alive_s(keep_alive)
        self.reply_text = reply_text
        self.tokens_per_s = tokens_per_s
        """Reply pacing; None streams as fast as the server writes."""
        self.last_body: dict[str, Any] | None = None
        """The JSON body of the last generate or chat request, as the client sent it."""
        self.pulls = Downloads(sleep)
        """Layers on disk and pull pacing: `rate_bps`, `tick_s`, `events_per_layer`, `fast_events`."""
        self._registry = {_key(m.name): m for m in (LIBRARY.values() if registry is None else registry)}
        self._models: dict[str, FakeModel] = {}
        self._resident: dict[str, Residency] = {}
        self._pull_faults: deque[Fault] = deque()
        self._reply_faults: deque[Fault] = deque()
        now = self._clock()
        for age, name in enumerate(installed):
            self._install(self._registry[_key(name)], modified_at=now - 86_400 * (2 + 5 * age))
        pairs = loaded.items() if isinstance(loaded, Mapping) else ((name, None) for name in loaded)
        for name, keep in pairs:
            self.load(name, keep_alive=keep)
        for method, path, handler in (
            ("GET", "/api/tags", self._tags),
            ("GET", "/api/ps", self._ps),
            ("POST", "/api/show", self._show),
            ("POST", "/api/pull", self._pull),
            ("DELETE", "/api/delete", self._delete),
            ("POST", "/api/generate", partial(self._infer, "generate")),
            ("POST", "/api/chat", partial(self._infer, "chat")),
        ):
            self.router.add(method, path, handler)

    # --- views and helpers for tests ----------------------------------------------------

    @property
    def installed(self) -> dict[str, FakeModel]:
        return {model.name: model for model in self._models.values()}

    @property
    def loaded(self) -> dict[str, Residency]:
        self._expire()
        return {residency.name: residency for residency in self._resident.values()}

    def add_model(
        self, name: str, *, size: int = 4_000_000_000, installed: bool = True, pullable: bool = False, **card: Any
    ) -> FakeModel:
        """Install (and/or offer for pull) any model; `card` as `make_model` (details, license,
        template, model_info, capabilities...). Names are not checked: tests may send hostile ones."""
        model = make_model(name, size=size, **card)
        if pullable:
            self._registry[_key(name)] = model
        if installed:
            self._install(model, modified_at=self._clock())
        return model

    def remove_model(self, name: str) -> bool:
        """Delete an installed model and its blobs (unloading it first)."""
        model = self._models.pop(_key(name), None)
        if model is None:
            return False
        self.unload(name)
        self.pulls.forget(model, keep={layer.digest for other in self._models.values() for layer in other.layers})
        return True

    def load(self, name: str, keep_alive: object = None, *, context_length: int | None = None) -> Residency:
        """Load an installed model as a request would (KeyError for one not installed)."""
        model = self._models[_key(name)]
        return self._load(model, keep_alive_s(keep_alive, self.default_keep_alive_s), context_length)

    def unload(self, name: str) -> bool:
        return self._resident.pop(_key(name), None) is not None

    def cut_pull_after(self, events: int) -> None:
        """The next pull's connection drops after `events` lines (what arrived stays on disk)."""
        self._pull_faults.append(Fault(events, None))

    def pull_fails_with(self, message: str, after_events: int = 3) -> None:
        """The next pull sends `{"error": message}` after `after_events` lines and ends."""
        self._pull_faults.append(Fault(after_events, message))

    def cut_reply_after(self, tokens: int) -> None:
        """The next generate/chat stream drops its connection after `tokens` tokens."""
        self._reply_faults.append(Fault(tokens, None))

    def hold_reply_after(self, tokens: int) -> None:
        """The next generate/chat stream sends `tokens` tokens, then nothing, open, until the
        client leaves (a reply to stop half-way, the same every run)."""
        self._reply_faults.append(Fault(tokens, None, hold=True))

    def reply_fails_with(self, message: str, after_tokens: int = 3) -> None:
        """The next generate/chat stream sends `{"error": message}` after `after_tokens` tokens."""
        self._reply_faults.append(Fault(after_tokens, message))

    # --- residency ----------------------------------------------------------------------

    def _install_now(self, model: FakeModel) -> None:
        self._install(model, modified_at=self._clock())

    def _install(self, model: FakeModel, *, modified_at: float) -> None:
        self._models[_key(model.name)] = replace(model, modified_at=modified_at)
        self.pulls.store(model)

    def _load(self, model: FakeModel, keep_s: float, context: int | None) -> Residency:
        trained = model.model_info.get(f"{model.model_info.get('general.architecture')}.context_length")
        context = context or self.context_length
        if isinstance(trained, int) and trained > 0:
            context = min(context, trained)  # Ollama caps num_ctx at what the model was trained for
        key = _key(model.name)
        current = self._resident.get(key)
        if current is None or current.context_length != context:  # a new num_ctx reloads the model
            current = self._place(model, context, in_use=current.in_use if current else 0)
            self._resident[key] = current
        current.expires_at = self._clock() + keep_s
        return current

    def _place(self, model: FakeModel, context: int, in_use: int) -> Residency:
        """Weights + KV cache + graph; on the GPU what fits beside the others, the rest on the CPU."""
        need = vram_needed(model.size, context, kv_bytes_per_token(model.model_info))
        key = _key(model.name)
        others = sum(item.size_vram for k, item in self._resident.items() if k != key)
        vram = max(0, min(need, self.gpu_total_bytes - others))
        return Residency(model.name, need, vram, context, self._clock(), in_use)

    def _expire(self) -> None:
        now = self._clock()
        for key, residency in list(self._resident.items()):
            if residency.in_use == 0 and residency.expires_at <= now:
                del self._resident[key]

    def _find(self, name: str) -> FakeModel:
        model = self._models.get(_key(name))
        if model is None:
            raise OllamaError(404, f"model '{name}' not found")
        return model

    # --- routes -------------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        self._expire()  # Ollama's scheduler unloads on a timer; checking per request shows the same
        try:
            return await super().serve(request)
        except OllamaError as refusal:
            return Response(refusal.status, {"error": refusal.message})

    async def _tags(self, request: Request) -> Response:
        models = sorted(self._models.values(), key=lambda m: m.modified_at, reverse=True)
        rows = [
            {"name": m.name, "model": m.name, "modified_at": go_time(m.modified_at), "size": m.size,
             "digest": m.digest, "details": m.details}
            for m in models
        ]  # fmt: skip
        return Response(200, {"models": rows})

    async def _ps(self, request: Request) -> Response:
        rows = []
        for item in sorted(self._resident.values(), key=lambda r: r.expires_at, reverse=True):
            model = self._models[_key(item.name)]
            rows.append({
                "name": model.name, "model": model.name, "size": item.size, "digest": model.digest,
                "details": model.details, "expires_at": go_time(item.expires_at), "size_vram": item.size_vram,
                "context_length": item.context_length,
            })  # fmt: skip
        return Response(200, {"models": rows})

    async def _show(self, request: Request) -> Response:
        body = _body(request)
        name = str(body.get("model") or body.get("name") or "")
        if not name:
            raise OllamaError(400, "model is required")
        model = self._find(name)
        texts = {"license": model.license, "modelfile": model.modelfile(), "parameters": model.parameters_text(),
                 "template": model.template}  # fmt: skip
        return Response(200, {key: text for key, text in texts.items() if text} | {
            "details": model.details, "model_info": model.model_info,
            "capabilities": list(model.capabilities), "modified_at": go_time(model.modified_at),
        })  # fmt: skip

    async def _delete(self, request: Request) -> Response:
        body = _body(request)
        self.remove_model(self._find(str(body.get("model") or body.get("name") or "")).name)
        return Response(200, b"")

    async def _pull(self, request: Request) -> Response:
        body = _body(request)
        name = str(body.get("model") or body.get("name") or "")
        try:
            parse_model_name(name)
        except InvalidModelName:
            raise OllamaError(400, "invalid model name") from None
        pull = self.pulls.pull(self._registry.get(_key(name)), install=self._install_now)
        events = faulted(pull, self._next(self._pull_faults))
        return await single(events) if body.get("stream") is False else streamed(events)

    async def _infer(self, kind: Kind, request: Request) -> Response:
        body = _body(request)
        self.last_body = body
        asked = str(body.get("model") or "")
        if not asked and kind == "chat":
            raise OllamaError(400, "model is required")
        model = self._find(asked)
        try:
            keep_s = keep_alive_s(body.get("keep_alive"), self.default_keep_alive_s)
        except (ValueError, TypeError) as exc:
            raise OllamaError(400, str(exc)) from None
        if kind == "chat":
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            texts = [str(m.get("content") or "") for m in messages]
        else:
            texts = [str(body.get("prompt") or "")] if body.get("prompt") else []
        if not texts and body.get("keep_alive") is not None and keep_s == 0:
            self.unload(model.name)
            return Response(200, self._frame(kind, asked, "", done="unload"))
        if "completion" not in model.capabilities:
            raise OllamaError(400, f'"{asked}" does not support {kind}')
        cold = _key(model.name) not in self._resident
        residency = self._load(model, keep_s, _num_ctx(body))
        if not texts:
            return Response(200, self._frame(kind, asked, "", done="load"))
        prompt = [piece for text in texts for piece in tokens(text)]
        overhead = 4 * len(texts) + 1 if kind == "chat" else 10  # the template's own tokens
        reply = self._reply(kind, asked, residency, keep_s, prompt, overhead, cold)
        events = faulted(reply, self._next(self._reply_faults))
        return await single(events, partial(_joined, kind)) if body.get("stream") is False else streamed(events)

    # --- streams ------------------------------------------------------------------------

    def _frame(self, kind: Kind, asked: str, text: str, done: str | None = None, **extra: Any) -> Event:
        event: Event = {"model": asked, "created_at": go_time(self._clock(), utc=True)}
        if kind == "chat":
            event["message"] = {"role": "assistant", "content": text}
        else:
            event["response"] = text
        event["done"] = done is not None
        if done is not None:
            event["done_reason"] = done
        return event | extra

    async def _reply(self, kind: Kind, asked: str, residency: Residency, keep_s: float, prompt: list[str],
                     overhead: int, cold: bool) -> AsyncIterator[Event]:  # fmt: skip
        pieces = tokens(self.reply_text)
        started = time.perf_counter_ns()
        residency.in_use += 1
        try:
            for index, piece in enumerate(pieces):
                if index and self.tokens_per_s:
                    await self._sleep(1 / self.tokens_per_s)
                yield self._frame(kind, asked, piece)
            eval_ns = int(len(pieces) / self.tokens_per_s * 1e9) if self.tokens_per_s else None
            counters = _counters(len(prompt) + overhead, len(pieces), eval_ns or time.perf_counter_ns() - started,
                                 int(residency.size / _LOAD_BYTES_PER_S * 1e9) if cold else _WARM_LOAD_NS)  # fmt: skip
            if kind == "generate":
                counters = {"context": [_token_id(piece) for piece in prompt + pieces]} | counters
            yield self._frame(kind, asked, "", done="stop", **counters)
        finally:
            residency.in_use -= 1
            residency.expires_at = self._clock() + keep_s  # the keep-alive counts from the request's end

    @staticmethod
    def _next(faults: deque[Fault]) -> Fault | None:
        return faults.popleft() if faults else None


def _key(name: str) -> str:
    """The name as Ollama matches it: case-folded, `:latest` implied, default registry dropped."""
    try:
        parsed = parse_model_name(name)
    except InvalidModelName:
        return name.strip().lower()
    if parsed.host.lower() == "registry.ollama.ai":
        parsed = replace(parsed, host="")
    if not parsed.host and parsed.namespace.lower() == "library":
        parsed = replace(parsed, namespace="")
    return str(parsed).lower()


def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as exc:
        raise OllamaError(400, str(exc)) from None
    if body is None:
        raise OllamaError(400, "missing request body")
    if not isinstance(body, dict):
        raise OllamaError(400, "json: cannot unmarshal into a request object")
    return body


def _num_ctx(body: dict[str, Any]) -> int | None:
    options = body.get("options")
    value = options.get("num_ctx") if isinstance(options, dict) else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _counters(prompt_count: int, eval_count: int, eval_ns: int, load_ns: int) -> Event:
    prompt_ns = int(prompt_count / _PROMPT_TOKENS_PER_S * 1e9)
    return {
        "total_duration": load_ns + prompt_ns + eval_ns, "load_duration": load_ns,
        "prompt_eval_count": prompt_count, "prompt_eval_duration": prompt_ns,
        "eval_count": eval_count, "eval_duration": max(1, eval_ns),
    }  # fmt: skip


def _token_id(piece: str) -> int:
    return zlib.crc32(piece.encode()) % 128_000


def _joined(kind: Kind, last: Event, seen: list[Event]) -> Event:
    """One answer for `"stream": false`: the final event with the whole text."""
    if kind == "chat":
        text = "".join(str(e["message"]["content"]) for e in seen)
        return last | {"message": last["message"] | {"content": text}}
    return last | {"response": "".join(str(e["response"]) for e in seen)}
