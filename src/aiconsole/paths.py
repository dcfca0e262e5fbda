"""Where aiconsole keeps its files: the config, the spending ledger, the chat history, the demo's data.

Every function takes the environment as an argument so tests and the demo can point
everything at a temporary folder without touching the real home. Overrides, strongest first:

- config: ``--config PATH``, then ``AICONSOLE_CONFIG``, then ``<user config dir>/config.toml``;
- data: ``AICONSOLE_DATA_DIR``, then ``<user data dir>``.

The user dirs follow platformdirs (appname ``aiconsole``): ``$XDG_CONFIG_HOME`` and
``$XDG_DATA_HOME`` win on Linux and macOS when they hold an absolute path, as platformdirs
does; otherwise ``~/.config/aiconsole``, ``~/Library/Application Support/aiconsole``,
``%LOCALAPPDATA%\\aiconsole`` and so on. platformdirs is imported only when that fallback is used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "aiconsole"
CONFIG_ENV = "AICONSOLE_CONFIG"
DATA_DIR_ENV = "AICONSOLE_DATA_DIR"
CONFIG_FILE_NAME = "config.toml"
LEDGER_FILE_NAME = "ledger.sqlite3"
CHAT_HISTORY_FILE_NAME = "chats.sqlite3"


def config_path(cli_value: str | None, environ: Mapping[str, str]) -> Path:
    """The config file to read: ``--config`` beats ``AICONSOLE_CONFIG`` beats the user config dir."""
    if cli_value:
        return _user_path(cli_value)
    if from_env := environ.get(CONFIG_ENV, "").strip():
        return _user_path(from_env)
    return _user_config_dir(environ) / CONFIG_FILE_NAME


def data_dir(environ: Mapping[str, str]) -> Path:
    """The folder for the ledger and other state; ``AICONSOLE_DATA_DIR`` overrides it.

    Nothing is created here: the code that writes a file creates its folder.
    """
    if from_env := environ.get(DATA_DIR_ENV, "").strip():
        return _user_path(from_env)
    xdg = _xdg_home(environ, "XDG_DATA_HOME")
    if xdg is not None:
        return xdg / APP_NAME
    import platformdirs  # deferred: only this fallback needs it

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def ledger_path(environ: Mapping[str, str]) -> Path:
    """The SQLite ledger of VM runs and spending."""
    return data_dir(environ) / LEDGER_FILE_NAME


def chat_history_path(environ: Mapping[str, str]) -> Path:
    """The SQLite chat history (private: created 0600 by services/chat_history.py)."""
    return data_dir(environ) / CHAT_HISTORY_FILE_NAME


def demo_data_dir(environ: Mapping[str, str]) -> Path:
    """The demo's own folder, so a demo run never writes into the operator's ledger."""
    return data_dir(environ) / "demo"


def _user_config_dir(environ: Mapping[str, str]) -> Path:
    xdg = _xdg_home(environ, "XDG_CONFIG_HOME")
    if xdg is not None:
        return xdg / APP_NAME
    import platformdirs  # deferred: only this fallback needs it

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def _xdg_home(environ: Mapping[str, str], name: str) -> Path | None:
    # platformdirs honours XDG on Linux and macOS, not on Windows, and ignores
    # relative values as the XDG spec asks; we read the given environ the same way.
    if sys.platform == "win32":
        return None
    value = environ.get(name, "")
    return Path(value) if value.startswith("/") else None


def _user_path(value: str) -> Path:
    # `~` reaches us unexpanded from config files, quoted shell words and env files.
    return Path(os.path.expanduser(value)) if value.startswith("~") else Path(value)
