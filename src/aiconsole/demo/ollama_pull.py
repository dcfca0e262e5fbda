"""Pulls for `FakeOllama`: the layers on its disk, and the progress stream of a download.

As server/images.go `PullModel` and server/download.go do it: `pulling manifest`; then
for each layer in manifest order (weights, template, license, params, config) a
`pulling <12 hex>` event with digest, total and completed, every 60 ms while bytes arrive
(Go's omitempty drops `completed` while it is 0, so a fresh layer's first event has none;
a layer already on disk is one event, complete); then `verifying sha256 digest`,
`writing manifest`, `success`. A download cut off keeps its part files, so the next pull
of the model starts each layer from the bytes already received. Pulls of different
models run side by side.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiconsole.demo.ollama_library import FakeModel, Layer
from aiconsole.demo.ollama_wire import Event

Sleep = Callable[[float], Awaitable[Any]]


class Downloads:
    """Bytes on disk per layer, and how fast the fake's registry sends more."""

    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        self._sleep = sleep
        self.rate_bps = 250e6
        """Download speed (bytes/s): 4.9 GB takes ~20 s, so the demo's pulls last tens of seconds."""
        self.tick_s = 0.06
        """How often Ollama reports a layer's progress (download.go `Wait`)."""
        self.events_per_layer: int | None = None
        """Progress events per layer that needs bytes, instead of one a tick."""
        self.fast_events: int | None = None
        """Exactly this many progress events a pull, sent as fast as the server writes (a benchmark)."""
        self._bytes: dict[str, int] = {}

    def store(self, model: FakeModel) -> None:
        """All of a model's layers are on disk (it is installed)."""
        self._bytes.update({layer.digest: layer.size for layer in model.layers})

    def forget(self, model: FakeModel, keep: set[str]) -> None:
        """Remove a deleted model's layers, except those other models still use."""
        for layer in model.layers:
            if layer.digest not in keep:
                self._bytes.pop(layer.digest, None)

    def received(self, layer: Layer) -> int:
        return min(self._bytes.get(layer.digest, 0), layer.size)

    async def pull(self, model: FakeModel | None, install: Callable[[FakeModel], None]) -> AsyncIterator[Event]:
        """The events of one pull; `install` runs once the manifest is written."""
        yield {"status": "pulling manifest"}
        if model is None:  # the registry answered 404: os.ErrNotExist, wrapped by PullModel
            yield {"error": "pull model manifest: file does not exist"}
            return
        for layer, count in zip(model.layers, self._counts(model), strict=True):
            async for event in self._layer(layer, count):
                yield event
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        install(model)
        yield {"status": "success"}

    def _counts(self, model: FakeModel) -> list[int]:
        if self.fast_events:  # all but one event a layer go to the weights, the first layer
            counts = [1] * len(model.layers)
            counts[0] = max(1, self.fast_events - (len(model.layers) - 1))
            return counts
        return [self._paced_count(layer) for layer in model.layers]

    def _paced_count(self, layer: Layer) -> int:
        """One event a tick while bytes arrive, plus one at the start; a small layer gets one."""
        remaining = layer.size - self.received(layer)
        if remaining <= 0:
            return 1
        if self.events_per_layer:
            return self.events_per_layer
        ticks = math.ceil(remaining / self.rate_bps / self.tick_s)
        return 1 if ticks <= 1 else ticks + 1

    async def _layer(self, layer: Layer, count: int) -> AsyncIterator[Event]:
        start = self.received(layer)
        remaining = layer.size - start
        fast = bool(self.fast_events)
        step_s = 0.0 if fast or count < 2 else remaining / self.rate_bps / (count - 1)
        for index in range(count):
            if step_s and index:
                await self._sleep(step_s)
            elif fast and index % 256 == 255:
                await asyncio.sleep(0)  # let other connections in between bursts
            done = layer.size if count == 1 else start + remaining * index // (count - 1)
            self._bytes[layer.digest] = max(self._bytes.get(layer.digest, 0), done)
            event: Event = {"status": f"pulling {layer.short}", "digest": layer.digest, "total": layer.size}
            if done:
                event["completed"] = done
            yield event
