"""An always-on host (a free-tier VM, a box under the desk): always running, no power control."""

from __future__ import annotations

from aiconsole.domain.power import PowerState
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, ProviderStatus


class StaticProvider:
    kind = "static"
    can_power = False

    def __repr__(self) -> str:
        return "StaticProvider()"

    async def status(self) -> ProviderStatus:
        return ProviderStatus(power=PowerState.RUNNING, raw_state="always on")

    async def start(self) -> None:
        raise ProviderError(ProviderErrorKind.UNSUPPORTED, "This host is always on: it cannot be started")

    async def stop(self) -> None:
        raise ProviderError(ProviderErrorKind.UNSUPPORTED, "This host is always on: it cannot be stopped")

    async def aclose(self) -> None:
        pass
