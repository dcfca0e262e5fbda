"""The `[guard]` section: the on-VM dead-man's switch that `aiconsole vm guard install` puts on
a VM, and the heartbeats the console sends it.

[guard]
silence_minutes = 20   # the VM powers itself off after this long without a heartbeat ...
busy_util_pct = 10     # ... while every GPU is at or under this utilisation ...
require_gpu = true     # ... (a VM without nvidia-smi counts as busy unless false) and nobody is logged in
heartbeat_s = 60       # how often the console (and `watch`) send each running VM a heartbeat
dry_run = false        # install a guard that only logs "would poweroff"
"""

# No `from __future__ import annotations`: see config.py.
from typing import Self

from pydantic import Field, model_validator

from aiconsole.config_fields import Section
from aiconsole.domain.guard import GuardLayout, GuardSettings

_MIN_BEATS_PER_SILENCE = 3


class GuardConfig(Section):
    silence_minutes: float = Field(default=20.0, ge=1, le=10_080)
    """A VM with the guard installed powers itself off after this many minutes without a
    heartbeat from the console or `aiconsole watch`, if its GPU is idle and nobody is logged
    in. Written into the VM's unit at install: run `vm guard install` again after changing it."""
    busy_util_pct: int = Field(default=10, ge=0, le=100)
    """A GPU above this utilisation (percent) keeps the VM up (written at install)."""
    require_gpu: bool = True
    """When true, a VM where nvidia-smi is missing counts as busy and is never powered off; false
    lets a CPU-only VM power off on silence and no session alone (written at install)."""
    heartbeat_s: float = Field(default=60.0, ge=5, le=600)
    """Seconds between heartbeats to each running VM with an ``ssh`` target (one short SSH exec
    on its existing connection; a VM without the guard just reports "not installed")."""
    dry_run: bool = False
    """Install a guard that only logs "would poweroff" instead of powering off: to try it out."""

    @model_validator(mode="after")
    def _silence_spans_heartbeats(self) -> Self:
        # One or two lost heartbeats (a reconnect, a slow VM) must never power a VM off.
        if self.silence_minutes * 60 < _MIN_BEATS_PER_SILENCE * self.heartbeat_s:
            raise ValueError(
                f"silence_minutes ({self.silence_minutes:g}) must be at least {_MIN_BEATS_PER_SILENCE} "
                f"heartbeats long (heartbeat_s = {self.heartbeat_s:g})"
            )
        return self

    def guard_settings(self, layout: GuardLayout | None = None) -> GuardSettings:
        """What `install_commands` writes into the VM's unit (paths from `layout`)."""
        layout = layout or GuardLayout()
        return GuardSettings(
            max_silence_s=round(self.silence_minutes * 60),
            busy_util_pct=self.busy_util_pct,
            require_gpu=self.require_gpu,
            heartbeat_path=layout.heartbeat_path,
            installed_path=layout.installed_path,
            dry_run=self.dry_run,
        )
