"""StaticProvider: an always-on host."""

from __future__ import annotations

import pytest

from aiconsole.domain.power import PowerState
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, VmProvider
from aiconsole.services.providers.static import StaticProvider


async def test_always_running_and_never_powered():
    provider = StaticProvider()
    assert isinstance(provider, VmProvider)
    assert provider.kind == "static" and not provider.can_power
    status = await provider.status()
    assert (status.power, status.raw_state) == (PowerState.RUNNING, "always on")
    for action in (provider.start, provider.stop):
        with pytest.raises(ProviderError) as caught:
            await action()
        assert caught.value.kind is ProviderErrorKind.UNSUPPORTED
    await provider.aclose()
