"""From command line to running parts, in two steps so the console paints first.

`RuntimeRequest` is what the command line asked for; making one is cheap (it reads
the TOML file, nothing more). `RuntimeRequest.load()` validates the settings
(pydantic), opens the ledger and builds the fleet monitor: the TUI calls it just
after its first frame, the CLI commands at once. Heavy imports live inside `load`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiconsole.config_file import read_config_data, ui_theme_hint

if TYPE_CHECKING:
    from aiconsole.assembly import Runtime

DEMO_SOURCE = "demo fleet"


@dataclass(frozen=True)
class RuntimeRequest:
    environ: Mapping[str, str]
    config_file: Path | None
    """None for the demo fleet."""
    config_data: dict[str, Any] = field(default_factory=dict)
    """The TOML data read from `config_file`, not yet validated."""
    read_only: bool = False

    @classmethod
    def for_user(cls, config_file: Path, environ: Mapping[str, str], *, read_only: bool = False) -> RuntimeRequest:
        """Reads the file now: a missing file or a TOML syntax error raises ConfigError at once."""
        return cls(environ, config_file, read_config_data(config_file), read_only)

    @classmethod
    def for_demo(cls, environ: Mapping[str, str], *, read_only: bool = False) -> RuntimeRequest:
        return cls(environ, None, {}, read_only)

    @property
    def source(self) -> str:
        return DEMO_SOURCE if self.config_file is None else str(self.config_file)

    @property
    def theme_hint(self) -> str | None:
        return ui_theme_hint(self.config_data)

    @property
    def theme_dirs(self) -> list[Path]:
        return [] if self.config_file is None else [self.config_file.parent / "themes"]

    def load(self) -> Runtime:
        """Validate and build; raises ConfigError (file, field, value) for a bad config."""
        if self.config_file is None:
            return demo_runtime(self.environ, read_only=self.read_only)
        return _user_runtime(self, self.config_file)


def _user_runtime(request: RuntimeRequest, config_file: Path) -> Runtime:
    from aiconsole.assembly import Runtime, build_monitor
    from aiconsole.config import settings_from_data
    from aiconsole.paths import chat_history_path, ledger_path
    from aiconsole.services.ledger import Ledger

    settings = settings_from_data(request.config_data, str(config_file))
    ledger = Ledger.open(ledger_path(request.environ))
    monitor = build_monitor(settings, ledger, request.environ, read_only=request.read_only)
    runtime = Runtime(
        settings, monitor, source=request.source, theme_dirs=request.theme_dirs, provider_environ=request.environ
    )
    runtime.chat_history_path = chat_history_path(request.environ)
    return runtime


def demo_runtime(
    environ: Mapping[str, str],
    *,
    read_only: bool = False,
    clock=None,
    fleet=None,
    transition_poll_seconds: float = 3.0,
) -> Runtime:
    """The demo fleet: loopback servers speaking the real APIs, and a ledger of its own.

    Each run gets a fresh ledger and chat history in a temporary folder under the demo
    data dir (the ledger seeded with some earlier runs so costs and budget bars have
    something to show); the operator's own ledger and chats are never opened. Tests pass
    a fixed `clock`, a `fleet` with short start/stop times and a short
    `transition_poll_seconds`.
    """
    import shutil
    import tempfile
    from datetime import datetime, timezone

    from aiconsole.assembly import Runtime, build_monitor, local_timezone
    from aiconsole.config import settings_from_toml_text
    from aiconsole.demo.fleet import DemoFleet
    from aiconsole.paths import CHAT_HISTORY_FILE_NAME, demo_data_dir
    from aiconsole.services.ledger import Ledger

    base = demo_data_dir(environ)
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    fleet = fleet or DemoFleet(folder)
    if clock is not None:  # the fakes date keep-alives and logins by the console's own clock
        fleet.telemetry.wall_clock = lambda: clock().timestamp()
    settings = settings_from_toml_text(fleet.config_text, DEMO_SOURCE)
    ledger = Ledger.open(folder / "ledger.sqlite3")
    now = clock() if clock is not None else datetime.now(timezone.utc)
    fleet.seed_ledger(ledger, now, local_timezone(settings.budget.timezone, environ))
    monitor = build_monitor(
        settings,
        ledger,
        fleet.environ,
        read_only=read_only,
        resources=(fleet,),
        clock=clock,
        transition_poll_seconds=transition_poll_seconds,
    )
    runtime = Runtime(
        settings, monitor, source=DEMO_SOURCE, chat_history_path=folder / CHAT_HISTORY_FILE_NAME,
        provider_environ=fleet.environ,
    )  # fmt: skip
    runtime.telemetry_options = {"client_keys": fleet.telemetry.client_keys, "clock": clock}
    runtime.cleanup.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    return runtime
