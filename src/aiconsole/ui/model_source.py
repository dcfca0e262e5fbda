"""What the Models tab is built from: the model library's surface, and the `[models]` options.

Only types here: the library itself (services/model_library.py) imports the ollama client,
which the console loads after its first frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiconsole.domain.models import DEFAULT_CONTEXT

if TYPE_CHECKING:
    from aiconsole.domain.models import ModelDetails
    from aiconsole.services.model_library import ModelsSnapshot, PullJob


class ModelSource(Protocol):
    """What the tab uses of `ModelLibrary` (tests hand in a stand-in)."""

    def snapshot(self) -> ModelsSnapshot: ...
    async def refresh(self, vm: str | None = None) -> None: ...
    def pull(self, vm: str, model: str) -> PullJob: ...
    def cancel_pull(self, vm: str, model: str) -> bool: ...
    def forget_pull(self, vm: str, model: str) -> None: ...
    async def delete(self, vm: str, model: str) -> None: ...
    async def unload(self, vm: str, model: str) -> None: ...
    async def details(self, vm: str, model: str) -> ModelDetails: ...


@dataclass(frozen=True)
class ModelsOptions:
    """The `[models]` section, as the tab uses it."""

    standard: tuple[str, ...] = ()
    refresh_s: float = 30.0
    context_length: int = DEFAULT_CONTEXT

    @classmethod
    def of(cls, settings: object) -> ModelsOptions:
        models = settings.models  # type: ignore[attr-defined]
        return cls(tuple(models.standard), models.refresh_s, models.context_length)
