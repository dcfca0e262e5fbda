"""`ActivityProbe` against real peers on loopback: the demo's asyncssh server answering `who`
(`demo.ssh_server.Logins`) and the demo's `FakeOllama` answering `/api/ps`, reached through
the VM's SSH port forward as a `via_ssh` service is.

Nothing here reads the developer's ~/.ssh: every pool gets explicit known_hosts, config and
client key paths, and no agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiconsole.config import settings_from_toml_text
from aiconsole.demo.ollama_api import FakeOllama
from aiconsole.demo.ssh_server import BareHost, Logins, LoopbackSshServer, who_line
from aiconsole.domain.power import PowerState
from aiconsole.services.activity_probe import ActivityProbe
from aiconsole.services.endpoints import Endpoints
from aiconsole.services.ssh import SshPool
from providers_conftest import has_no_control_chars, unused_loopback_url

EPOCH = 1_795_000_000.0
NOW = datetime.fromtimestamp(EPOCH, UTC)
INTERVAL_S = 20.0
LEASE = timedelta(seconds=3 * INTERVAL_S)
RUNNING = {"inference": PowerState.RUNNING}


@dataclass(frozen=True)
class Reported:
    vm: str
    kind: str
    detail: str
    until: datetime | None
    unknown: bool


@dataclass
class Reports:
    """A `report` callback of exactly the shape the lead's lease store takes."""

    items: list[Reported] = field(default_factory=list)

    def __call__(self, vm: str, kind: str, detail: str, *, until: datetime | None, unknown: bool = False) -> None:
        self.items.append(Reported(vm, kind, detail, until, unknown))

    def of(self, kind: str, vm: str = "inference") -> list[Reported]:
        return [item for item in self.items if item.kind == kind and item.vm == vm]


def config(target: str, ollama_url: str, *, via_ssh: bool = True, more: str = "") -> str:
    return f"""
[[vm]]
name = "inference"
provider = "static"
ssh = "{target}"
[[vm.service]]
name = "ollama"
kind = "ollama"
url = "{ollama_url}"
via_ssh = {str(via_ssh).lower()}
[[vm.service]]
name = "open-webui"
kind = "http"
url = "http://127.0.0.1:9/health"
{more}"""


def make_pool(server: LoopbackSshServer, tmp_path: Path) -> SshPool:
    return SshPool(
        known_hosts=server.known_hosts_path, config_file=tmp_path / "no-ssh-config",
        client_keys=[server.client_key_path], use_agent=False, backoff_base_s=0.05, backoff_max_s=0.2,
        random=lambda: 0.5,
    )  # fmt: skip


@dataclass
class Rig:
    server: LoopbackSshServer
    logins: Logins
    ollama: FakeOllama
    pool: SshPool
    probe: ActivityProbe
    reports: Reports


@asynccontextmanager
async def rig(
    tmp_path: Path,
    logins: Logins | None = None,
    loaded: dict[str, object] | None = None,
    *,
    ollama_url: str | None = None,
    via_ssh: bool = True,
    more: str = "",
    **options,
) -> AsyncIterator[Rig]:
    logins = logins if logins is not None else Logins()
    ollama = FakeOllama(loaded=loaded or {}, clock=lambda: EPOCH)
    async with LoopbackSshServer(tmp_path / "ssh", BareHost(logins)) as server, ollama:
        settings = settings_from_toml_text(
            config(server.target, ollama_url or ollama.url, via_ssh=via_ssh, more=more), "test.toml"
        )
        async with make_pool(server, tmp_path) as pool:
            endpoints = Endpoints(pool)
            for vm in settings.vm:
                endpoints.add_vm(vm)
            reports = Reports()
            options = {"interval_s": INTERVAL_S, "clock": lambda: NOW} | options
            probe = ActivityProbe(settings, pool, endpoints, reports, **options)
            try:
                yield Rig(server, logins, ollama, pool, probe, reports)
            finally:
                await probe.aclose()


ALICE = who_line("alice", "pts/0", EPOCH - 600, "203.0.113.5")
BOB = who_line("bob", "pts/1", EPOCH - 60, "203.0.113.9")
# coreutils built with systemd lists the console's own connection (an exec channel, no pty) so:
CONSOLE_ITSELF = who_line("aiconsole", "sshd", EPOCH - 3600, "198.51.100.2")


# --- SSH sessions -----------------------------------------------------------------------------


async def test_open_sessions_are_reported_with_a_lease_of_three_intervals(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(ALICE, BOB, CONSOLE_ITSELF)) as r:
        await r.probe.probe_once(RUNNING)
        assert r.reports.of("ssh") == [Reported("inference", "ssh", "2 SSH sessions (alice, bob)", NOW + LEASE, False)]
        assert r.server.commands.count("who") == 1 and r.logins.asked == 1


async def test_one_session_reads_in_the_singular(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(ALICE)) as r:
        await r.probe.probe_once(RUNNING)
        assert [item.detail for item in r.reports.of("ssh")] == ["1 SSH session (alice)"]


async def test_no_session_reports_nothing(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(CONSOLE_ITSELF)) as r:
        await r.probe.probe_once(RUNNING)
        assert r.logins.asked == 1, "who was asked"
        assert r.reports.items == [], "neither the console's own session nor an idle Ollama is activity"


async def test_each_round_renews_the_lease_and_a_closed_session_stops_renewing(tmp_path: Path) -> None:
    now = [NOW]
    async with rig(tmp_path, Logins.of(ALICE), clock=lambda: now[0]) as r:
        await r.probe.probe_once(RUNNING)
        now[0] += timedelta(seconds=20)
        await r.probe.probe_once(RUNNING)
        r.logins.output = b""  # alice logged out
        now[0] += timedelta(seconds=20)
        await r.probe.probe_once(RUNNING)
        assert [item.until for item in r.reports.of("ssh")] == [NOW + LEASE, NOW + timedelta(seconds=20) + LEASE]
        assert r.logins.asked == 3


async def test_hostile_who_output_over_the_wire_is_counted_and_reported_inert(tmp_path: Path) -> None:
    hostile = (
        b"\x1b]0;pwned\x07mallory\x1b[2J pts/1 2026-11-22 12:00 (\xff\xfe evil)\n"
        b"\xc3\x28\xa0\xa1 pts/2\n"
        b"\x1b[31m\x00\x00\x00\n" + b"x" * 100_000 + b"\n"
    )
    async with rig(tmp_path, Logins(hostile)) as r:
        await r.probe.probe_once(RUNNING)
        (report,) = r.reports.of("ssh")
        assert report.detail == "2 SSH sessions" and not report.unknown
        assert has_no_control_chars(report.detail)


async def test_who_failing_is_reported_unknown_with_its_reason(tmp_path: Path) -> None:
    logins = Logins(exit_status=1, stderr=b"who: cannot open /var/run/utmp: \x1b[31mPermission denied\n")
    async with rig(tmp_path, logins) as r:
        await r.probe.probe_once(RUNNING)
        (report,) = r.reports.of("ssh")
        assert report.unknown and report.until == NOW + LEASE
        assert (
            report.detail
            == "SSH sessions unknown: who exited with 1: who: cannot open /var/run/utmp: Permission denied"
        )


async def test_who_missing_is_reported_unknown(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.server.handler = lambda command, process: _not_found(process)
        await r.probe.probe_once(RUNNING)
        (report,) = r.reports.of("ssh")
        assert (
            report.unknown and report.detail == "SSH sessions unknown: who exited with 127: sh: who: command not found"
        )


async def _not_found(process) -> int:
    process.stderr.write(b"sh: who: command not found\n")
    return 127


async def test_ssh_down_is_reported_unknown_for_sessions_and_for_ollama_through_it(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(ALICE), {"llama3.1:8b": "10m"}) as r:
        await r.server.refuse_connections()
        await r.probe.probe_once(RUNNING)
        (ssh,) = r.reports.of("ssh")
        (ollama,) = r.reports.of("ollama")
        assert ssh.unknown and ssh.until == NOW + LEASE
        assert ssh.detail == "SSH sessions unknown: connection refused"
        assert ollama.unknown and ollama.until == NOW + LEASE
        assert ollama.detail.startswith("Ollama unreachable: ") and "connection refused" in ollama.detail
        assert r.logins.asked == 0

        # Down for a while (backing off): asked again, it answers at once with the same reason.
        started = asyncio.get_running_loop().time()
        await r.probe.probe_once(RUNNING)
        assert asyncio.get_running_loop().time() - started < 1.0
        assert [item.detail for item in r.reports.of("ssh")] == ["SSH sessions unknown: connection refused"] * 2


async def test_a_connection_lost_and_back_is_read_again(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(ALICE)) as r:
        await r.probe.probe_once(RUNNING)
        r.server.drop_connections()
        for _ in range(50):  # the pool reconnects with a short backoff; unknown until then
            r.reports.items.clear()
            await r.probe.probe_once(RUNNING)
            if not r.reports.of("ssh")[0].unknown:
                break
            await asyncio.sleep(0.05)
        assert r.reports.of("ssh") == [Reported("inference", "ssh", "1 SSH session (alice)", NOW + LEASE, False)]


async def test_a_hanging_who_times_out_as_unknown_and_never_delays_another_vm(tmp_path: Path) -> None:
    slow, fast = Logins.of(ALICE, delay_s=30.0), Logins.of(BOB)

    async def by_user(command: str, process) -> int:  # one server, two VMs: told apart by the login user
        return await (slow if process.get_extra_info("username") == "aiconsole" else fast).answer(process)

    async with rig(tmp_path) as r:
        r.server.handler = by_user
        more = f'[[vm]]\nname = "training"\nprovider = "static"\nssh = "fast@127.0.0.1:{r.server.port}"\n'
        settings = settings_from_toml_text(config(r.server.target, r.ollama.url, more=more), "test.toml")
        loop = asyncio.get_running_loop()
        seen: dict[str, float] = {}

        def stamped(vm, kind, detail, *, until, unknown=False):
            seen.setdefault(f"{vm}/{kind}", loop.time())
            r.reports(vm, kind, detail, until=until, unknown=unknown)

        endpoints = Endpoints(r.pool)
        for vm in settings.vm:
            endpoints.add_vm(vm)
        probe = ActivityProbe(settings, r.pool, endpoints, stamped, clock=lambda: NOW, timeout_s=1.0)
        started = loop.time()
        await probe.probe_once(RUNNING | {"training": PowerState.RUNNING})
        await probe.aclose()
        assert r.reports.of("ssh", "training") == [
            Reported("training", "ssh", "1 SSH session (bob)", NOW + LEASE, False)
        ]
        (hung,) = r.reports.of("ssh")
        assert hung.unknown and hung.detail == "SSH sessions unknown: no answer within 1 s"
        assert seen["training/ssh"] - started < 0.8, "the fast VM did not wait for the slow one"
        assert 0.9 <= seen["inference/ssh"] - started < 3.0
        assert (slow.asked, fast.asked) == (1, 1)


# --- Ollama keep-alive --------------------------------------------------------------------------


async def test_a_model_with_a_keep_alive_holds_until_its_expiry_read_through_the_forward(tmp_path: Path) -> None:
    async with rig(tmp_path, loaded={"llama3.1:8b": "10m"}) as r:
        await r.probe.probe_once(RUNNING)
        (report,) = r.reports.of("ollama")
        assert report == Reported("inference", "ollama", report.detail, NOW + timedelta(minutes=10), False)
        assert report.detail == f"llama3.1:8b loaded (keep-alive to {(NOW + timedelta(minutes=10)):%H:%M} UTC)"
        assert r.reports.of("ssh") == []


async def test_the_latest_expiry_of_several_models_holds_and_the_detail_uses_the_given_zone(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    async with rig(tmp_path, loaded={"mistral:7b": "5m", "llama3.1:8b": "1h"}, tz=paris) as r:
        await r.probe.probe_once(RUNNING)
        (report,) = r.reports.of("ollama")
        until = NOW + timedelta(hours=1)
        assert report.until == until and not report.unknown
        assert report.detail == f"2 models loaded (keep-alive to {until.astimezone(paris):%H:%M})"


async def test_a_pinned_model_is_ignored(tmp_path: Path) -> None:
    async with rig(tmp_path, loaded={"deepseek-coder-v2:16b": -1, "mistral:7b": "48h"}) as r:
        await r.probe.probe_once(RUNNING)
        assert r.ollama.server.requests_served >= 1, "/api/ps was read"
        assert r.reports.items == [], "pinned (and a keep-alive past the 24 h horizon) says nothing about use"


async def test_a_pinned_model_beside_a_finite_one_does_not_lengthen_the_hold(tmp_path: Path) -> None:
    async with rig(tmp_path, loaded={"deepseek-coder-v2:16b": -1, "llama3.1:8b": "1h"}) as r:
        await r.probe.probe_once(RUNNING)
        (report,) = r.reports.of("ollama")
        assert report.until == NOW + timedelta(hours=1)
        assert report.detail.startswith("llama3.1:8b loaded (keep-alive to ")


async def test_an_expired_model_is_not_activity(tmp_path: Path) -> None:
    async with rig(tmp_path, loaded={"llama3.1:8b": "10m"}, clock=lambda: NOW + timedelta(minutes=11)) as r:
        await r.probe.probe_once(RUNNING)
        assert r.reports.items == []


async def test_ollama_down_is_reported_unknown(tmp_path: Path) -> None:
    async with rig(tmp_path, ollama_url=unused_loopback_url(), via_ssh=False) as r:
        await r.probe.probe_once(RUNNING)
        (report,) = r.reports.of("ollama")
        assert report.unknown and report.until == NOW + LEASE
        assert (
            report.detail.startswith("Ollama unreachable: ") and len(report.detail) <= len("Ollama unreachable: ") + 80
        )


async def test_ollama_failing_is_unknown_and_a_slow_one_times_out(tmp_path: Path) -> None:
    async with rig(tmp_path, loaded={"llama3.1:8b": "10m"}, timeout_s=0.5) as r:
        r.ollama.fail(500, {"error": "\x1b[2Jboom"})
        await r.probe.probe_once(RUNNING)
        (failed,) = r.reports.of("ollama")
        assert failed.unknown and "boom" in failed.detail and has_no_control_chars(failed.detail)

        r.ollama.recover()
        r.ollama.slow(3.0)
        r.reports.items.clear()
        await r.probe.probe_once(RUNNING)
        (slow,) = r.reports.of("ollama")
        assert slow == Reported("inference", "ollama", "Ollama unreachable: no answer within 0.5 s", NOW + LEASE, True)


async def test_one_client_per_url_is_kept_between_rounds(tmp_path: Path) -> None:
    async with rig(tmp_path, loaded={"llama3.1:8b": "10m"}, via_ssh=False) as r:
        for _ in range(4):
            await r.probe.probe_once(RUNNING)
        assert len(r.reports.of("ollama")) == 4
        assert r.ollama.server.requests_served == 4
        assert r.ollama.server.connections_opened == 1, "the client's connection is kept, not opened per round"


# --- following the fleet ---------------------------------------------------------------------------


async def test_a_stopped_vm_is_not_asked(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(ALICE), {"llama3.1:8b": "10m"}) as r:
        for state in (PowerState.STOPPED, PowerState.STARTING, PowerState.UNKNOWN):
            await r.probe.probe_once({"inference": state})
        await r.probe.probe_once({})
        assert r.reports.items == []
        assert r.server.connections_made == 0 and r.logins.asked == 0
        assert r.ollama.server.requests_served == 0


async def test_a_probe_going_when_its_vm_stops_is_cancelled_without_a_report(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(ALICE, delay_s=5.0), {"llama3.1:8b": "10m"}) as r:
        r.ollama.slow(5.0)
        first = asyncio.create_task(r.probe.probe_once(RUNNING))
        async with asyncio.timeout(5.0):
            while r.logins.asked == 0:
                await asyncio.sleep(0.02)
        started = asyncio.get_running_loop().time()
        await r.probe.probe_once({"inference": PowerState.STOPPING})
        await first
        assert asyncio.get_running_loop().time() - started < 1.0
        assert r.reports.items == []


async def test_run_probes_every_interval_until_cancelled_and_survives_a_failing_listener(tmp_path: Path) -> None:
    calls: list[str] = []

    def failing(vm, kind, detail, *, until, unknown=False):
        calls.append(detail)
        raise RuntimeError("the listener's bug")

    async with rig(tmp_path, Logins.of(ALICE), interval_s=0.1, timeout_s=2.0) as r:
        r.probe._report = failing
        rounds = []

        def current():
            rounds.append(1)
            if len(rounds) == 1:
                raise KeyError("the monitor's bug")
            return RUNNING

        task = asyncio.create_task(r.probe.run(current))
        async with asyncio.timeout(5.0):
            while len(calls) < 3:
                await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls[:3] == ["1 SSH session (alice)"] * 3
        assert r.logins.asked >= 3 and len(rounds) >= 4, "a failing round and a failing listener end nothing"
        asked = r.logins.asked
        await asyncio.sleep(0.3)
        assert r.logins.asked == asked, "nothing runs after the cancel"


async def test_a_probe_still_going_is_not_started_again(tmp_path: Path) -> None:
    async with rig(tmp_path, Logins.of(ALICE, delay_s=0.6), interval_s=0.1, timeout_s=2.0) as r:
        task = asyncio.create_task(r.probe.run(lambda: RUNNING))
        await asyncio.sleep(0.45)  # four rounds began while the first `who` still runs
        assert r.logins.asked == 1 and r.server.running_commands == 1
        async with asyncio.timeout(5.0):
            while not r.reports.of("ssh"):
                await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert r.reports.of("ssh")[0].detail == "1 SSH session (alice)"
