"""The stop guard: a VM with a RUNNING MLflow run is not stopped on a single "yes".

CLI: `vm stop NAME --yes` refuses, naming the run; `--force` stops; on a terminal, a second
answer that types the VM's name does. TUI: `x` asks twice, naming the run the second time.
Both against loopback peers: a TensorDock fake for the power, the demo's FakeMlflow for runs.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tests.test_cli import INSTANCE, KEY, KEY_ENV, cli, power_requests, tensordock_config, write_config
from tests.threaded import ThreadedFake

from aiconsole.demo.mlflow_api import FakeMlflow
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.power import PowerState
from ui_helpers import fast_fleet, screen_text, telemetry_app, telemetry_live, wait_until


@pytest.fixture
def tensordock():
    with ThreadedFake(FakeTensorDock(KEY, start_seconds=0.3, stop_seconds=0.3)) as fake:
        yield fake


@pytest.fixture
def mlflow():
    with ThreadedFake(FakeMlflow(step_every_s=2.0, running_for_s=600.0)) as fake:
        yield fake


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AICONSOLE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), KEY_ENV: KEY}


@pytest.fixture
def gpu_config(tensordock, mlflow, tmp_path) -> Path:
    """A running TensorDock VM `gpu` whose mlflow service has lora-r16 RUNNING."""
    tensordock.add_instance(INSTANCE, "gpu", "Running")
    text = tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV))
    text += f'\n[[vm.service]]\nname = "mlflow"\nkind = "mlflow"\nurl = "{mlflow.url}"\n'
    return write_config(tmp_path, text)


def test_yes_alone_refuses_naming_the_run_and_stops_nothing(capsys, env, tensordock, gpu_config) -> None:
    code, _, err = cli(capsys, "vm", "stop", "gpu", "--yes", "--config", str(gpu_config), environ=env)
    assert code == 1
    assert "MLflow run lora-r16 is RUNNING on gpu (mlflow; last metric" in err
    assert "add --force to stop it anyway (--yes is not enough)" in err
    assert power_requests(tensordock) == []


def test_force_stops_it_and_says_so(capsys, env, tensordock, gpu_config) -> None:
    code, out, err = cli(capsys, "vm", "stop", "gpu", "--force", "--config", str(gpu_config), environ=env)
    assert code == 0, err
    assert "MLflow run lora-r16 is RUNNING" in err and "Stopping gpu anyway (--force)." in err
    assert out.endswith("gpu is stopped.\n")
    assert ("POST", f"/api/v2/instances/{INSTANCE}/stop") in power_requests(tensordock)


def test_a_finished_run_needs_no_force(capsys, env, tensordock, mlflow, gpu_config) -> None:
    mlflow.finish_running()
    code, _, err = cli(capsys, "vm", "stop", "gpu", "--yes", "--config", str(gpu_config), environ=env)
    assert code == 0, err
    assert "MLflow" not in err and ("POST", f"/api/v2/instances/{INSTANCE}/stop") in power_requests(tensordock)


def test_an_unreachable_mlflow_counts_as_a_run_going(capsys, env, tensordock, tmp_path) -> None:
    from providers_conftest import unused_loopback_url

    tensordock.add_instance(INSTANCE, "gpu", "Running")
    text = tensordock_config(tensordock, ("gpu", INSTANCE, KEY_ENV))
    text += f'\n[[vm.service]]\nname = "mlflow"\nkind = "mlflow"\nurl = "{unused_loopback_url()}"\n'
    code, _, err = cli(capsys, "vm", "stop", "gpu", "--yes", "--config", str(write_config(tmp_path, text)), environ=env)
    assert code == 1 and "MLflow on gpu/mlflow could not be checked" in err and "--force" in err
    assert power_requests(tensordock) == []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("answers", "stopped"),
    [(["y", "gpu"], True), (["y", "gpu-typo"], False), (["n"], False)],
    ids=["both answers", "name mistyped", "first no"],
)
def test_on_a_terminal_a_second_answer_typing_the_name_is_needed(
    monkeypatch, env, tensordock, gpu_config, answers, stopped
) -> None:
    """Without --yes or --force: the guard's two questions (they replace the usual one)."""
    from aiconsole.commands import PowerRequest, power_command
    from aiconsole.runtime import RuntimeRequest

    asked: list[str] = []
    replies = iter(answers)
    monkeypatch.setattr("sys.stdin", Terminal())
    runtime = RuntimeRequest.for_user(gpu_config, env).load()
    out, err = io.StringIO(), io.StringIO()
    try:
        code = power_command(
            runtime, PowerRequest("gpu", "stop"), out=out, err=err, environ=env,
            ask=lambda question: asked.append(question) or next(replies),
        )  # fmt: skip
    finally:
        runtime.finish()
    err = err.getvalue()
    stop = ("POST", f"/api/v2/instances/{INSTANCE}/stop")
    assert (stop in power_requests(tensordock)) is stopped
    assert code == (0 if stopped else 1), err
    assert "MLflow run lora-r16 is RUNNING" in err
    assert asked[0] == "Stop gpu anyway and end what runs there? [y/N] "
    assert len(asked) == len(answers)
    if len(asked) == 2:
        assert asked[1].startswith("Type the VM's name to confirm")


# --- the TUI -------------------------------------------------------------------------------


async def _training_running(pilot, app) -> None:
    await telemetry_live(pilot)
    await app.runtime.monitor.start_vm("training")
    await wait_until(pilot, lambda: app.training is not None, what="the MLflow watch")
    app.training.refresh_soon()
    await wait_until(
        pilot, lambda: any(s.running for s in app.training.snapshot().servers), timeout=20, what="lora-r16 RUNNING"
    )


def _power(app, name: str) -> PowerState:
    return next(vm.power for vm in app.runtime.monitor.snapshot().vms if vm.name == name)


async def _press_stop(pilot, app) -> None:
    app.query_one("#vm-training").focus()
    await pilot.press("x")


async def test_the_tui_asks_twice_naming_the_run_and_a_no_keeps_it_running(tmp_path) -> None:
    fleet = fast_fleet()
    app = telemetry_app(tmp_path, fleet=fleet)
    async with app.run_test(size=(100, 40)) as pilot:
        await _training_running(pilot, app)
        training = next(vm for vm in app.runtime.monitor.snapshot().vms if vm.name == "training")
        assert training.idle.last_activity == "mlflow: MLflow run lora-r16 RUNNING"  # the idle timer heard it
        await _press_stop(pilot, app)
        await wait_until(pilot, lambda: "Training is still going on it" in screen_text(app), what="the first question")
        text = screen_text(app)
        assert "Stop training? Training is still going on it" in text
        assert "MLflow run lora-r16 is RUNNING on training" in text
        await pilot.press("y")
        await wait_until(pilot, lambda: "Really stop training" in screen_text(app), what="the second question")
        assert "Really stop training and end the run lora-r16?" in screen_text(app)
        await pilot.press("n")
        await pilot.pause(0.5)
        assert _power(app, "training") is PowerState.RUNNING

        await _press_stop(pilot, app)
        await wait_until(pilot, lambda: "Training is still going on it" in screen_text(app), what="asked again")
        await pilot.press("y")
        await wait_until(pilot, lambda: "Really stop training" in screen_text(app), what="the second question")
        await pilot.press("y")
        await wait_until(pilot, lambda: _power(app, "training") is PowerState.STOPPED, timeout=15, what="stopped")
        forced = app.runtime.monitor.ledger.events(vm="training")[0]
        assert forced.kind == "forced-stop" and forced.actor == "operator" and forced.hourly_usd == 0.35
        assert forced.reason.startswith("stopped from the console, confirmed twice over: MLflow run lora-r16 is RUNNING")


async def test_the_tui_asks_once_when_no_run_is_going(tmp_path) -> None:
    fleet = fast_fleet()
    app = telemetry_app(tmp_path, fleet=fleet)
    async with app.run_test(size=(100, 40)) as pilot:
        await _training_running(pilot, app)
        mlflow = next(s.fake for s in fleet.telemetry.services if s.kind == "mlflow")
        mlflow.finish_running()
        await _press_stop(pilot, app)
        await wait_until(pilot, lambda: "Stop training?" in screen_text(app), what="the question")
        assert "still going" not in screen_text(app)
        await pilot.press("y")
        await wait_until(pilot, lambda: _power(app, "training") is PowerState.STOPPED, timeout=15, what="stopped")


async def test_the_monitor_refuses_an_unforced_stop_while_the_guard_finds_a_run(tmp_path) -> None:
    """The core rule, below any front end: `stop_vm` without `force` raises StopGuarded."""
    from aiconsole.services.fleet import StopGuarded

    app = telemetry_app(tmp_path, fleet=fast_fleet())
    async with app.run_test(size=(100, 40)) as pilot:
        await _training_running(pilot, app)
        with pytest.raises(StopGuarded) as caught:
            await app.runtime.monitor.stop_vm("training")
        assert caught.value.check.run_names == ["lora-r16"]
        assert "not stopping training: MLflow run lora-r16 is RUNNING" in str(caught.value)
        assert _power(app, "training") is PowerState.RUNNING
