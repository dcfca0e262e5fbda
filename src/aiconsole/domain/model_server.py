"""`ModelServer`: one model server of the fleet, a VM's `ollama` or `openai` service.

The model library lists and pulls on it; the chat sends to it (as a "chat target"). Pure:
built from the config by `assembly.model_servers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiconsole.services.ssh_target import SshTarget


MODEL_SERVER_KINDS = ("ollama", "openai")
"""The service kinds that serve models: what the Models tab lists and the chat talks to."""


@dataclass(frozen=True)
class ModelServer:
    vm: str
    service: str
    kind: str
    """"ollama" (the full library, chat) or "openai" (its `/v1/models` read-only, chat)."""
    hourly_usd: float = 0.0
    ssh: SshTarget | str | None = None
    api_key_env: str | None = None
    can_power: bool = False
    """Its VM can be started from here (not a static, always-on host): chat starts it on demand."""

    @property
    def label(self) -> str:
        return f"{self.vm}/{self.service}"
