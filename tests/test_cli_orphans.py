"""`aiconsole orphans [--json]` end to end: `main()` in-process against the demo fleet's
loopback TensorDock and Proxmox, or a `FakeTensorDock` served from a thread that a config
of our own points at; once as `python -m aiconsole` in a subprocess."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.test_cli import CONTROL, HOSTILE_NAME, HOSTILE_NAME_SHOWN, aiconsole, cli, subprocess_env, write_config
from tests.test_layering import fresh_interpreter
from tests.threaded import ThreadedFake

from aiconsole.demo.fleet import INFERENCE_ID, ORPHAN_ID, TRAINING_ID
from aiconsole.demo.tensordock_api import FakeTensorDock

KEY = "td-cli-orphans-0123456789abcdef"
KEY_ENV = "ORPHANS_TD_KEY"
KNOWN, FORGOTTEN = "3c2b1a09-known", "5a0c1f2e-forgotten-4090"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}


@pytest.fixture
def tensordock() -> Iterator[FakeTensorDock]:
    with ThreadedFake(FakeTensorDock(KEY)) as fake:
        fake.add_instance(KNOWN, "gpu", "Running")
        yield fake


def config(*vms: tuple[str, str, FakeTensorDock]) -> str:
    """One TensorDock VM per (name, instance id, fake), all on $KEY_ENV, and an always-on host."""
    blocks = [
        f'[[vm]]\nname = "{name}"\nprovider = "tensordock"\nhourly_usd = 0.35\n'
        f'[vm.tensordock]\ninstance_id = "{instance}"\napi_key_env = "{KEY_ENV}"\napi_url = "{fake.url}"\n'
        for name, instance, fake in vms
    ]
    return "\n".join([*blocks, '[[vm]]\nname = "brain"\nprovider = "static"\n'])


def run(capsys, tmp_path: Path, env: dict[str, str], fake: FakeTensorDock | None, *argv: str):
    path = write_config(tmp_path, config(("gpu", KNOWN, fake)) if fake else config())
    return cli(capsys, "orphans", *argv, "--config", str(path), environ=env)


# --- the demo fleet --------------------------------------------------------------------------------


def test_the_demo_fleet_has_one_orphan_and_exits_1(capsys, env) -> None:
    code, out, err = cli(capsys, "orphans", "--demo", environ=env)
    assert code == 1, err
    assert err == ""
    assert out.splitlines() == [
        "orphan: TensorDock instance sdxl-test (5a0c1f2e…) running, $0.35/h — not in the config",
        "1 instance running that the config does not know: $0.35/h",
    ]


def test_the_demo_fleet_as_json(capsys, env) -> None:
    code, out, err = cli(capsys, "--demo", "orphans", "--json", environ=env)
    assert code == 1, err
    report = json.loads(out)
    assert report["running_hourly_usd"] == 0.35
    assert [(a["provider"], a["vms"], a["listed"], a["error"]) for a in report["accounts"]] == [
        ("tensordock", ["inference", "training"], 3, None),
        ("proxmox", ["homelab"], 1, None),
    ]
    (orphan,) = report["orphans"]
    assert orphan | {"endpoint": None} == {
        "provider": "tensordock", "endpoint": None, "instance_id": ORPHAN_ID, "name": "sdxl-test",
        "power": "running", "raw_state": "Running", "running": True, "hourly_usd": 0.35, "host": "eu-west-1",
        "guest": None, "text": "orphan: TensorDock instance sdxl-test (5a0c1f2e…) running, $0.35/h — not in the config",
    }  # fmt: skip
    assert {INFERENCE_ID, TRAINING_ID}.isdisjoint(out)  # the VMs it knows are not orphans


def test_options_before_the_command_work_in_a_subprocess(tmp_path: Path) -> None:
    done = aiconsole("--demo", "orphans", env=subprocess_env(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "orphan: TensorDock instance sdxl-test" in done.stdout and "$0.35/h" in done.stdout


# --- a config of our own ---------------------------------------------------------------------------


def test_nothing_unknown_exits_0(capsys, tmp_path, env, tensordock) -> None:
    code, out, err = run(capsys, tmp_path, env | {KEY_ENV: KEY}, tensordock)
    assert (code, out, err) == (0, "no orphans running (1 of 1 account listed)\n", "")
    assert tensordock.requests == [("GET", "/api/v2/instances")]


def test_an_unknown_stopped_instance_is_listed_but_exits_0(capsys, tmp_path, env, tensordock) -> None:
    tensordock.add_instance(FORGOTTEN, "old-box", "StoppedDisassociated")
    code, out, err = run(capsys, tmp_path, env | {KEY_ENV: KEY}, tensordock)
    assert code == 0, err
    assert out.splitlines() == [
        "not in the config: TensorDock instance old-box (5a0c1f2e…) stopped — no compute billed while stopped",
        "no orphans running (1 of 1 account listed)",
    ]


def test_an_unknown_running_instance_exits_1(capsys, tmp_path, env, tensordock) -> None:
    tensordock.add_instance(FORGOTTEN, "sdxl-test", "Running", rate_hourly=0.42)
    code, out, err = run(capsys, tmp_path, env | {KEY_ENV: KEY}, tensordock, "--json")
    assert code == 1, err
    (orphan,) = json.loads(out)["orphans"]
    assert (orphan["instance_id"], orphan["running"], orphan["hourly_usd"]) == (FORGOTTEN, True, 0.42)


def test_a_wrong_key_exits_2_naming_the_account_not_the_key(capsys, tmp_path, env, tensordock) -> None:
    wrong = "td-wrong-orphans-9876543210"
    outputs = []
    for extra in ((), ("--json",)):
        code, out, err = run(capsys, tmp_path, env | {KEY_ENV: wrong}, tensordock, *extra)
        assert code == 2, err
        assert f"aiconsole: could not list TensorDock key ${KEY_ENV} at {tensordock.url} (VMs gpu): " in err
        assert "TensorDock rejected the API key (HTTP 401)" in err
        outputs += [out, err]
    report = json.loads(outputs[2])
    assert report["accounts"][0]["listed"] is None and "HTTP 401" in report["accounts"][0]["error"]
    assert "no account could be listed" in outputs[0]
    everything = "\n".join(outputs)
    assert wrong not in everything and KEY not in everything


def test_a_missing_secret_exits_2_naming_the_variable(capsys, tmp_path, env, tensordock) -> None:
    code, out, err = run(capsys, tmp_path, env, tensordock)
    assert code == 2
    assert out == "no account could be listed: whether anything the config does not know runs is unknown\n"
    assert KEY_ENV in err and tensordock.requests == []


def test_a_server_error_exits_2_but_a_running_orphan_elsewhere_still_exits_1(capsys, tmp_path, env) -> None:
    with ThreadedFake(FakeTensorDock(KEY)) as first, ThreadedFake(FakeTensorDock(KEY)) as second:
        first.add_instance(KNOWN, "gpu", "Running")
        second.add_instance(FORGOTTEN, "sdxl-test", "Running")
        first.faults.fail_next(503)
        code, out, err = run(capsys, tmp_path, env | {KEY_ENV: KEY}, first)
        assert code == 2 and "server error (HTTP 503)" in err

        first.faults.fail_next(503)
        path = write_config(tmp_path, config(("gpu", KNOWN, first), ("gpu2", "another-id", second)), "two.toml")
        code, out, err = cli(capsys, "orphans", "--config", str(path), environ=env | {KEY_ENV: KEY})
        assert code == 1 and "server error (HTTP 503)" in err
        assert "orphan: TensorDock instance sdxl-test" in out


def test_hostile_provider_text_reaches_no_terminal(capsys, tmp_path, env, tensordock) -> None:
    tensordock.add_instance(FORGOTTEN, HOSTILE_NAME, "\x1b[31mRunning\x07")
    code, out, err = run(capsys, tmp_path, env | {KEY_ENV: KEY}, tensordock)
    assert code == 1, err
    assert f"TensorDock instance {HOSTILE_NAME_SHOWN} (5a0c1f2e…) running" in out
    assert not CONTROL.search(out + err), repr(out + err)


def test_a_config_with_nothing_to_list_exits_0(capsys, tmp_path, env, tensordock) -> None:
    code, out, err = run(capsys, tmp_path, env, None)
    assert (code, out, err) == (0, "nothing to reconcile: no TensorDock or Proxmox VM in the config\n", "")


def test_the_command_imports_no_textual() -> None:
    script = (
        "import sys, aiconsole.commands_orphans, aiconsole.services.orphans\n"
        "print(sorted(m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'aiconsole.ui'))))\n"
    )
    assert fresh_interpreter(script) == "[]"
