"""The guard's script and unit templates, read from the installed package (the domain stays pure)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from aiconsole.domain.guard import GuardSettings, render_service, render_timer

_PACKAGE_DIR = "guard_script"
SCRIPT_FILE = "aiconsole-guard.sh"
SERVICE_FILE = "aiconsole-guard.service"
TIMER_FILE = "aiconsole-guard.timer"


def read_guard_file(name: str) -> str:
    """One file shipped in aiconsole/guard_script/ (a wheel carries it as package data)."""
    return files("aiconsole").joinpath(_PACKAGE_DIR).joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class GuardFiles:
    """The three texts `install_commands` writes to a VM."""

    script: str
    service: str
    timer: str


def load_guard_files(settings: GuardSettings) -> GuardFiles:
    """The script as shipped and both units rendered for `settings`."""
    return GuardFiles(
        script=read_guard_file(SCRIPT_FILE),
        service=render_service(settings, read_guard_file(SERVICE_FILE)),
        timer=render_timer(read_guard_file(TIMER_FILE)),
    )
