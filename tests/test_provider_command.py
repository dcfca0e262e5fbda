"""CommandProvider with real shell commands."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest
from providers_conftest import FakeClock, has_no_control_chars

from aiconsole.domain.power import PowerState
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, VmProvider
from aiconsole.services.providers.command import CommandProvider


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def provider_for(status_cmd: str, clock: FakeClock, **options) -> CommandProvider:
    return CommandProvider(status_cmd, sleep=clock.sleep, clock=clock, **options)


async def expect_error(awaitable, kind: ProviderErrorKind) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    assert caught.value.kind is kind, caught.value.message
    assert has_no_control_chars(caught.value.message)
    return caught.value


@pytest.fixture
def vm(tmp_path: Path) -> dict[str, str]:
    """A pretend VM: a state file, and scripts that move it along one step per status read."""
    state = tmp_path / "state"
    state.write_text("shut off\n")
    status = tmp_path / "status.sh"
    status.write_text(
        "#!/bin/sh\n"
        f"state=$(cat {shlex.quote(str(state))})\n"
        'echo "$state"\n'
        f'echo "$state" >> {shlex.quote(str(tmp_path / "history"))}\n'
        'case "$state" in\n'
        f"  starting) echo running > {shlex.quote(str(state))} ;;\n"
        f'  "shutting down") echo "shut off" > {shlex.quote(str(state))} ;;\n'
        "esac\n"
    )
    status.chmod(0o755)
    return {
        "state": str(state),
        "history": str(tmp_path / "history"),
        "status": str(status),
        "start": f"echo starting > {shlex.quote(str(state))}; touch {shlex.quote(str(tmp_path / 'started'))}",
        "stop": f"echo 'shutting down' > {shlex.quote(str(state))}",
    }


async def test_is_a_vm_provider(clock):
    provider = provider_for("printf 'running\\n'", clock, start_cmd="true")
    assert isinstance(provider, VmProvider)
    assert provider.kind == "command" and provider.can_power
    assert not provider_for("true", clock).can_power


@pytest.mark.parametrize(
    ("output", "power"),
    [
        ("Running", PowerState.RUNNING),
        ("RUNNING", PowerState.RUNNING),
        ("shut off", PowerState.STOPPED),
        ("Shut-Off", PowerState.STOPPED),
        ("TERMINATED", PowerState.STOPPED),
        ("inactive", PowerState.STOPPED),
        ("booting", PowerState.STARTING),
        ("STAGING", PowerState.STARTING),
        ("shutting down", PowerState.STOPPING),
        ("shutting-down", PowerState.STOPPING),
        ("crashed", PowerState.ERROR),
        ("not running", PowerState.UNKNOWN),
        ("blocked", PowerState.UNKNOWN),
    ],
)
async def test_default_vocabulary(clock, output, power):
    status = await provider_for(f"printf '%s\\n' {shlex.quote(output)}", clock).status()
    assert status.power is power
    assert status.raw_state == output


async def test_first_non_empty_line_counts(clock):
    status = await provider_for("printf '\\n  \\n  active  \\nextra\\n'", clock).status()
    assert (status.power, status.raw_state) == (PowerState.RUNNING, "active")


async def test_user_states_extend_and_override(clock):
    states = {"Asleep": "stopped", "running": "starting"}
    assert (await provider_for("echo asleep", clock, states=states).status()).power is PowerState.STOPPED
    assert (await provider_for("echo running", clock, states=states).status()).power is PowerState.STARTING


def test_bad_user_state_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"'napping'.*'asleep'"):
        CommandProvider("true", states={"asleep": "napping"})


async def test_bad_bytes_are_decoded_leniently(clock):
    status = await provider_for("printf 'running\\n\\377\\376'", clock).status()
    assert status.power is PowerState.RUNNING
    odd = await provider_for("printf 'runn\\377ing\\n'", clock).status()
    assert odd.power is PowerState.UNKNOWN and "\ufffd" in odd.raw_state


async def test_escape_sequences_in_output_are_removed(clock):
    status = await provider_for("printf '\\033]0;pwn\\007\\033[31mrunning\\033[0m\\n'", clock).status()
    assert (status.power, status.raw_state) == (PowerState.RUNNING, "running")


async def test_no_output_is_malformed(clock):
    await expect_error(provider_for("true", clock).status(), ProviderErrorKind.MALFORMED)


async def test_non_zero_exit_is_failed_with_sanitised_stderr_tail(clock):
    command = "printf 'one\\ntwo\\nthree\\n\\033[2Jfour: permission denied\\n' >&2; exit 3"
    error = await expect_error(provider_for(command, clock).status(), ProviderErrorKind.FAILED)
    assert error.message == "The status command exited with status 3: two / three / four: permission denied"


async def test_command_line_never_appears_in_errors(clock):
    error = await expect_error(provider_for("TOKEN=hunter2 false", clock).status(), ProviderErrorKind.FAILED)
    assert "hunter2" not in error.message and "hunter2" not in repr(provider_for("TOKEN=hunter2 true", clock))


async def test_slow_command_is_killed_on_timeout(tmp_path, clock):
    child_pid = tmp_path / "child.pid"
    command = f"sleep 30 & echo $! > {shlex.quote(str(child_pid))}; wait"
    started = time.monotonic()
    error = await expect_error(provider_for(command, clock, timeout=0.3).status(), ProviderErrorKind.TIMEOUT)
    assert time.monotonic() - started < 5
    assert "0.3 s" in error.message
    pid = int(child_pid.read_text())
    assert not _alive(pid), "the whole process group is killed, children included"


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


async def test_start_and_stop_run_commands_and_poll_through_transitions(vm, clock):
    provider = provider_for(vm["status"], clock, start_cmd=vm["start"], stop_cmd=vm["stop"])
    await provider.start()
    assert (await provider.status()).power is PowerState.RUNNING
    await provider.stop()
    assert (await provider.status()).power is PowerState.STOPPED
    history = Path(vm["history"]).read_text().splitlines()
    assert history == [
        "shut off",
        "starting",
        "running",
        "running",  # start, then the check above
        "running",
        "shutting down",
        "shut off",
        "shut off",  # stop, then the check above
    ]


async def test_start_of_running_host_does_not_run_the_command(vm, clock):
    Path(vm["state"]).write_text("running\n")
    await provider_for(vm["status"], clock, start_cmd=vm["start"]).start()
    assert not (Path(vm["state"]).parent / "started").exists()


async def test_missing_start_or_stop_command_is_unsupported(vm, clock):
    provider = provider_for(vm["status"], clock, stop_cmd=vm["stop"])
    error = await expect_error(provider.start(), ProviderErrorKind.UNSUPPORTED)
    assert "start" in error.message
    await expect_error(provider_for(vm["status"], clock).stop(), ProviderErrorKind.UNSUPPORTED)


async def test_failing_start_command_is_failed(vm, clock):
    provider = provider_for(vm["status"], clock, start_cmd="echo 'no such domain' >&2; exit 1")
    error = await expect_error(provider.start(), ProviderErrorKind.FAILED)
    assert error.message == "The start command exited with status 1: no such domain"


async def test_host_that_never_comes_up_times_out(clock):
    provider = provider_for("echo booting", clock, start_cmd="true", op_timeout=30, poll_interval=5)
    error = await expect_error(provider.start(), ProviderErrorKind.TIMEOUT)
    assert "booting" in error.message and "30 s" in error.message
