"""Models on an Ollama server, as the library tab and the CLI see them. Pure: no I/O, no clock.

- names: Ollama's model-name grammar, checked before any request is sent;
- what is installed (`/api/tags`) and loaded (`/api/ps`), and a model's details (`/api/show`);
- `PullTracker`: a pull's NDJSON progress events folded into one `PullStatus` (per layer and
  overall: bytes, speed, ETA, what the download costs at the VM's hourly rate);
- will it fit: the VRAM a model needs (weights, KV cache for its context, compute graph)
  against the GPU's live free VRAM and what else is loaded.

Text from the server (names, details, errors) is kept as sent; the screen sanitises it.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from aiconsole.domain.format import format_duration, format_usd

# --- names ---------------------------------------------------------------------------------

DEFAULT_TAG = "latest"
_MAX_PART = {"host": 350, "namespace": 80, "model": 80, "tag": 80}


class InvalidModelName(ValueError):
    """A name Ollama would refuse; the message says which part and why."""


@dataclass(frozen=True)
class ModelName:
    """`[host/][namespace/]model[:tag][@digest]`, as Ollama parses it (types/model/name.go)."""

    model: str
    tag: str = DEFAULT_TAG
    namespace: str = ""
    host: str = ""
    digest: str = ""

    def __str__(self) -> str:
        """The short form the operator types and `ollama list` shows (`llama3.1:8b`)."""
        prefix = "/".join(part for part in (self.host, self.namespace) if part)
        text = f"{prefix}/{self.model}" if prefix else self.model
        text += f":{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text


def parse_model_name(text: str) -> ModelName:
    """Parse and check a model name; raises InvalidModelName with a reason.

    Each part starts with a letter, digit or underscore and goes on with those, `-`, `_`
    or `.` (no `.` in a namespace; `:` only in a host, for its port); the host is at most
    350 characters, the other parts 80. The tag defaults to `latest`."""
    name = text.strip()
    if not name:
        raise InvalidModelName("a model name is required")
    if any(c.isspace() for c in name):
        raise InvalidModelName("a model name has no spaces")
    rest, _, digest = name.partition("@")
    if digest and not _is_digest(digest):
        raise InvalidModelName(f"digest {digest!r} is not sha256:<64 hex digits>")
    path, tag = rest, ""
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        path, tag = rest[:colon], rest[colon + 1 :]
        if not tag:
            raise InvalidModelName("the tag after ':' is empty")
    parts = path.split("/")  # like Ollama: model; namespace/model; host/namespace/model
    if len(parts) > 3:
        raise InvalidModelName("too many '/': the form is [host/][namespace/]model[:tag]")
    *prefix, model = parts
    host, namespace = ("", *prefix)[-2:] if prefix else ("", "")
    _check_part("model", model)
    if prefix:  # a '/' with nothing before it is an empty part, not an absent one
        _check_part("namespace", namespace)
    if len(prefix) == 2:
        _check_part("host", host)
    if tag:
        _check_part("tag", tag)
    return ModelName(model, tag or DEFAULT_TAG, namespace, host, digest)


def model_name_problem(text: str) -> str | None:
    """Why `text` is not a valid model name, or None when it is (for an input's validator)."""
    try:
        parse_model_name(text)
    except InvalidModelName as exc:
        return str(exc)
    return None


def same_model(a: str, b: str) -> bool:
    """Whether two names mean the same model (`llama3.1` and `llama3.1:latest`, any case)."""
    try:
        return str(parse_model_name(a)).lower() == str(parse_model_name(b)).lower()
    except InvalidModelName:
        return a.strip().lower() == b.strip().lower()


def _check_part(kind: str, part: str) -> None:
    if not part:
        raise InvalidModelName(f"the {kind} is empty")
    if len(part) > _MAX_PART[kind]:
        raise InvalidModelName(f"the {kind} is longer than {_MAX_PART[kind]} characters")
    if not _word_char(part[0]):
        raise InvalidModelName(f"the {kind} {part!r} must start with a letter, digit or '_'")
    for char in part[1:]:
        if _word_char(char) or char in "-_":
            continue
        if char == "." and kind != "namespace":
            continue
        if char == ":" and kind == "host":
            continue
        raise InvalidModelName(f"{char!r} is not allowed in the {kind} {part!r}")


def _word_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def _is_digest(text: str) -> bool:
    algo, _, hexdigits = text.partition(":")
    return algo == "sha256" and len(hexdigits) == 64 and all(c in "0123456789abcdef" for c in hexdigits)


# --- installed, loaded, details ----------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    """One row of `/api/tags`."""

    name: str
    size_bytes: int
    modified_at: datetime | None = None
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""
    digest: str = ""


@dataclass(frozen=True)
class LoadedModel:
    """One row of `/api/ps`: a model held in memory by the server."""

    name: str
    size_bytes: int
    """All it takes in memory (weights, KV cache, graph), GPU and CPU together."""
    vram_bytes: int
    context_length: int | None = None
    expires_at: datetime | None = None
    """When its keep-alive runs out and the server unloads it; None: never."""

    @property
    def cpu_bytes(self) -> int:
        return max(0, self.size_bytes - self.vram_bytes)

    @property
    def gpu_share(self) -> float:
        """The part held on the GPU, 0..1 (1 for an empty model, which cannot spill)."""
        return 1.0 if self.size_bytes <= 0 else min(1.0, self.vram_bytes / self.size_bytes)

    @property
    def processor(self) -> str:
        """Where it runs, as `ollama ps` prints it: "100% GPU", "100% CPU", "48%/52% CPU/GPU"."""
        if self.vram_bytes == 0:
            return "100% CPU"
        if self.vram_bytes == self.size_bytes:
            return "100% GPU"
        if self.vram_bytes > self.size_bytes or self.size_bytes == 0:
            return "unknown"
        cpu = round(self.cpu_bytes / self.size_bytes * 100)
        return f"{cpu}%/{100 - cpu}% CPU/GPU"

    def keep_alive_left_s(self, now: datetime) -> float | None:
        """Seconds before the server unloads it; None when it stays loaded for good."""
        if self.expires_at is None:
            return None
        return max(0.0, (self.expires_at - now).total_seconds())


@dataclass(frozen=True)
class ModelDetails:
    """`/api/show`, the parts worth reading on a screen."""

    name: str
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""
    context_length: int | None = None
    """The longest context the model was trained for (from its model_info)."""
    capabilities: tuple[str, ...] = ()
    parameters: str = ""
    template: str = ""
    license_head: str = ""
    kv_bytes_per_token: int | None = None
    """KV cache per token of context at f16, from the architecture (None when unknown)."""


LICENSE_HEAD_LINES = 12


def license_head(text: str, lines: int = LICENSE_HEAD_LINES) -> str:
    """The first non-blank lines of a license: enough to see which one it is."""
    kept = [line.rstrip() for line in text.strip().splitlines()][:lines]
    return "\n".join(kept)


def kv_bytes_per_token(model_info: dict[str, object]) -> int | None:
    """KV cache bytes per token of context at f16 for a GGUF model's `model_info`.

    K and V, for each block: (embedding / heads) x KV heads values of 2 bytes. None when
    the architecture's keys are missing (the fit estimate then uses a rule of thumb)."""
    arch = model_info.get("general.architecture")
    if not isinstance(arch, str):
        return None
    blocks = _int(model_info.get(f"{arch}.block_count"))
    embedding = _int(model_info.get(f"{arch}.embedding_length"))
    heads = _int(model_info.get(f"{arch}.attention.head_count"))
    kv_heads = _int(model_info.get(f"{arch}.attention.head_count_kv")) or heads
    key_len = _int(model_info.get(f"{arch}.attention.key_length"))
    value_len = _int(model_info.get(f"{arch}.attention.value_length"))
    if not blocks:
        return None
    if key_len and value_len and kv_heads:
        per_block = (key_len + value_len) * kv_heads
    elif embedding and heads and kv_heads:
        per_block = 2 * (embedding // heads) * kv_heads
    else:
        return None
    return blocks * per_block * 2


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


# --- will it fit ---------------------------------------------------------------------------

DEFAULT_CONTEXT = 4096
"""Ollama's default context when a request sets none."""
_KV_RULE_OF_THUMB = 128 * 1024
"""KV bytes a token when the architecture is unknown: what Llama 3.1 8B takes at f16."""
_GRAPH_SHARE = 0.05
_GRAPH_MIN = 256 * 1024 * 1024


class Fit(enum.Enum):
    FITS = "fits"
    """Fits in the VRAM free now."""
    EVICTS = "evicts"
    """Fits only once the server unloads other models (Ollama does that for idle ones)."""
    SPILLS = "spills"
    """Larger than the VRAM it could ever have here: part of it runs on the CPU, slowly."""
    UNKNOWN = "unknown"
    """No live GPU figures (telemetry stale or missing), or no size yet."""


@dataclass(frozen=True)
class FitEstimate:
    fit: Fit
    need_bytes: int | None
    free_bytes: int | None
    """VRAM free now (all GPUs of the VM)."""
    total_bytes: int | None
    evicted: tuple[str, ...] = ()
    """Loaded models the server would have to unload first (for EVICTS)."""
    cpu_bytes: int = 0
    """What would not fit on the GPU at all (for SPILLS)."""

    @property
    def warns(self) -> bool:
        return self.fit in (Fit.EVICTS, Fit.SPILLS)

    def message(self) -> str:
        need = "?" if self.need_bytes is None else format_bytes(self.need_bytes)
        if self.fit is Fit.UNKNOWN:
            return f"needs ~{need} of VRAM; no live GPU figures to compare"
        free, total = format_bytes(self.free_bytes or 0), format_bytes(self.total_bytes or 0)
        if self.fit is Fit.FITS:
            return f"fits: needs ~{need}, {free} free of {total}"
        if self.fit is Fit.EVICTS:
            return f"needs ~{need}, {free} free: Ollama will unload {', '.join(self.evicted)} first"
        return f"needs ~{need}, more than the GPU can give: ~{format_bytes(self.cpu_bytes)} would run on the CPU (slow)"


def vram_needed(size_bytes: int, context: int = DEFAULT_CONTEXT, kv_per_token: int | None = None) -> int:
    """Weights (a GGUF file loads at about its size) + KV cache for `context` + compute graph."""
    kv = context * (kv_per_token if kv_per_token else _KV_RULE_OF_THUMB)
    return size_bytes + kv + max(_GRAPH_MIN, int(size_bytes * _GRAPH_SHARE))


def estimate_fit(
    need_bytes: int | None,
    *,
    gpu_total_bytes: int | None,
    gpu_used_bytes: int | None,
    loaded: tuple[LoadedModel, ...] = (),
    model: str = "",
) -> FitEstimate:
    """Will a model needing `need_bytes` fit on this VM's GPUs, as they are now?

    `gpu_used_bytes` is live (telemetry); part of it is the `loaded` models, which the
    server may unload to make room, and the rest is other processes (a training job),
    which it cannot. A model already loaded needs nothing more."""
    if any(same_model(item.name, model) for item in loaded if model):
        return FitEstimate(Fit.FITS, need_bytes, _free(gpu_total_bytes, gpu_used_bytes), gpu_total_bytes)
    if need_bytes is None or gpu_total_bytes is None or gpu_used_bytes is None:
        return FitEstimate(Fit.UNKNOWN, need_bytes, _free(gpu_total_bytes, gpu_used_bytes), gpu_total_bytes)
    free = max(0, gpu_total_bytes - gpu_used_bytes)
    if need_bytes <= free:
        return FitEstimate(Fit.FITS, need_bytes, free, gpu_total_bytes)
    models_vram = sum(item.vram_bytes for item in loaded)
    others = max(0, gpu_used_bytes - models_vram)  # not the server's: it cannot free these
    reachable = max(0, gpu_total_bytes - others)
    if need_bytes > reachable:
        return FitEstimate(Fit.SPILLS, need_bytes, free, gpu_total_bytes, cpu_bytes=need_bytes - reachable)
    evicted, room = [], free
    # The server unloads the model closest to its own unload first; pinned ones (None) last.
    for item in sorted(loaded, key=lambda m: (m.expires_at is None, m.expires_at or 0)):
        if room >= need_bytes:
            break
        evicted.append(item.name)
        room += item.vram_bytes
    return FitEstimate(Fit.EVICTS, need_bytes, free, gpu_total_bytes, evicted=tuple(evicted))


def _free(total: int | None, used: int | None) -> int | None:
    return None if total is None or used is None else max(0, total - used)


# --- pull progress -------------------------------------------------------------------------


class PullState(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class LayerProgress:
    digest: str
    total: int
    completed: int

    @property
    def done(self) -> bool:
        return self.total > 0 and self.completed >= self.total


@dataclass(frozen=True)
class PullStatus:
    """A pull at one moment, for a progress bar or a CLI line."""

    model: str
    state: PullState
    status: str
    """The server's last status line ("pulling 6a0746a1ec1a", "verifying sha256 digest", ...)."""
    layers: tuple[LayerProgress, ...]
    elapsed_s: float
    rate_bps: float | None
    """Bytes a second over the last few seconds; None before there are two readings."""
    hourly_usd: float = 0.0
    error: str = ""
    events: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(layer.total for layer in self.layers)

    @property
    def completed_bytes(self) -> int:
        return sum(min(layer.completed, layer.total) for layer in self.layers)

    @property
    def fraction(self) -> float | None:
        """Overall 0..1 over the layers announced so far; None before the first."""
        total = self.total_bytes
        return None if total <= 0 else self.completed_bytes / total

    @property
    def eta_s(self) -> float | None:
        if self.state is not PullState.RUNNING or not self.rate_bps or self.total_bytes <= 0:
            return None
        return max(0.0, self.total_bytes - self.completed_bytes) / self.rate_bps

    @property
    def cost_usd(self) -> float:
        """What the VM cost while this pull ran (it runs only for the pull's sake, or not)."""
        return self.elapsed_s * self.hourly_usd / 3600

    @property
    def projected_cost_usd(self) -> float | None:
        """Cost so far plus the ETA at the VM's hourly rate; None while the ETA is unknown."""
        eta = self.eta_s
        return None if eta is None else (self.elapsed_s + eta) * self.hourly_usd / 3600

    def summary(self) -> str:
        """One line: `llama3.1:8b 42% 2.1/4.9 GB 48.0 MB/s ETA 58s $0.01`."""
        if self.state is PullState.FAILED:
            return f"{self.model}: failed: {self.error}"
        if self.state is PullState.CANCELLED:
            return f"{self.model}: cancelled at {percent_text(self.fraction)}"
        if self.state is PullState.SUCCEEDED:
            return (
                f"{self.model}: pulled {format_bytes(self.total_bytes)} in {format_duration(self.elapsed_s)}"
                f" ({format_usd(self.cost_usd)} of VM time)"
            )
        parts = [self.model, percent_text(self.fraction)]
        if self.total_bytes:
            parts.append(f"{format_bytes(self.completed_bytes, unit_of=self.total_bytes)}/{format_bytes(self.total_bytes)}")
        if self.rate_bps:
            parts.append(f"{format_bytes(int(self.rate_bps))}/s")
        if self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        projected = self.projected_cost_usd
        parts.append(format_usd(self.cost_usd if projected is None else projected))
        if not self.total_bytes:
            parts.append(self.status)
        return " ".join(parts)


_RATE_WINDOW_S = 5.0
_READING_EVERY_S = 0.1


@dataclass
class PullTracker:
    """Folds a pull's progress events into `PullStatus`es. Times are seconds on any one
    monotonic clock, passed in (the tracker reads no clock).

    Ollama pulls layers one after another and reports each as
    `{"status": "pulling <digest>", "digest", "total", "completed"}`; other lines carry only
    a status. A retried pull resumes: its first event for a layer may already be far along."""

    model: str
    started_at: float
    hourly_usd: float = 0.0
    _layers: dict[str, list[int]] = field(default_factory=dict)
    """digest -> [total, completed]: mutable, since a pull can send thousands of events a
    second and `feed` must stay cheap; `status()` builds the immutable view."""
    _status: str = "starting"
    _state: PullState = PullState.RUNNING
    _error: str = ""
    _now: float = 0.0
    _events: int = 0
    _readings: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, bytes received) at most every _READING_EVERY_S: where the rate's window starts."""
    _received: int = 0
    """Bytes seen arriving in this pull (a resumed layer's head start is not counted)."""
    _next_reading: float = float("-inf")

    def __post_init__(self) -> None:
        self._now = self.started_at

    def events(self) -> int:
        """How many events it was fed (a pull's watchdog sees progress by it)."""
        return self._events

    @property
    def status_text(self) -> str:
        """The server's last status line (cheap: no view built)."""
        return self._status

    def feed(self, at: float, status: str, digest: str = "", total: int | None = None,
             completed: int | None = None) -> None:  # fmt: skip
        """One progress event."""
        self._now = max(self._now, at)
        self._events += 1
        self._status = status
        if digest and total:
            done = completed or 0
            layer = self._layers.get(digest)
            if layer is None:
                self._layers[digest] = [total, done]
            else:
                if done > layer[1]:
                    self._received += done - layer[1]
                layer[0], layer[1] = total, done
            if self._now >= self._next_reading:
                self._note_reading()
        if status == "success":
            self._state = PullState.SUCCEEDED
            for layer in self._layers.values():
                layer[1] = layer[0]

    def _note_reading(self) -> None:
        readings, now = self._readings, self._now
        self._next_reading = now + _READING_EVERY_S
        readings.append((now, self._received))
        # Keep one reading at or before the window's start, so a slow trickle still has a rate.
        while len(readings) > 2 and readings[1][0] <= now - _RATE_WINDOW_S:
            readings.popleft()

    def end(self, at: float, ended_early: str = "the server ended the stream before 'success'") -> bool:
        """The stream is over: True if it said `success`; otherwise the pull failed."""
        if self._state is PullState.RUNNING:
            self.fail(at, ended_early)
        return self._state is PullState.SUCCEEDED

    def fail(self, at: float, error: str) -> None:
        self._now = max(self._now, at)
        self._state, self._error = PullState.FAILED, error

    def cancel(self, at: float) -> None:
        self._now = max(self._now, at)
        self._state = PullState.CANCELLED

    def status(self, now: float | None = None) -> PullStatus:
        at = self._now if now is None or self._state is not PullState.RUNNING else max(now, self._now)
        return PullStatus(
            self.model, self._state, self._status,
            tuple(LayerProgress(digest, total, done) for digest, (total, done) in self._layers.items()),
            at - self.started_at, self._rate(), self.hourly_usd, self._error, self._events,
        )  # fmt: skip

    def _rate(self) -> float | None:
        """Bytes a second from the window's first reading to now."""
        if not self._readings:
            return None
        t0, b0 = self._readings[0]
        return (self._received - b0) / (self._now - t0) if self._now > t0 else None


# --- units -----------------------------------------------------------------------------------


def format_bytes(count: int, unit_of: int | None = None) -> str:
    """Decimal units as Ollama shows sizes: `4.9 GB`, `512 MB`, `880 B`. `unit_of` picks the
    unit of another figure, so `2.1/4.9 GB` reads in one unit."""
    scale = count if unit_of is None else unit_of
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(scale) >= size:
            value = count / size
            text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
            return text if unit_of is not None else f"{text} {unit}"
    return f"{count}" if unit_of is not None else f"{count} B"


def percent_text(fraction: float | None) -> str:
    """A share as a right-aligned percentage (`" 42%"`), `"  ?%"` when unknown."""
    return "  ?%" if fraction is None else f"{100 * fraction:3.0f}%"
