"""Where files live: overrides beat XDG beats platformdirs, and nothing reads the real home."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiconsole.paths import chat_history_path, config_path, data_dir, demo_data_dir, ledger_path

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="platformdirs ignores XDG on Windows")


def test_cli_value_beats_environment_variable(tmp_path: Path) -> None:
    environ = {"AICONSOLE_CONFIG": str(tmp_path / "env.toml"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert config_path(str(tmp_path / "cli.toml"), environ) == tmp_path / "cli.toml"


def test_environment_variable_beats_user_config_dir(tmp_path: Path) -> None:
    environ = {"AICONSOLE_CONFIG": str(tmp_path / "env.toml"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert config_path(None, environ) == tmp_path / "env.toml"


@posix_only
def test_empty_values_fall_through_to_xdg_config_home(tmp_path: Path) -> None:
    environ = {"AICONSOLE_CONFIG": "  ", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert config_path("", environ) == tmp_path / "xdg" / "aiconsole" / "config.toml"


def test_default_is_platformdirs_user_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # so the answer cannot be the real home
    expected = Path(platformdirs.user_config_dir("aiconsole", appauthor=False)) / "config.toml"
    assert config_path(None, {}) == expected


@posix_only
def test_relative_xdg_value_is_ignored_as_platformdirs_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import platformdirs

    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = Path(platformdirs.user_config_dir("aiconsole", appauthor=False)) / "config.toml"
    assert config_path(None, {"XDG_CONFIG_HOME": "relative/dir"}) == expected


def test_tilde_in_override_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path("~/fleet.toml", {}) == tmp_path / "fleet.toml"
    assert data_dir({"AICONSOLE_DATA_DIR": "~/state"}) == tmp_path / "state"


def test_data_dir_override_places_ledger_and_demo_inside(tmp_path: Path) -> None:
    environ = {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert data_dir(environ) == tmp_path / "data"
    assert ledger_path(environ) == tmp_path / "data" / "ledger.sqlite3"
    assert demo_data_dir(environ) == tmp_path / "data" / "demo"


def test_chat_history_lives_in_the_data_dir_beside_the_ledger(tmp_path: Path) -> None:
    environ = {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert chat_history_path(environ) == tmp_path / "data" / "chats.sqlite3"
    assert chat_history_path(environ) != ledger_path(environ)
    assert not (tmp_path / "data").exists()  # naming a path creates nothing


@posix_only
def test_chat_history_follows_xdg_data_home(tmp_path: Path) -> None:
    assert chat_history_path({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "aiconsole" / "chats.sqlite3"


def test_demo_ledger_is_apart_from_the_users(tmp_path: Path) -> None:
    environ = {"AICONSOLE_DATA_DIR": str(tmp_path)}
    assert ledger_path(environ).parent != demo_data_dir(environ)


@posix_only
def test_xdg_data_home_is_honoured(tmp_path: Path) -> None:
    assert data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "aiconsole"


def test_default_data_dir_is_platformdirs_user_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import platformdirs

    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir({}) == Path(platformdirs.user_data_dir("aiconsole", appauthor=False))


def test_path_functions_create_nothing(tmp_path: Path) -> None:
    environ = {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    config_path(None, environ), ledger_path(environ), demo_data_dir(environ)
    assert list(tmp_path.iterdir()) == []


def test_import_is_cheap_and_defers_platformdirs() -> None:
    script = "import sys, aiconsole.paths; print('platformdirs' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
