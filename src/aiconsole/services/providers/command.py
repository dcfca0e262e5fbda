"""The operator's own shell commands as a power provider (virsh, gcloud, wake-on-LAN, ...).

The status command's first non-empty line of output is the state word, matched without
regard to case, `-`/`_` or repeated spaces against `DEFAULT_STATES` plus the operator's
`states`. Commands run in their own process group so a timeout kills the whole pipeline,
and their output is decoded leniently so one bad byte cannot break a poll. Error messages
name which command failed but never echo the command line: it may carry a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping

from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.providers._http import Clock, Sleep, wait_for_power
from aiconsole.services.providers.base import ProviderError, ProviderErrorKind, ProviderStatus

# Words printed by virsh domstate, gcloud, aws, az, systemctl is-active and friends.
DEFAULT_STATES: Mapping[str, PowerState] = {
    **dict.fromkeys(("running", "on", "up", "active", "started", "vm running"), PowerState.RUNNING),
    **dict.fromkeys(
        ("shut off", "off", "stopped", "down", "inactive", "terminated", "deallocated", "vm deallocated"),
        PowerState.STOPPED,
    ),
    **dict.fromkeys(
        ("starting", "booting", "pending", "staging", "provisioning", "activating"), PowerState.STARTING
    ),
    **dict.fromkeys(("stopping", "shutting down", "deactivating", "deallocating"), PowerState.STOPPING),
    **dict.fromkeys(("crashed", "error", "failed"), PowerState.ERROR),
}


def normalize_word(word: str) -> str:
    return " ".join(word.lower().replace("-", " ").replace("_", " ").split())


def parse_states(states: Mapping[str, str]) -> dict[str, PowerState]:
    """Validate the operator's `word -> power state` table; a bad value raises ValueError."""
    parsed: dict[str, PowerState] = {}
    for word, state in states.items():
        try:
            parsed[normalize_word(word)] = PowerState(state.strip().lower())
        except ValueError:
            names = ", ".join(member.value for member in PowerState)
            raise ValueError(f"state {state!r} for status word {word!r} is not one of: {names}") from None
    return parsed


class CommandProvider:
    kind = "command"

    def __init__(
        self,
        status_cmd: str,
        start_cmd: str | None = None,
        stop_cmd: str | None = None,
        *,
        timeout: float = 60.0,
        states: Mapping[str, str] | None = None,
        poll_interval: float = 2.0,
        op_timeout: float = 600.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self._commands = {"status": status_cmd, "start": start_cmd, "stop": stop_cmd}
        self._timeout = timeout
        self._states = dict(DEFAULT_STATES) | parse_states(states or {})
        self._poll_interval = poll_interval
        self._op_timeout = op_timeout
        self._sleep, self._clock = sleep, clock
        self.can_power = bool(start_cmd or stop_cmd)

    def __repr__(self) -> str:  # the command lines may carry tokens: not shown
        return f"CommandProvider(can_power={self.can_power})"

    async def status(self) -> ProviderStatus:
        output = await self._run("status")
        line = next((line for line in output.splitlines() if line.strip()), "")
        word = sanitize_line(line, 80)
        if not word:
            raise ProviderError(ProviderErrorKind.MALFORMED, "The status command printed nothing")
        power = self._states.get(normalize_word(word), PowerState.UNKNOWN)
        return ProviderStatus(power=power, raw_state=word)

    async def start(self) -> None:
        await self._drive("start", PowerState.RUNNING)

    async def stop(self) -> None:
        await self._drive("stop", PowerState.STOPPED)

    async def aclose(self) -> None:
        pass

    async def _drive(self, action: str, target: PowerState) -> None:
        if not self._commands[action]:
            message = f"No {action} command is configured for this host"
            raise ProviderError(ProviderErrorKind.UNSUPPORTED, message)
        deadline = self._clock() + self._op_timeout
        if (await self.status()).power is target:
            return
        await self._run(action)
        await wait_for_power(
            self.status,
            {target},
            subject="The host",
            deadline=deadline,
            budget=self._op_timeout,
            clock=self._clock,
            sleep=self._sleep,
            interval=self._poll_interval,
        )

    async def _run(self, which: str) -> str:
        try:
            process = await asyncio.create_subprocess_shell(
                self._commands[which] or "",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills the pipeline
            )
        except OSError as exc:
            message = sanitize_line(f"The {which} command could not run: {exc}")
            raise ProviderError(ProviderErrorKind.FAILED, message) from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self._timeout)
        except BaseException as exc:  # timeout or cancellation: leave nothing running
            _kill_group(process)
            await process.wait()
            if isinstance(exc, asyncio.TimeoutError):
                message = f"The {which} command did not finish within {self._timeout:g} s"
                raise ProviderError(ProviderErrorKind.TIMEOUT, message) from None
            raise
        if process.returncode != 0:
            tail = _tail(stderr) or _tail(stdout)
            message = f"The {which} command exited with status {process.returncode}"
            raise ProviderError(ProviderErrorKind.FAILED, message + (f": {tail}" if tail else ""))
        return stdout.decode("utf-8", errors="replace")


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(output: bytes, lines: int = 3) -> str:
    text = output.decode("utf-8", errors="replace")
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return sanitize_line(" / ".join(kept), 300)
