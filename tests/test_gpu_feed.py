"""GPU feeds against a real asyncssh server on loopback answering nvidia-smi, and NVML locally.

Nothing here reads the developer's ~/.ssh: every pool gets explicit known_hosts, config and
client key paths, and no agent. Sampling runs at 50 ms and the pool backs off for tens of
milliseconds, so reconnects take a fraction of a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest

from aiconsole.demo.gpu_host import GpuHost
from aiconsole.demo.gpu_sim import TRAINING_LOAD, compute_apps
from aiconsole.demo.ssh_server import LoopbackSshServer
from aiconsole.domain.gpu import GpuFrame, GpuSample, parse_compute_apps
from aiconsole.domain.gpu_levels import GpuMetric, GpuThresholds, Level, mem_level, temp_level
from aiconsole.domain.telemetry import FeedState, HostOutline
from aiconsole.services.gpu_feed import (
    GpuFeed,
    LocalGpuFeed,
    RemoteGpuFeed,
    RoundBatcher,
    classify_smi_exit,
    processes_may_have_changed,
    used_memory,
)
from aiconsole.services.nvml import LocalGpuReading, LocalGpus, LocalGpuStatus
from aiconsole.services.ssh import SshPool

INTERVAL_S = 0.05
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
UUID = "GPU-08e6c2fb-82e3-c767-12ed-5fe6bbbf7c6c"


def make_pool(server: LoopbackSshServer, tmp_path: Path, **kwargs) -> SshPool:
    options = {
        "known_hosts": server.known_hosts_path,
        "config_file": tmp_path / "no-ssh-config",
        "client_keys": [server.client_key_path],
        "use_agent": False,
        "backoff_base_s": 0.02,
        "backoff_max_s": 0.1,
        "random": lambda: 0.5,
    }
    return SshPool(**(options | kwargs))


def now() -> datetime:
    return datetime.now(UTC)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(feed):
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@asynccontextmanager
async def remote_feed(server: LoopbackSshServer, tmp_path: Path, pool_options=None, **options):
    async with make_pool(server, tmp_path, **(pool_options or {})) as pool:
        options = {"interval_s": INTERVAL_S, "random": lambda: 0.5} | options
        async with running(RemoteGpuFeed("vm", pool, server.target, **options)) as feed:
            yield feed


def smi_line(index: int, temp: float, name: str = "NVIDIA H100 80GB HBM3", used: int = 1000) -> bytes:
    return f"{index}, GPU-{index:08d}-0000, {name}, {temp}, {used}, 81559, 40, 120.50, 700.00\n".encode()


def scripted(rounds: list[bytes], *, then_hold: bool = True, period_s: float = INTERVAL_S):
    """A handler streaming `rounds` (bytes each) for the -lms command, then holding the stream open."""

    async def handler(command: str, process: asyncssh.SSHServerProcess) -> int | None:
        if "--query-compute-apps" in command:
            process.stdout.write(f"457, python3, 21354, GPU-{0:08d}-0000\n".encode())
            return 0
        for chunk in rounds:
            process.stdout.write(chunk)
            await process.stdout.drain()
            await asyncio.sleep(period_s)
        if then_hold:
            await asyncio.sleep(3600)
        return 0

    return handler


# --- live frames ---------------------------------------------------------------------------------


async def test_frames_arrive_over_one_stream_with_levels_and_processes(tmp_path) -> None:
    host = GpuHost(seed=7, load=TRAINING_LOAD, count=2, process=(4242, "python3"), clock=lambda: 60.0)
    temp, mem, _, _ = host.gpus[0].reading(60.0)
    thresholds = GpuThresholds(temp_warn_c=temp - 1, temp_critical_c=temp + 20)
    changes: list[GpuFeed] = []
    async with (
        host.serve(tmp_path / "server") as server,
        remote_feed(
            server, tmp_path, thresholds=thresholds, processes_interval_s=0.1, on_change=changes.append
        ) as feed,
    ):
        await wait_for(lambda: len(feed.view(now()).gpus) == 2 and feed.view(now()).processes)
        await wait_for(lambda: len(feed.view(now()).gpus[0].history.temp_c) >= 4)
        view = feed.view(now())
    assert view.state is FeedState.LIVE and view.host == "vm" and view.message == ""
    first, second = view.gpus
    assert [g.sample.uuid for g in view.gpus] == [gpu.uuid for gpu in host.gpus]
    assert (first.sample.temp_c, first.sample.mem_used_mib) == (temp, mem)
    assert first.temp_level is Level.WARNING
    assert first.mem_level is mem_level(mem, first.sample.mem_total_mib, thresholds)
    assert second.temp_level is temp_level(second.sample.temp_c, thresholds)
    assert not first.stale and first.age_s < 1.0
    assert set(first.history.temp_c) == {temp} and len(first.history.util_pct) == len(first.history.mem_pct)
    assert view.processes == parse_compute_apps(compute_apps(host.gpus, 60.0, (4242, "python3")))
    assert view.updated_at == second.sample.at  # when the frame's last line came
    stream = feed.command
    assert "-lms 50" in stream and server.commands.count(stream) == 1  # one process, not one per sample
    assert server.connections_made == 1
    assert changes and all(c is feed for c in changes)


async def test_on_change_is_called_at_most_once_per_frame_and_a_failing_listener_is_harmless(tmp_path) -> None:
    calls = 0

    def listener(feed: GpuFeed) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("a buggy repaint")

    rounds = [smi_line(0, 50 + i) for i in range(12)]
    async with (
        LoopbackSshServer(tmp_path / "server", scripted(rounds)) as server,
        remote_feed(server, tmp_path, on_change=listener, processes_interval_s=3600) as feed,
    ):
        await wait_for(lambda: feed.last_frame is not None and feed.last_frame.gpus[0].temp_c == 61)
    # 12 frames, the state going live with the first, and the processes once: never more.
    assert 10 <= calls <= 13
    assert feed.view(now()).gpus[0].sample.temp_c == 61


async def test_a_cut_stream_goes_stale_with_its_age_then_live_again(tmp_path) -> None:
    host = GpuHost(seed=1, count=1)
    async with (
        host.serve(tmp_path / "server") as server,
        remote_feed(server, tmp_path, processes_interval_s=3600) as feed,
    ):
        await wait_for(lambda: feed.view(now()).state is FeedState.LIVE)
        server.handshake_delay = 0.3  # the reconnect takes this long
        assert server.drop_connections() == 1
        await wait_for(lambda: feed.view(now()).state is FeedState.STALE)
        stale = feed.view(now())
        assert "connection lost" in stale.message and "reconnecting" in stale.message
        assert stale.gpus and all(gpu.stale for gpu in stale.gpus)
        assert feed.view(now()) is stale  # the age shown moves a second at a time
        later = feed.view(now() + timedelta(seconds=1.5))
        assert later.state is FeedState.STALE and later.gpus[0].stale and later.gpus[0].age_s >= 1.5
        assert feed.busy(now()) is None  # unknown, never idle
        server.handshake_delay = 0.0
        await wait_for(lambda: feed.view(now()).state is FeedState.LIVE)
        live = feed.view(now())
    assert not live.gpus[0].stale and live.gpus[0].age_s < 0.5 and live.message == ""
    assert server.connections_made == 2 and feed.streams_started == 2


async def test_escapes_and_markup_in_names_are_inert_and_bad_utf8_keeps_the_connection(tmp_path) -> None:
    evil = "\x1b[31mEvil\x1b[0m \x1b]0;pwned\x07[bold]GPU[/bold] \x07\x9b2J"
    rounds = []
    for i in range(8):
        rounds.append(smi_line(0, 40 + i, name=evil)[:-1] + b" \xff\xfe\n")  # a bad byte in the last field
        rounds.append(b"\xc3\x28 junk between rounds \xff\n")
    async with (
        LoopbackSshServer(tmp_path / "server", scripted(rounds, period_s=0.02)) as server,
        remote_feed(server, tmp_path, processes_interval_s=3600) as feed,
    ):
        await wait_for(lambda: feed.last_frame is not None and feed.last_frame.gpus[0].temp_c == 46)
        view = feed.view(now())
        assert feed.pool.status("vm").state == "up"
    name = view.gpus[0].sample.name
    assert name == "Evil [bold]GPU[/bold]"
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in name)
    assert view.gpus[0].sample.power_limit_w is None  # "700.00 \ufffd\ufffd" is no number: unknown, not 0
    assert server.connections_made == 1 and server.commands.count(feed.command) == 1


def memory_stepper(jump: asyncio.Event):
    """nvidia-smi at 1000 MiB used until `jump` is set, then at 1000 + 300 MiB (a process came)."""

    async def handler(command: str, process: asyncssh.SSHServerProcess) -> int | None:
        if "--query-compute-apps" in command:
            process.stdout.write(f"457, python3, 900, GPU-{0:08d}-0000\n".encode())
            return 0
        while True:
            process.stdout.write(smi_line(0, 50.0, used=1300 if jump.is_set() else 1000))
            await process.stdout.drain()
            await asyncio.sleep(INTERVAL_S)

    return handler


async def test_processes_are_asked_for_again_when_used_memory_moves_not_every_interval(tmp_path, monkeypatch) -> None:
    # Each query is a new channel and remote process: with still memory, one per max age only.
    monkeypatch.setattr("aiconsole.services.gpu_feed.PROCESS_MAX_AGE_INTERVALS", 1000)
    jump = asyncio.Event()
    server = LoopbackSshServer(tmp_path / "server", memory_stepper(jump))

    def queries() -> int:
        return sum("--query-compute-apps" in command for command in server.commands)

    async with server, remote_feed(server, tmp_path, processes_interval_s=0.1) as feed:
        await wait_for(lambda: queries() == 1 and feed.view(now()).processes)
        await asyncio.sleep(0.5)  # five intervals with the memory still
        assert queries() == 1
        jump.set()  # +300 MiB: past the 256 MiB step
        await wait_for(lambda: queries() == 2)
        await asyncio.sleep(0.3)
        assert queries() == 2, "once asked at the new level, still memory asks nothing more"


async def test_processes_are_asked_for_at_least_every_max_age(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("aiconsole.services.gpu_feed.PROCESS_MAX_AGE_INTERVALS", 3)
    server = LoopbackSshServer(tmp_path / "server", memory_stepper(asyncio.Event()))
    async with server, remote_feed(server, tmp_path, processes_interval_s=0.1) as feed:
        await wait_for(lambda: feed.state is FeedState.LIVE)
        await wait_for(lambda: sum("--query-compute-apps" in c for c in server.commands) >= 3, timeout=5.0)


def test_what_counts_as_a_change_of_the_gpu_processes() -> None:
    def frame_of(*used: float | None) -> GpuFrame:
        return GpuFrame(T0, tuple(
            GpuSample(i, f"GPU-{i}", "H100", 40.0, mib, 81559.0, 5.0, 70.0, 700.0, T0) for i, mib in enumerate(used)
        ))  # fmt: skip

    asked = used_memory(frame_of(1000.0, 2000.0))
    assert not processes_may_have_changed(asked, frame_of(1255.0, 1745.0))  # within 256 MiB either way
    assert processes_may_have_changed(asked, frame_of(1000.0, 2256.0))
    assert processes_may_have_changed(asked, frame_of(1000.0))  # a GPU went
    assert processes_may_have_changed(asked, frame_of(1000.0, 2000.0, 0.0))  # a GPU came
    assert processes_may_have_changed(asked, frame_of(1000.0, None))  # unreadable now
    assert not processes_may_have_changed(used_memory(frame_of(None)), frame_of(None))


# --- rounds taken together ------------------------------------------------------------------------


async def test_a_batcher_takes_the_rounds_of_many_feeds_together_in_order() -> None:
    batcher = RoundBatcher(delay_s=0.05)
    taken: list[tuple[str, list[str]]] = []
    batcher.add(lambda batch, at: taken.append(("a", batch)), ["a0"], T0)
    batcher.add(lambda batch, at: taken.append(("b", batch)), ["b0"], T0)
    batcher.add(lambda batch, at: taken.append(("a", batch)), ["a1"], T0)
    assert taken == []  # not as they come
    await asyncio.sleep(0.1)
    assert taken == [("a", ["a0"]), ("b", ["b0"]), ("a", ["a1"])]  # one flush, in arrival order
    batcher.add(lambda batch, at: taken.append(("c", batch)), ["c0"], T0)
    batcher.flush()  # at once (a stream that ends), and the timer with it
    await asyncio.sleep(0.1)
    assert taken[3:] == [("c", ["c0"])]


async def test_a_batched_feed_gets_every_round_and_the_last_ones_before_its_stream_ends(tmp_path) -> None:
    rounds = [smi_line(0, 50.0 + n) + smi_line(1, 60.0 + n) for n in range(3)]
    server = LoopbackSshServer(tmp_path / "server", scripted(rounds, then_hold=False, period_s=0.01))
    batcher = RoundBatcher(delay_s=10.0)  # only the end of the stream can flush it in time
    async with server, remote_feed(server, tmp_path, batcher=batcher, retry_base_s=10.0) as feed:
        await wait_for(lambda: "stopped" in feed.view(now()).message)
        view = feed.view(now())
    assert [g.sample.temp_c for g in view.gpus] == [52.0, 62.0]  # the last round, parsed before the end
    assert [len(g.history.temp_c) for g in view.gpus] == [3, 3]


async def test_a_bug_while_taking_a_batched_round_ends_the_stream_as_an_error(tmp_path, monkeypatch) -> None:
    def broken(self, lines, at):
        raise RuntimeError("a stand-in bug")

    host = GpuHost(seed=3, count=1)
    monkeypatch.setattr("aiconsole.domain.gpu.GpuStreamParser.feed_lines", broken)
    async with host.serve(tmp_path / "server") as server:
        async with remote_feed(server, tmp_path, batcher=RoundBatcher(0.01), retry_base_s=10.0) as feed:
            await wait_for(lambda: feed.view(now()).state is FeedState.ERROR)
            assert feed.view(now()).message == "GPU telemetry failed: RuntimeError: a stand-in bug"
            await wait_for(lambda: server.running_commands == 0)  # the stream was closed, not left running


# --- failures --------------------------------------------------------------------------------------


async def test_nvidia_smi_not_found_is_no_gpu_without_a_tight_loop(tmp_path) -> None:
    server = LoopbackSshServer(tmp_path / "server")  # every command: "command not found"
    async with server, remote_feed(server, tmp_path, retry_base_s=0.2, processes_interval_s=0.05) as feed:
        await wait_for(lambda: feed.view(now()).state is FeedState.NO_GPU)
        await asyncio.sleep(1.0)
        view = feed.view(now())
    assert view.message == "no GPU: nvidia-smi is not installed on this host (command not found)"
    assert view.gpus == () and feed.busy(now()) is None
    # Backoff 0.2, 0.4, 0.8 s: three or four starts in ~1 s, and no process query at all.
    assert 2 <= len(server.commands) <= 4, server.commands
    assert all("--query-gpu" in command for command in server.commands)
    assert server.connections_made == 1


@pytest.mark.parametrize(
    ("status", "output", "state", "message"),
    [
        (127, "bash: nvidia-smi: command not found", FeedState.NO_GPU, "command not found"),
        (127, "sh: 1: nvidia-smi: not found", FeedState.NO_GPU, "command not found"),
        (6, "No devices were found", FeedState.NO_GPU, "found no NVIDIA device"),
        (
            9,
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            FeedState.NO_GPU,
            "driver is not loaded",
        ),
        (
            18,
            "Failed to initialize NVML: Driver/library version mismatch\n",
            FeedState.ERROR,
            "nvidia-smi exited with status 18: Failed to initialize NVML: Driver/library version mismatch",
        ),
        (1, "\x1b]0;pwned\x07boom [red]x[/red]", FeedState.ERROR, "status 1: boom [red]x[/red]"),
        (None, "", FeedState.ERROR, "nvidia-smi ended without output"),
    ],
)
def test_an_nvidia_smi_that_ends_without_a_sample_is_explained(status, output, state, message) -> None:
    got_state, got_message = classify_smi_exit(status, output)
    assert got_state is state and message in got_message and "\x1b" not in got_message


async def test_no_devices_on_stdout_is_no_gpu(tmp_path) -> None:
    async def handler(command: str, process: asyncssh.SSHServerProcess) -> int:
        process.stdout.write(b"No devices were found\n")
        return 6

    async with (
        LoopbackSshServer(tmp_path / "server", handler) as server,
        remote_feed(server, tmp_path, retry_base_s=0.5) as feed,
    ):
        await wait_for(lambda: feed.view(now()).state is FeedState.NO_GPU)
    assert feed.view(now()).message == "no GPU: nvidia-smi found no NVIDIA device"


async def test_an_unknown_host_key_is_refused_with_its_fingerprint_and_not_retried(tmp_path) -> None:
    async with GpuHost(seed=2).serve(tmp_path / "server") as server:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("")  # trusts nothing
        async with remote_feed(server, tmp_path, pool_options={"known_hosts": known_hosts}) as feed:
            await wait_for(lambda: feed.view(now()).state is FeedState.REFUSED)
            await asyncio.sleep(0.3)
            view = feed.view(now())
            assert server.connections_made == 1 and server.commands == []
            known_hosts.write_text(server.known_hosts_line)  # the operator accepts the key
            feed.pool.retry("vm")
            await wait_for(lambda: feed.view(now()).state is FeedState.LIVE)
    assert server.host_key_fingerprint in view.message
    assert "known_hosts" in view.message or "ssh-keyscan" in view.message


# --- levels and crossings --------------------------------------------------------------------------


async def test_crossings_come_once_per_threshold_crossing_with_hysteresis(tmp_path) -> None:
    rounds = [smi_line(0, temp) for temp in (70, 76, 74, 77, 71)]
    thresholds = GpuThresholds(temp_warn_c=75, temp_critical_c=85, hysteresis_c=3)
    async with (
        LoopbackSshServer(tmp_path / "server", scripted(rounds)) as server,
        remote_feed(server, tmp_path, thresholds=thresholds, processes_interval_s=3600) as feed,
    ):
        await wait_for(lambda: feed.last_frame is not None and feed.last_frame.gpus[0].temp_c == 71)
        taken = feed.take_crossings()
        assert feed.take_crossings() == []
    assert [(c.metric, c.from_level, c.to_level, c.value) for c in taken] == [
        (GpuMetric.TEMP, Level.OK, Level.WARNING, 76.0),
        (GpuMetric.TEMP, Level.WARNING, Level.OK, 71.0),
    ]
    assert taken[0].rising and not taken[1].rising and taken[0].gpu_name == "NVIDIA H100 80GB HBM3"


# --- the view, without SSH -------------------------------------------------------------------------


def sample(
    at: datetime, *, index: int = 0, temp: float = 50.0, util: float | None = 40.0, uuid: str = UUID
) -> GpuSample:
    return GpuSample(index, uuid, "NVIDIA H100 80GB HBM3", temp, 1000.0, 81559.0, util, 120.0, 700.0, at)


def frame(at: datetime, *samples: GpuSample) -> GpuFrame:
    return GpuFrame(at, samples or (sample(at),))


def test_view_is_cached_until_a_frame_or_freshness_changes() -> None:
    feed = GpuFeed("vm", interval_s=1.0)
    empty = feed.view(T0)
    assert empty.state is FeedState.CONNECTING and empty.gpus == () and feed.view(T0 + timedelta(hours=1)) is empty
    feed.record_frames([frame(T0)])
    first = feed.view(T0 + timedelta(seconds=0.5))
    assert first.state is FeedState.LIVE and first.gpus[0].age_s == 0.5
    assert feed.view(T0 + timedelta(seconds=0.9)) is first
    assert feed.view(T0 + timedelta(seconds=2.9)) is first  # still fresh: 3 intervals
    stale = feed.view(T0 + timedelta(seconds=3.2))
    assert stale is not first and stale.state is FeedState.STALE and stale.gpus[0].stale
    assert stale.gpus[0].age_s == pytest.approx(3.2)
    assert feed.view(T0 + timedelta(seconds=3.9)) is stale  # the age shown moves a second at a time
    older = feed.view(T0 + timedelta(seconds=4.1))
    assert older is not stale and older.gpus[0].age_s == pytest.approx(4.1)
    assert older.gpus[0].history is stale.gpus[0].history  # no new sample: the history is not copied again
    feed.record_frames([frame(T0 + timedelta(seconds=5))])
    fresh = feed.view(T0 + timedelta(seconds=5.1))
    assert fresh.state is FeedState.LIVE and fresh.gpus[0].history.temp_c == (50.0, 50.0)
    feed.record_processes(())
    assert feed.view(T0 + timedelta(seconds=5.2)) is fresh  # nothing changed


def test_outline_matches_the_view_and_stays_the_same_object_while_unchanged() -> None:
    feed = GpuFeed("vm", interval_s=1.0)
    waiting = feed.outline(T0)
    assert (waiting.state, waiting.gpu_indices) == (FeedState.CONNECTING, ())
    feed.record_frames([frame(T0, sample(T0, index=1, uuid="GPU-b"), sample(T0))])
    for at in (T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=3.5)):  # live, then stale
        view, outline = feed.view(at), feed.outline(at)
        assert outline == HostOutline.of(view) and outline.gpu_indices == (0, 1)
    assert feed.outline(T0 + timedelta(seconds=3.6)) is outline  # nothing in it changed: no new object
    feed.set_state(FeedState.ERROR, "nvidia-smi exited with status 9")
    assert feed.outline(T0).state is FeedState.ERROR and feed.outline(T0) == HostOutline.of(feed.view(T0))


def test_history_is_bounded_and_gone_gpus_are_kept_stale_then_forgotten() -> None:
    feed = GpuFeed("vm", interval_s=1.0, history_s=10.0)
    other = "GPU-other"
    for second in range(30):
        at = T0 + timedelta(seconds=second)
        samples = [sample(at, temp=float(second))]
        if second < 5:
            samples.append(sample(at, index=1, uuid=other))
        feed.record_frames([frame(at, *samples)])
        if second in (6, 8):  # gone since second 5: stale once 3 intervals have passed
            mid = feed.view(at)
            assert [g.sample.index for g in mid.gpus] == [0, 1]
            assert not mid.gpus[0].stale and mid.gpus[1].stale is (second == 8)
            assert mid.gpus[1].age_s == second - 4
    view = feed.view(T0 + timedelta(seconds=29))
    assert [g.sample.uuid for g in view.gpus] == [UUID]  # absent for longer than the history: forgotten
    assert view.gpus[0].history.temp_c == tuple(float(s) for s in range(20, 30))


def test_states_win_over_stale_and_busy_follows_fresh_frames() -> None:
    feed = GpuFeed("vm", interval_s=1.0, busy_util_pct=10.0)
    assert feed.busy(T0) is None
    feed.record_frames([frame(T0, sample(T0, util=5.0))])
    assert feed.busy(T0) is False
    feed.record_frames([frame(T0, sample(T0, util=50.0))])
    assert feed.busy(T0) is True and feed.busy(T0 + timedelta(seconds=4)) is None
    feed.record_frames([frame(T0, sample(T0, util=None))])
    assert feed.busy(T0) is None
    feed.set_state(FeedState.CONNECTING, "connection lost: reset; reconnecting")
    view = feed.view(T0)
    assert view.state is FeedState.STALE and view.gpus[0].stale and "reconnecting" in view.message
    assert feed.busy(T0) is None
    feed.set_state(FeedState.REFUSED, "host key refused \x1b[2J: SHA256:abc")
    refused = feed.view(T0)
    assert refused.state is FeedState.REFUSED and refused.message == "host key refused : SHA256:abc"
    assert refused.gpus[0].stale


def test_a_reopened_round_adds_no_history_point() -> None:
    feed = GpuFeed("vm")
    first = sample(T0)
    feed.record_frames([frame(T0, first)])
    feed.record_frames([frame(T0, first, sample(T0, index=1, uuid="GPU-back"))])
    view = feed.view(T0)
    assert [len(g.history.temp_c) for g in view.gpus] == [1, 1]


# --- local GPUs -------------------------------------------------------------------------------------


async def test_local_feed_without_gpu_is_no_gpu(tmp_path) -> None:
    async with LocalGpus() as gpus, running(LocalGpuFeed(gpus, interval_s=0.05)) as feed:
        await wait_for(lambda: feed.state is not FeedState.CONNECTING)
        view = feed.view(now())
    if view.state is FeedState.LIVE:  # a machine with an NVIDIA GPU: it reads them instead
        assert view.gpus
        return
    assert view.state is FeedState.NO_GPU and view.message.startswith("no GPU")
    assert view.gpus == () and feed.busy(now()) is None


class FakeLocalGpus:
    """Stands in for LocalGpus (NVML itself is covered in test_nvml.py): readings in turn."""

    def __init__(self, readings: list[LocalGpuReading]) -> None:
        self.readings = readings
        self.calls = 0

    async def sample(self) -> LocalGpuReading:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("a stand-in bug")
        return self.readings[min(self.calls - 1, len(self.readings) - 1)]


async def test_local_feed_reads_frames_and_processes_and_survives_errors() -> None:
    ok = LocalGpuReading(LocalGpuStatus.OK, now(), frame(now()), parse_compute_apps(f"457, python3, 21354, {UUID}\n"))
    failed = LocalGpuReading(LocalGpuStatus.ERROR, now(), message="NVML: GPU is lost (code 15)")
    gpus = FakeLocalGpus([ok, ok, failed, ok])
    seen: list[tuple[FeedState, str]] = []
    feed = LocalGpuFeed(gpus, interval_s=0.02, retry_max_s=0.05, on_change=lambda f: seen.append((f.state, f.message)))
    async with running(feed):
        await wait_for(lambda: gpus.calls >= 5)
    assert feed.view(now()).processes[0].pid == 457
    states = [state for state, _ in seen]
    assert states[:2] == [FeedState.LIVE, FeedState.LIVE]  # the frame, then its processes
    assert seen[2] == (FeedState.ERROR, "GPU telemetry failed: RuntimeError: a stand-in bug")
    assert seen[3] == (FeedState.ERROR, "NVML: GPU is lost (code 15)")
    assert states[4] is FeedState.LIVE


# --- the demo's GPU host ------------------------------------------------------------------------------


async def test_the_demo_gpu_host_answers_like_nvidia_smi(tmp_path) -> None:
    host = GpuHost(seed=4, load=TRAINING_LOAD, count=2, clock=lambda: 30.0)
    async with host.serve(tmp_path / "server") as server, make_pool(server, tmp_path) as pool:
        one_round = await pool.run("vm", server.target, "nvidia-smi --query-gpu=index,uuid --format=csv,noheader")
        apps = await pool.run("vm", server.target, "nvidia-smi --query-compute-apps=pid --format=csv,noheader")
        listing = await pool.run("vm", server.target, "nvidia-smi -L")
        missing = await pool.run("vm", server.target, "rocm-smi --showtemp")
    assert one_round.ok and one_round.stdout.count("\n") == 2 and one_round.stdout.startswith("0, GPU-")
    assert [p.gpu_uuid for p in parse_compute_apps(apps.stdout)] == [gpu.uuid for gpu in host.gpus]
    assert listing.stdout.startswith(f"GPU 0: NVIDIA GeForce RTX 4090 (UUID: {host.gpus[0].uuid})")
    assert missing.exit_status == 127 and "command not found" in missing.stderr


async def test_a_flaky_demo_host_drops_its_connection_and_the_feed_comes_back(tmp_path) -> None:
    host = GpuHost(seed=5, flaky=True, flap_every_s=0.3, flap_down_s=0.15)
    async with (
        host.serve(tmp_path / "server") as server,
        remote_feed(server, tmp_path, processes_interval_s=3600) as feed,
    ):
        states: list[FeedState] = []
        feed.on_change = lambda f: states.append(f.view(now()).state)
        await wait_for(lambda: server.connections_made >= 2 and feed.state is FeedState.LIVE)
    assert FeedState.STALE in states and states[-1] is FeedState.LIVE
