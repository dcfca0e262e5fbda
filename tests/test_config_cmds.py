"""`aiconsole init` and `aiconsole config check`, driven through their run_* functions."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from aiconsole.config import STARTER_CONFIG, load_settings
from aiconsole.config_cmds import run_config_check, run_init

ALL_SECRETS = {"TENSORDOCK_API_KEY": "td-secret-value"}


def run(func, *args, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = func(*args, out, err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_init_writes_a_valid_private_starter(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.toml"
    code, out, err = run(run_init, path)
    assert code == 0 and err == ""
    assert str(path) in out and "config check" in out
    assert path.read_text(encoding="utf-8") == STARTER_CONFIG
    assert len(load_settings(path).vm) == 3
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", ["[budget]\ndaily_usd = 1.0\n", "this is = = not toml\n", ""])
def test_init_refuses_to_overwrite_any_existing_file(tmp_path: Path, existing: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(existing)
    before = path.stat().st_mtime_ns
    code, out, err = run(run_init, path)
    assert code == 1 and out == ""
    assert str(path) in err and "already exists" in err and "unchanged" in err
    assert path.read_text() == existing and path.stat().st_mtime_ns == before


def test_init_reports_a_path_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run(run_init, blocker / "config.toml")
    assert code == 1 and out == "" and "cannot write" in err


def test_check_valid_config_prints_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    run(run_init, path)
    code, out, err = run(run_config_check, path, environ=ALL_SECRETS)
    assert code == 0 and err == ""
    assert out.startswith("ok: 3 VMs, budget $5.00/day $50.00/month")


def test_check_warns_once_per_unset_variable_but_passes(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    run(run_init, path)
    code, out, err = run(run_config_check, path, environ={})
    assert code == 0 and out.startswith("ok: 3 VMs")
    assert err.count("warning:") == 1 and "TENSORDOCK_API_KEY is not set" in err
    assert "vm[0] (inference)" in err and "vm[1] (training)" in err


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_check_warns_about_a_secret_file_others_can_read(tmp_path: Path) -> None:
    key = tmp_path / "td.key"
    key.write_text("td-secret-value\n")
    key.chmod(0o644)
    path = tmp_path / "config.toml"
    run(run_init, path)
    code, _, err = run(run_config_check, path, environ={"TENSORDOCK_API_KEY_FILE": str(key)})
    assert code == 0 and "chmod 600" in err and "td-secret-value" not in err


def test_check_singular_summary(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[budget]\ndaily_usd = 2\nmonthly_usd = 20.5\n[[vm]]\nname = "b"\nprovider = "static"\n')
    code, out, _ = run(run_config_check, path, environ={})
    assert code == 0 and out.startswith("ok: 1 VM, budget $2.00/day $20.50/month")


def test_check_invalid_config_exits_2_naming_file_field_and_value(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[vm]]\nname = "gpu"\nprovider = "static"\nhourly_usd = -3\n')
    code, out, err = run(run_config_check, path, environ={})
    assert code == 2 and out == ""
    assert str(path) in err and "vm[0] (gpu).hourly_usd = -3" in err


def test_check_missing_file_exits_2_and_suggests_init(tmp_path: Path) -> None:
    code, out, err = run(run_config_check, tmp_path / "absent.toml", environ={})
    assert code == 2 and out == "" and "aiconsole init" in err


def test_check_syntax_error_exits_2_with_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[budget]\ndaily_usd = \n")
    code, _, err = run(run_config_check, path, environ={})
    assert code == 2 and "line 2" in err
