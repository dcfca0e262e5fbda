"""Heartbeats for the on-VM dead-man's switch, and what each VM's guard said back.

Every `[guard] heartbeat_s`, `GuardHeartbeat.run` sends one heartbeat to each RUNNING VM with
an `ssh` target, all VMs at once, each on its pool connection (one short exec: see
`GuardRemote.heartbeat`). The same exec reports the guard's state, kept per VM as a
`GuardView` for its pane (`state(vm)`, `GuardView.text(now)`).

A VM without the guard answers "not installed": that is a state, not an error, so a fleet
where few VMs carry the guard shows no errors. A failed heartbeat is an error on that VM's
view (kept with when the last one got through), never an exception: `run` ends only when
cancelled. A VM that stops running is forgotten (its guard is of no concern while stopped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiconsole.domain.guard import GuardLayout, GuardStatus, GuardView
from aiconsole.domain.power import PowerState
from aiconsole.services.clock import utc_now
from aiconsole.services.guard_remote import GuardError, GuardRemote, build_guard_remote

if TYPE_CHECKING:
    from aiconsole.services.ssh import SshPool

__all__ = ["GuardHeartbeat", "build_guard_heartbeat"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Any]

_NO_STATE_DIR = "the guard's state directory is missing on the VM: run `aiconsole vm guard install` again"
_NOT_WRITTEN = "the heartbeat file could not be written (owned by another user?)"


class GuardHeartbeat:
    """Sends heartbeats to the running VMs and keeps each one's `GuardView`."""

    def __init__(
        self,
        remote: GuardRemote,
        targets: Mapping[str, str],
        *,
        interval_s: float = 60.0,
        clock: Callable[[], datetime] = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`targets`: VM name -> its `ssh` target (VMs without one are left out)."""
        self._remote = remote
        self._targets = dict(targets)
        self._interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._views: dict[str, GuardView] = {}

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def state(self, vm: str) -> GuardView | None:
        """The VM's guard as its latest heartbeat found it; None before the first (or while stopped)."""
        return self._views.get(vm)

    def states(self) -> dict[str, GuardView]:
        return dict(self._views)

    async def run(self, powers: Callable[[], Mapping[str, PowerState]]) -> None:
        """Beat every `interval_s` (the first at once) until cancelled; never raises otherwise."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.beat(powers())
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the heartbeats: the VMs would power off
                log.exception("guard heartbeat round failed")
            await self._sleep(max(0.0, self._interval_s - (loop.time() - started)))

    async def beat(self, powers: Mapping[str, PowerState]) -> None:
        """One round: a heartbeat to each running VM with a target, all at once."""
        running = [vm for vm in self._targets if powers.get(vm) is PowerState.RUNNING]
        for vm in list(self._views):
            if vm not in running:
                del self._views[vm]
        await asyncio.gather(*(self._beat_one(vm) for vm in running))

    async def _beat_one(self, vm: str) -> None:
        try:
            status: GuardStatus | None = await self._remote.heartbeat(vm, self._targets[vm])
            error = ""
        except GuardError as failure:
            status, error = None, failure.message
        except Exception as failure:  # not the VM's fault: still shown, never raised
            log.exception("guard heartbeat to %s failed", vm)
            status, error = None, f"internal error: {type(failure).__name__}"
        now = self._clock()
        previous = self._views.get(vm) or GuardView(checked_at=now)
        self._views[vm] = _next_view(previous, status, error, now)


def _next_view(previous: GuardView, status: GuardStatus | None, error: str, now: datetime) -> GuardView:
    if status is None:  # what was known stays; the error and its time are new
        return replace(previous, checked_at=now, error=error)
    if status.installed is not False:  # leftovers of a removed guard are nobody's problem
        if status.heartbeat == "failed":
            error = _NOT_WRITTEN
        elif status.heartbeat == "none" and status.installed:
            error = _NO_STATE_DIR
    return GuardView(
        checked_at=now,
        installed=status.installed,
        timer_state=status.timer_state,
        silence_limit_s=status.max_silence_s if status.installed else None,
        dry_run=bool(status.dry_run) and bool(status.installed),
        last_sent_at=now if status.heartbeat == "sent" else previous.last_sent_at,
        error=error,
    )


def build_guard_heartbeat(
    settings,
    pool: SshPool,
    *,
    layout: GuardLayout | None = None,
    clock: Callable[[], datetime] | None = None,
    sleep: Sleep | None = None,
) -> GuardHeartbeat:
    """The heartbeats for `settings` (a config.Settings) over `pool` (the telemetry hub's, in
    the console: the heartbeat rides the connection that is already open)."""
    remote = build_guard_remote(settings, pool, layout=layout, heartbeat_timeout_s=_beat_timeout(settings))
    targets = {vm.name: str(vm.ssh) for vm in settings.vm if vm.ssh}
    extra: dict[str, Any] = {}
    if clock is not None:
        extra["clock"] = clock
    if sleep is not None:
        extra["sleep"] = sleep
    return GuardHeartbeat(remote, targets, interval_s=settings.guard.heartbeat_s, **extra)


def _beat_timeout(settings) -> float:
    """Long enough for a reconnect, short enough that a round ends well before the next."""
    return max(5.0, min(30.0, settings.guard.heartbeat_s / 2))
