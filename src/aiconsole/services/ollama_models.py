"""One Ollama server's model library, through the official `ollama` AsyncClient.

`OllamaModels(url)` lists what is installed and loaded, shows a model's details, pulls
(an async iterator of progress events), deletes and unloads. Every failure becomes a
`ModelError` whose message is the server's own (sanitised) or says plainly what went
wrong; `retryable` tells a pull cut off mid-stream or a server that is down or slow
(try again) from an answer that will not change (unknown model, bad name).

Names are checked against Ollama's grammar before any request (`domain/models.py`).
Importing this module imports `ollama` (and httpx, pydantic): import it after the first
frame. The client's timeouts are explicit (the library's default is none at all).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self

import httpx
import ollama

from aiconsole.domain.models import (
    InstalledModel,
    InvalidModelName,
    LoadedModel,
    ModelDetails,
    kv_bytes_per_token,
    license_head,
    parse_model_name,
)
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.ollama_errors import OllamaErrors
from aiconsole.services.stall_watch import StallWatch
from aiconsole.services.tls import shared_ssl_context

__all__ = ["ModelError", "ModelNotFound", "ModelTimeouts", "OllamaModels", "PullEvent", "checked_name"]


class ModelError(Exception):
    """A model operation failed; `str()` is one sanitised line for the screen or stderr."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(sanitize_line(message))
        self.retryable = retryable
        self.status = status


class ModelNotFound(ModelError):
    """The server does not have that model (HTTP 404)."""


@dataclass(frozen=True)
class ModelTimeouts:
    connect_s: float = 5.0
    read_s: float = 30.0
    """For a plain answer; a loaded server lists its models in well under a second."""
    pull_read_s: float = 300.0
    """Between two lines of a pull: verifying a 10 GB blob's digest prints nothing for a while.
    Checked by a watchdog every quarter of it, not by httpx on every read: a per-read
    timeout cost ~5 % of reading a fast pull."""


class PullEvent(Protocol):
    """One line of a pull's progress, as the server sent it: the client's own
    `ProgressResponse`, handed on as it is (a pull can send tens of thousands of events a
    second; copying each into an object of ours cost more than the rest of our work)."""

    status: str | None
    digest: str | None
    total: int | None
    completed: int | None


class OllamaModels:
    """The model library of the Ollama server at `url` (`http://127.0.0.1:PORT`)."""

    def __init__(self, url: str, timeouts: ModelTimeouts = ModelTimeouts()) -> None:
        self.url = url
        self._timeouts = timeouts
        # ollama passes `verify` on to httpx: one shared SSL context, not one each (services/tls.py).
        verify = shared_ssl_context()
        self._client = ollama.AsyncClient(host=url, timeout=self._timeout(timeouts.read_s), verify=verify)
        self._pull_client = ollama.AsyncClient(host=url, timeout=self._timeout(None), verify=verify)

    def _timeout(self, read_s: float | None) -> httpx.Timeout:
        return httpx.Timeout(read_s, connect=self._timeouts.connect_s)

    async def close(self) -> None:
        await self._client.close()
        await self._pull_client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- reading -----------------------------------------------------------------------------

    async def installed(self) -> tuple[InstalledModel, ...]:
        """`/api/tags`, largest first."""
        async with self._errors("listing models"):
            answer = await self._client.list()
        models = tuple(_installed(item) for item in answer.models)
        return tuple(sorted(models, key=lambda m: (-m.size_bytes, m.name)))

    async def loaded(self) -> tuple[LoadedModel, ...]:
        """`/api/ps`: what the server holds in memory now."""
        async with self._errors("listing loaded models"):
            answer = await self._client.ps()
        return tuple(_loaded(item) for item in answer.models)

    async def details(self, name: str) -> ModelDetails:
        """`/api/show`; raises ModelNotFound."""
        checked_name(name)
        async with self._errors(f"showing {name}", model=name):
            answer = await self._client.show(name)
        return _details(name, answer)

    # --- changing ----------------------------------------------------------------------------

    def pulling(self, name: str, progress: Callable[[], int]) -> _Pulling:
        """`async with models.pulling(name, progress) as parts: async for part in parts: ...`: the
        client's own progress objects with nothing in between (a pull can send tens of
        thousands of events a second; a generator of ours around each cost ~7 % of reading
        the stream). Failures inside the block become ModelErrors: an error line inside
        the stream (HTTP 200, then `{"error": ...}`) with its text; a stream cut off,
        retryable (pulling again resumes). Leaving the block early (cancel) closes the
        request, and the server stops downloading. The stream ending without `success` is
        for the reader to see (`PullTracker.end`). `progress()` counts the parts the reader
        took (`PullTracker.events`): when it stands still for `pull_read_s`, the pull is
        stopped with a retryable ModelError."""
        checked_name(name)
        errors = self._errors(f"pulling {name}", model=name, pulling=True)
        return _Pulling(self._pull_client, name, errors, progress, self._timeouts.pull_read_s)

    async def pull(self, name: str) -> AsyncIterator[PullEvent]:
        """The same as an iterator, for readers that are not in a hurry (tests, scripts);
        raises a retryable ModelError when the stream ends without `success`."""
        status, seen = "", 0

        def progress() -> int:
            return seen

        async with self.pulling(name, progress) as parts:
            async for part in parts:
                status, seen = part.status or "", seen + 1
                yield part
        if status != "success":
            raise ModelError(f"pulling {name}: {ENDED_EARLY}", retryable=True)

    async def delete(self, name: str) -> None:
        """Remove the model's files; raises ModelNotFound (a 404) if it is not there."""
        checked_name(name)
        async with self._errors(f"deleting {name}", model=name):
            await self._client.delete(name)

    async def unload(self, name: str) -> None:
        """Free its memory now (keep-alive 0); the files stay."""
        checked_name(name)
        async with self._errors(f"unloading {name}", model=name):
            await self._client.generate(model=name, keep_alive=0)

    # --- errors ------------------------------------------------------------------------------

    def _errors(self, doing: str, *, model: str = "", pulling: bool = False) -> OllamaErrors:
        hint = "; pull again to resume where it stopped" if pulling else ""
        return OllamaErrors(self.url, doing, ModelError, ModelNotFound, cut_hint=hint)


def checked_name(name: str) -> str:
    """`name` in Ollama's short form (`llama3.1` -> `llama3.1:latest`); raises ModelError for
    a name Ollama would refuse, so no request is ever sent with one."""
    try:
        return str(parse_model_name(name))
    except InvalidModelName as exc:
        raise ModelError(f"invalid model name {name!r}: {exc}") from None


ENDED_EARLY = "the server ended the stream before 'success'"


class _Pulling:
    """The context of `OllamaModels.pulling`: opens the stream, closes it, translates errors,
    and stops a pull whose reader saw nothing new for `idle_s` (`StallWatch`)."""

    def __init__(
        self, client: ollama.AsyncClient, name: str, errors: OllamaErrors, progress: Callable[[], int], idle_s: float
    ) -> None:
        self._client, self._name, self._errors = client, name, errors
        self._watch = StallWatch(progress, idle_s)
        self._stream: Any = None

    async def __aenter__(self) -> AsyncIterator[PullEvent]:
        self._watch.start()
        async with self._errors:
            self._stream = await self._client.pull(self._name, stream=True)
        return self._stream

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        stalled = self._watch.stop(exc)
        if self._stream is not None:
            await self._stream.aclose()
        if stalled:
            message = f"pulling {self._name}: no progress from Ollama for {self._watch.idle_s:g} s"
            raise ModelError(message, retryable=True)
        return await self._errors.__aexit__(kind, exc, tb)


# --- from the client's types to ours -----------------------------------------------------------


def _installed(item: Any) -> InstalledModel:
    details = item.details
    return InstalledModel(
        name=item.model or "",
        size_bytes=int(item.size or 0),
        modified_at=item.modified_at,
        family=(details.family if details else None) or "",
        parameter_size=(details.parameter_size if details else None) or "",
        quantization=(details.quantization_level if details else None) or "",
        digest=item.digest or "",
    )


def _loaded(item: Any) -> LoadedModel:
    expires = item.expires_at
    if expires is not None and expires.year >= 2200:  # keep-alive < 0: Ollama sends a far-off date
        expires = None
    return LoadedModel(
        name=item.model or item.name or "",
        size_bytes=int(item.size or 0),
        vram_bytes=int(item.size_vram or 0),
        context_length=item.context_length,
        expires_at=expires,
    )


def _details(name: str, answer: Any) -> ModelDetails:
    details = answer.details
    info = dict(answer.modelinfo or {})
    arch = info.get("general.architecture")
    context = info.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return ModelDetails(
        name=name,
        family=(details.family if details else None) or "",
        parameter_size=(details.parameter_size if details else None) or "",
        quantization=(details.quantization_level if details else None) or "",
        context_length=context if isinstance(context, int) and not isinstance(context, bool) else None,
        capabilities=tuple(str(c) for c in (answer.capabilities or ())),
        parameters=answer.parameters or "",
        template=answer.template or "",
        license_head=license_head(answer.license or ""),
        kv_bytes_per_token=kv_bytes_per_token(info),
    )
