"""`ActivityProbe`: operator SSH sessions and Ollama keep-alives, read off every running VM.

    probe = ActivityProbe(settings, pool, endpoints, report, interval_s=20.0)
    await probe.run(monitor.powers)     # until cancelled; never raises
    await probe.aclose()

Every `interval_s`, for each VM whose power is RUNNING: `who` over the VM's SSH connection
(VMs with an `ssh` target), and `GET /api/ps` of each of its `ollama` services, reached
where `Endpoints` says (an SSH forward for `via_ssh`, asked anew each time: a reconnect may
move its port). What was found goes to `report(vm, kind, detail, *, until, unknown=False)`:

- `ssh`: while sessions are open, "2 SSH sessions (alice, bob)" with `until = now + lease`
  (lease = `LEASE_INTERVALS` probe intervals: a probe that stops renewing lets it lapse);
  no session: no report.
- `ollama`: a model whose keep-alive has not run out, until the latest `expires_at` of
  the VM's servers (pinned models do not count: `domain/activity_sources.py` says why);
  none: no report.
- A source that cannot be read (SSH down, `who` failing, Ollama not answering) is
  reported `unknown=True`, "SSH sessions unknown: …" / "Ollama unreachable: …", with
  `until = now + lease` (or a later keep-alive another server of the VM still showed):
  unknown never counts as idle.

The console's own SSH work is not a session here: it runs on exec channels without a pty,
which make no utmp entry, so `who` does not list it (`parse_who` also skips the logind
lines such channels make on some systems). A stopped VM is not asked.

Cost with 100 VMs at one round every 20 s: five `who` commands and five HTTP requests a
second, on the connections and clients already open. Each VM's probe is its own task with
its own deadline (`timeout_s`, counted from when the round starts it, waiting for a slot
included), at most `concurrency` at once; a round never waits for a slow VM, and a VM
whose previous probe is still going is not asked again until it ends.

Import after the first frame: reading Ollama imports the `ollama` client (on first use).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from aiconsole.domain.activity_sources import keepalive_detail, keepalive_until, parse_who, sessions_detail
from aiconsole.domain.idle import ActivityKind
from aiconsole.domain.models import LoadedModel
from aiconsole.domain.power import PowerState
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.clock import utc_now
from aiconsole.services.ssh_errors import SshError
from aiconsole.services.tasks import cancel_until_done

if TYPE_CHECKING:
    from aiconsole.services.endpoints import Endpoints
    from aiconsole.services.ollama_models import OllamaModels
    from aiconsole.services.ssh import SshPool
    from aiconsole.services.ssh_target import SshTarget

__all__ = ["LEASE_INTERVALS", "WHO_COMMAND", "ActivityProbe", "Report"]

log = logging.getLogger(__name__)

Report = Callable[..., None]
"""`report(vm, kind, detail, *, until: datetime | None, unknown: bool = False)`."""

LEASE_INTERVALS = 3
"""A report holds for this many probe intervals: one late or lost probe does not let it lapse."""
WHO_COMMAND = "who"
_REASON_CHARS = 80
_DOWN = ("down", "refused")
_BACKSTOP_S = 2.0


@dataclass(frozen=True)
class _Vm:
    name: str
    ssh: SshTarget | None
    ollama: tuple[str, ...]
    """Its `ollama` services' names."""


class ActivityProbe:
    """See the module's docstring."""

    def __init__(
        self,
        settings,
        pool: SshPool,
        endpoints: Endpoints,
        report: Report,
        *,
        interval_s: float = 20.0,
        clock: Callable[[], datetime] = utc_now,
        timeout_s: float | None = None,
        concurrency: int = 32,
        tz: tzinfo | None = None,
    ) -> None:
        """`timeout_s` (default: 10 s, at most `interval_s`) bounds each VM's probe; `tz` is
        the zone the keep-alive's clock time is written in (None: UTC, said so)."""
        self._vms = tuple(
            _Vm(vm.name, vm.ssh, tuple(s.name for s in vm.service if s.kind == "ollama")) for vm in settings.vm
        )
        self._pool = pool
        self._endpoints = endpoints
        self._report = report
        self.interval_s = interval_s
        self.timeout_s = timeout_s if timeout_s is not None else min(10.0, interval_s)
        self._clock = clock
        self._tz = tz
        self._slots = asyncio.Semaphore(concurrency)
        self._probing: dict[str, asyncio.Task[None]] = {}
        self._clients: dict[tuple[str, str], OllamaModels] = {}

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=LEASE_INTERVALS * self.interval_s)

    # --- rounds ----------------------------------------------------------------------------

    async def run(self, powers: Callable[[], Mapping[str, PowerState]]) -> None:
        """A round every `interval_s` until cancelled; never raises (but the cancel)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                try:
                    self._start(powers())
                except Exception:  # a bug (in `powers` too) must not end the probing for good
                    log.exception("activity probe round failed")
                await asyncio.sleep(max(0.0, started + self.interval_s - loop.time()))
        finally:
            for task in self._probing.values():
                task.cancel()

    async def probe_once(self, powers: Mapping[str, PowerState]) -> None:
        """One round, returning when every running VM's probe has ended (a probe still going
        from an earlier round is waited for, not started again); never raises."""
        tasks = self._start(powers)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, powers: Mapping[str, PowerState]) -> list[asyncio.Task[None]]:
        tasks = []
        for vm in self._vms:
            if powers.get(vm.name) is not PowerState.RUNNING:
                if (going := self._probing.get(vm.name)) is not None:
                    going.cancel()  # it stopped: no answer is coming, and none should reopen its SSH
                continue
            if vm.ssh is None and not vm.ollama:
                continue
            task = self._probing.get(vm.name)
            if task is None:  # not still probing from an earlier round
                task = asyncio.create_task(self._probe(vm), name=f"activity-{vm.name}")
                self._probing[vm.name] = task
                task.add_done_callback(lambda done, name=vm.name: self._ended(name, done))
            tasks.append(task)
        return tasks

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if self._probing.get(name) is task:
            del self._probing[name]

    async def _probe(self, vm: _Vm) -> None:
        parts = []
        if vm.ssh is not None:
            parts.append(self._sessions(vm.name, vm.ssh))
        if vm.ollama:
            parts.append(self._keepalive(vm))
        try:
            # Each part reports its own timeout; this backstop, later, only ends a part that hung.
            async with asyncio.timeout(self.timeout_s + _BACKSTOP_S):
                outcomes = await asyncio.gather(*parts, return_exceptions=True)
        except TimeoutError:
            log.warning("activity probe of %s overran its timeout", vm.name)
            return
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # a bug: logged, and the next round tries again
                log.error("activity probe of %s failed", vm.name, exc_info=outcome)

    async def aclose(self) -> None:
        """Stop the probes still going and close the Ollama clients; never raises."""
        await cancel_until_done(*self._probing.values())
        for client in self._clients.values():
            with suppress(Exception):
                await client.close()
        self._clients.clear()

    # --- SSH sessions ------------------------------------------------------------------------

    async def _sessions(self, vm: str, target: SshTarget) -> None:
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                result = await self._pool.run(vm, target, WHO_COMMAND, self.timeout_s, wait=self._wait(vm))
        except TimeoutError:
            self._unknown(vm, ActivityKind.SSH, "SSH sessions unknown", f"no answer within {self.timeout_s:g} s")
            return
        except SshError as exc:
            self._unknown(vm, ActivityKind.SSH, "SSH sessions unknown", exc.message)
            return
        if not result.ok:
            self._unknown(vm, ActivityKind.SSH, "SSH sessions unknown", _failed("who", result.exit_status, result.stderr))
            return
        sessions = parse_who(result.stdout)
        if sessions:
            self._send(vm, ActivityKind.SSH, sessions_detail(sessions), until=self._clock() + self.lease)

    def _wait(self, vm: str) -> bool:
        """Wait for a connection being made; not for one that is down (it fails at once, with why)."""
        return self._pool.status(vm).state not in _DOWN

    # --- Ollama keep-alive --------------------------------------------------------------------

    async def _keepalive(self, vm: _Vm) -> None:
        answers = await asyncio.gather(*(self._loaded(vm.name, service) for service in vm.ollama))
        now = self._clock()
        loaded = [model for answer in answers if not isinstance(answer, str) for model in answer]
        errors = [(service, answer) for service, answer in zip(vm.ollama, answers) if isinstance(answer, str)]
        until = keepalive_until(loaded, now)
        if errors:
            service, reason = errors[0]
            if len(vm.ollama) > 1:
                reason = f"{service}: {reason}"
            lease_end = now + self.lease
            self._send(vm.name, ActivityKind.OLLAMA, _unknown("Ollama unreachable", reason, vm.name),
                       until=max(lease_end, until) if until else lease_end, unknown=True)  # fmt: skip
        elif until is not None:
            self._send(vm.name, ActivityKind.OLLAMA, keepalive_detail(loaded, now, self._tz), until=until)

    async def _loaded(self, vm: str, service: str) -> tuple[LoadedModel, ...] | str:
        """The server's loaded models, or why they could not be read."""
        from aiconsole.services.ollama_models import ModelError

        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                client = await self._client(vm, service)
                return await client.loaded()
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except (SshError, ModelError) as exc:
            return str(exc)
        except Exception as exc:  # what we did not foresee is still only an unreadable source
            log.exception("reading /api/ps of %s/%s failed", vm, service)
            return type(exc).__name__

    async def _client(self, vm: str, service: str) -> OllamaModels:
        from aiconsole.services.ollama_models import ModelTimeouts, OllamaModels

        url = (await self._endpoints.url(vm, service, wait=self._wait(vm))).rstrip("/")
        client = self._clients.get((vm, service))
        if client is None or client.url != url:
            if client is not None:
                with suppress(Exception):
                    await client.close()
            timeouts = ModelTimeouts(connect_s=self.timeout_s, read_s=self.timeout_s)
            client = self._clients[(vm, service)] = OllamaModels(url, timeouts)
        return client

    # --- reporting ------------------------------------------------------------------------------

    def _unknown(self, vm: str, kind: str, what: str, reason: str) -> None:
        self._send(vm, kind, _unknown(what, reason, vm), until=self._clock() + self.lease, unknown=True)

    def _send(self, vm: str, kind: str, detail: str, *, until: datetime | None, unknown: bool = False) -> None:
        try:
            self._report(vm, kind, detail, until=until, unknown=unknown)
        except Exception:  # the listener's bug must not end the probing
            log.exception("activity report for %s failed", vm)


def _unknown(what: str, reason: str, vm: str) -> str:
    """The detail of an unknown report; the VM's name, which the pool's errors begin with, is
    left out (the report is the VM's already)."""
    reason = reason.removeprefix(f"{vm}: ")
    return f"{what}: {sanitize_line(reason, _REASON_CHARS) or 'no reason given'}"


def _failed(command: str, status: int | None, stderr: str) -> str:
    how = f"exited with {status}" if status is not None else "ended by a signal"
    said = sanitize_line(stderr.strip().splitlines()[0], _REASON_CHARS) if stderr.strip() else ""
    return f"{command} {how}: {said}" if said else f"{command} {how}"
