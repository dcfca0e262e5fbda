"""The one power state every provider's own vocabulary is mapped onto."""

from __future__ import annotations

from enum import StrEnum


class PowerState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    STARTING = "starting"
    STOPPING = "stopping"
    UNKNOWN = "unknown"
    ERROR = "error"

    @property
    def is_known(self) -> bool:
        """True when the state says something about billing; unknown/error say nothing."""
        return self not in (PowerState.UNKNOWN, PowerState.ERROR)

    @property
    def is_transition(self) -> bool:
        return self in (PowerState.STARTING, PowerState.STOPPING)

    @property
    def is_billed(self) -> bool:
        """Pay-per-use providers bill from the start request until the VM is fully stopped."""
        return self in (PowerState.RUNNING, PowerState.STARTING, PowerState.STOPPING)
