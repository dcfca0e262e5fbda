"""SshPool against a real asyncssh server on loopback: host keys, commands, streams, reconnects.

Nothing here reads the developer's ~/.ssh: every pool gets explicit known_hosts, config and
client key paths, and no agent.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing, suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncssh
import pytest

from aiconsole.demo.ssh_server import LoopbackSshServer
from aiconsole.services.ssh import (
    HostKeyRefused,
    SshCommandTimeout,
    SshError,
    SshPool,
    SshStatus,
    SshTarget,
    SshTargetError,
    SshUnavailable,
)

ESCAPES = "\x1b[31mred\x1b[0m \x1b]0;title\x07 [bold]markup[/bold]"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


async def script(command: str, process: asyncssh.SSHServerProcess) -> int | None:
    """What the loopback server's shell answers."""
    words = command.split()
    if command == "bad-bytes":
        process.stdout.write(b"ok \xff\xfe end\n")
    elif command == "split-utf8":  # one 2-byte character split across two channel writes
        for part in (b"caf\xc3", b"\xa9\nnext\n"):
            process.stdout.write(part)
            await process.stdout.drain()
            await asyncio.sleep(0.02)
    elif command == "escapes":
        process.stdout.write((ESCAPES + "\n").encode())
    elif words[:1] == ["round"]:  # round N: N lines in one write, as nvidia-smi writes a round
        process.stdout.write("".join(f"gpu {index}\n" for index in range(int(words[1]))).encode())
        await process.stdout.drain()
    elif words[:1] == ["lines"]:  # lines N: N lines, 20 ms apart
        for index in range(int(words[1])):
            process.stdout.write(f"line {index}\n".encode())
            await process.stdout.drain()
            await asyncio.sleep(0.02)
    elif command == "forever":
        index = 0
        while True:
            process.stdout.write(f"tick {index}\n".encode())
            await process.stdout.drain()
            index += 1
            await asyncio.sleep(0.02)
    elif words[:1] == ["sleep"]:
        await asyncio.sleep(float(words[1]))
    elif words[:1] == ["exit"]:
        process.stderr.write(b"failing on purpose\n")
        return int(words[1])
    else:
        process.stdout.write(f"ran: {command}\n".encode())
    return None


class FakeSleep:
    """Records backoff delays and returns at once; `hook(n)` runs before the n-th returns."""

    def __init__(self, hook=None) -> None:
        self.delays: list[float] = []
        self.hook = hook

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.hook is not None:
            await self.hook(len(self.delays))
        await asyncio.sleep(0)


@pytest.fixture
async def server(tmp_path: Path):
    async with LoopbackSshServer(tmp_path / "server", script) as server:
        yield server


def make_pool(server: LoopbackSshServer, tmp_path: Path, **kwargs) -> SshPool:
    options = dict(
        known_hosts=server.known_hosts_path,
        config_file=tmp_path / "no-ssh-config",
        client_keys=[server.client_key_path],
        use_agent=False,
    )
    return SshPool(**(options | kwargs))


async def wait_for(predicate, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# --- targets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu-box", SshTarget("gpu-box")),
        ("10.0.0.5:2222", SshTarget("10.0.0.5", 2222)),
        ("ubuntu@10.0.0.5", SshTarget("10.0.0.5", None, "ubuntu")),
        ("ubuntu@vm.example.com:22", SshTarget("vm.example.com", 22, "ubuntu")),
        ("root@[2001:db8::1]:2200", SshTarget("2001:db8::1", 2200, "root")),
        ("[::1]", SshTarget("::1")),
        ("::1", SshTarget("::1")),
        (" ssh://me@host:7 ", SshTarget("host", 7, "me")),
    ],
)
def test_parses_targets(text: str, expected: SshTarget) -> None:
    assert SshTarget.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "user@", "me:secret@host", "host:0", "host:70000", "host:22x", "-oProxyCommand=x", "a b",
     "[::1", "[zz]:22"],
)
def test_refuses_bad_targets(text: str) -> None:
    with pytest.raises(SshTargetError):
        SshTarget.parse(text)


def test_target_round_trips_to_text() -> None:
    assert str(SshTarget.parse("root@[2001:db8::1]:2200")) == "root@[2001:db8::1]:2200"
    assert str(SshTarget.parse("alias")) == "alias"


def test_error_messages_are_sanitised() -> None:
    assert SshError("boom \x1b[31mred\x1b]0;x\x07\nnext").message == "boom red next"


# --- connecting and host keys ----------------------------------------------------------------------


async def test_runs_commands_on_one_kept_connection(server, tmp_path) -> None:
    async with make_pool(server, tmp_path) as pool:
        assert pool.status("vm").state == "idle"
        result = await pool.run("vm", server.target, "hello world")
        assert (result.exit_status, result.stdout, result.stderr) == (0, "ran: hello world\n", "")
        assert result.ok
        failed = await pool.run("vm", server.target, "exit 3")
        assert (failed.exit_status, failed.stderr, failed.ok) == (3, "failing on purpose\n", False)
        assert pool.status("vm").state == "up"
        assert server.connections_made == 1
    assert pool.status("vm").state == "idle"


async def test_unknown_host_key_is_refused_with_its_fingerprint_and_not_retried(server, tmp_path) -> None:
    known_hosts = tmp_path / "known_hosts"  # does not exist: trusts nothing
    sleep = FakeSleep()
    async with make_pool(server, tmp_path, known_hosts=known_hosts, sleep=sleep) as pool:
        with pytest.raises(HostKeyRefused) as refused:
            await pool.connection("vm", server.target)
        message = refused.value.message
        assert server.host_key_fingerprint.startswith("SHA256:")
        assert server.host_key_fingerprint in message
        assert f"ssh-keyscan -p {server.port} 127.0.0.1 >> {known_hosts}" in message
        assert f"-p {server.port} aiconsole@127.0.0.1" in message
        assert not refused.value.changed
        status = pool.status("vm")
        assert (status.state, status.fingerprint) == ("refused", server.host_key_fingerprint)
        assert server.host_key_fingerprint in status.error

        await asyncio.sleep(0.2)  # a retry loop would have connected again by now
        assert server.connections_made == 1 and sleep.delays == []
        with pytest.raises(HostKeyRefused):
            await pool.connection("vm", server.target, wait=False)

        known_hosts.write_text(server.known_hosts_line)  # the operator accepts the key
        pool.retry("vm")
        assert (await pool.run("vm", server.target, "ok")).ok
        assert pool.status("vm").state == "up"


async def test_changed_host_key_is_refused_as_changed(server, tmp_path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {other}\n")
    async with make_pool(server, tmp_path, known_hosts=known_hosts, sleep=FakeSleep()) as pool:
        with pytest.raises(HostKeyRefused) as refused:
            await pool.run("vm", server.target, "true")
    assert refused.value.changed
    assert "CHANGED" in refused.value.message
    assert server.host_key_fingerprint in refused.value.message
    assert f"ssh-keygen -R '[127.0.0.1]:{server.port}'" in refused.value.message
    assert server.connections_made == 1


async def test_refused_connection_is_down_with_a_clear_error(server, tmp_path) -> None:
    await server.refuse_connections()
    sleep = FakeSleep()
    async with make_pool(server, tmp_path, sleep=sleep, clock=lambda: T0, random=lambda: 0.5) as pool:
        with pytest.raises(SshUnavailable, match="connection refused"):
            await pool.run("vm", server.target, "true")
        status = pool.status("vm")
        assert (status.state, status.attempts) == ("down", 1)
        assert status.next_retry_at == T0 + timedelta(seconds=2.0)
        with pytest.raises(SshUnavailable, match="connection refused"):
            await pool.connection("vm", server.target, wait=False)


async def test_a_stuck_handshake_times_out(server, tmp_path) -> None:
    server.handshake_delay = 2.0
    async with make_pool(server, tmp_path, connect_timeout_s=0.2, sleep=FakeSleep()) as pool:
        with pytest.raises(SshUnavailable, match="timed out"):
            await pool.connection("vm", server.target)
        assert pool.status("vm").state in ("down", "connecting")


async def test_alias_from_ssh_config(server, tmp_path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host gpu-box\n  HostName 127.0.0.1\n  Port {server.port}\n  User operator\n"
        f"  IdentityFile {server.client_key_path}\n  ForwardAgent yes\n"
    )
    async with make_pool(server, tmp_path, config_file=config, client_keys=None, use_agent=False) as pool:
        result = await pool.run("vm", "gpu-box", "who")
        conn = await pool.connection("vm", "gpu-box")
    assert result.stdout == "ran: who\n"
    assert conn.get_extra_info("username") == "operator"


async def test_keepalive_and_no_agent_forwarding_are_always_asked_for(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent.sock"))  # an agent that would be forwarded
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ForwardAgent yes\n  ServerAliveInterval 0\n")
    pool = make_pool(server, tmp_path, config_file=config, keepalive_s=15.0, use_agent=True)
    options = pool.connect_options(SshTarget.parse(server.target))
    assert options["agent_forwarding"] is False
    assert (options["keepalive_interval"], options["keepalive_count_max"]) == (15.0, 3)
    assert options["config"] == [str(config)]
    async with pool:
        conn = await pool.connection("vm", server.target)
        assert conn._keepalive_interval == 15.0  # private, but it is what asyncssh acts on
        assert conn._agent_forward_path is None


async def test_aes_gcm_is_preferred_unless_the_ssh_config_names_its_ciphers(server, tmp_path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ServerAliveInterval 5\n")
    async with make_pool(server, tmp_path, config_file=config) as pool:
        conn = await pool.connection("vm", server.target)
        assert conn._enc_alg_cs == b"aes128-gcm@openssh.com"  # private, but it is what was negotiated
    config.write_text("Host *\n  Ciphers chacha20-poly1305@openssh.com\n")
    pool = make_pool(server, tmp_path, config_file=config)
    assert "encryption_algs" not in pool.connect_options(SshTarget.parse(server.target))
    async with pool:
        conn = await pool.connection("vm", server.target)
        assert conn._enc_alg_cs == b"chacha20-poly1305@openssh.com"


async def test_at_most_eight_handshakes_at_once(server, tmp_path) -> None:
    server.handshake_delay = 0.15
    async with make_pool(server, tmp_path) as pool:
        await asyncio.gather(*(pool.connection(f"vm{i}", server.target) for i in range(20)))
        assert all(pool.status(f"vm{i}").state == "up" for i in range(20))
    assert server.connections_made == 20
    assert server.handshakes_max == 8


# --- output ----------------------------------------------------------------------------------------


async def test_invalid_utf8_leaves_the_connection_up(server, tmp_path) -> None:
    async with make_pool(server, tmp_path) as pool:
        result = await pool.run("vm", server.target, "bad-bytes")
        assert result.stdout == "ok \ufffd\ufffd end\n"
        assert (await pool.run("vm", server.target, "again")).stdout == "ran: again\n"
        async with pool.stream_lines("vm", server.target, "bad-bytes") as lines:
            assert [line async for line in lines] == ["ok \ufffd\ufffd end"]
        assert pool.status("vm").state == "up"
    assert server.connections_made == 1


async def test_stream_yields_lines_and_keeps_split_characters_and_escapes(server, tmp_path) -> None:
    async with make_pool(server, tmp_path) as pool:
        async with pool.stream_lines("vm", server.target, "lines 3") as lines:
            assert [line async for line in lines] == ["line 0", "line 1", "line 2"]
        assert (lines.exit_status, lines.error) == (0, "")
        async with pool.stream_lines("vm", server.target, "split-utf8") as lines:
            assert [line async for line in lines] == ["café", "next"]
        async with pool.stream_lines("vm", server.target, "escapes") as lines:
            assert [line async for line in lines] == [ESCAPES]  # sanitising is the parser's job
        async with pool.stream_lines("vm", server.target, "nvidia-smi -lms 1000") as lines:
            assert [line async for line in lines] == ["ran: nvidia-smi -lms 1000"]
        async with pool.stream_lines("vm", server.target, "exit 127") as lines:
            assert [line async for line in lines] == []
        assert lines.exit_status == 127 and "failing on purpose" in lines.stderr_tail


async def test_run_hands_each_read_to_a_callback_and_ends_with_the_command(server, tmp_path) -> None:
    async with make_pool(server, tmp_path) as pool:
        got: list[list[str]] = []
        async with pool.stream_lines("vm", server.target, "round 8") as lines:
            await lines.run(got.append)
        assert got == [[f"gpu {index}" for index in range(8)]] and lines.exit_status == 0
        async with pool.stream_lines("vm", server.target, "exit 127") as lines:
            await lines.run(got.append)
        assert lines.exit_status == 127 and "failing on purpose" in lines.stderr_tail


async def test_a_stream_closed_before_it_ran_ends_at_once_without_a_command(server, tmp_path) -> None:
    async with make_pool(server, tmp_path) as pool:
        lines = pool.stream_lines("vm", server.target, "forever")
        lines.close()
        await asyncio.wait_for(lines.run(lambda batch: None), 2)
        assert [line async for line in lines] == [] and server.commands == []


async def test_a_failing_callback_ends_the_stream_and_is_raised_not_the_connection(server, tmp_path) -> None:
    def broken(batch: list[str]) -> None:
        raise ValueError(f"a bug reading {batch[0]}")

    async with make_pool(server, tmp_path) as pool:
        async with pool.stream_lines("vm", server.target, "forever") as lines:
            with pytest.raises(ValueError, match="a bug reading tick 0"):
                await asyncio.wait_for(lines.run(broken), 5)
        await wait_for(lambda: server.running_commands == 0)  # its channel was closed: the command ended
        assert pool.status("vm").state == "up"
        assert (await pool.run("vm", server.target, "again")).stdout == "ran: again\n"


async def test_leaving_a_stream_ends_the_remote_command(server, tmp_path) -> None:
    async with make_pool(server, tmp_path) as pool:
        async with aclosing(pool.stream_lines("vm", server.target, "forever")) as lines:
            seen = []
            async for line in lines:
                seen.append(line)
                if len(seen) == 3:
                    break
        assert seen == ["tick 0", "tick 1", "tick 2"]
        await wait_for(lambda: server.running_commands == 0)
        assert pool.status("vm").state == "up"


async def test_run_timeout_raises_and_keeps_the_connection(server, tmp_path) -> None:
    async with make_pool(server, tmp_path) as pool:
        with pytest.raises(SshCommandTimeout, match="0.2 s"):
            await pool.run("vm", server.target, "sleep 5", timeout=0.2)
        assert (await pool.run("vm", server.target, "after")).ok


# --- losing the connection ---------------------------------------------------------------------------


async def test_cut_mid_stream_ends_the_stream_and_reconnects_with_backoff(server, tmp_path) -> None:
    changes: list[SshStatus] = []
    sleep = FakeSleep()
    pool = make_pool(server, tmp_path, sleep=sleep, clock=lambda: T0, random=lambda: 0.5,
                     on_change=lambda vm, status: changes.append(status))
    async with pool:
        async with pool.stream_lines("vm", server.target, "forever") as lines:
            seen = []
            async for line in lines:
                seen.append(line)
                if len(seen) == 2:
                    assert server.drop_connections() == 1
        assert seen[:2] == ["tick 0", "tick 1"]
        assert lines.error.startswith("connection lost") and lines.exit_status is None
        await pool.connection("vm", server.target)
    states = [status.state for status in changes]
    assert states == ["connecting", "up", "down", "connecting", "up", "idle"]
    down = changes[2]
    assert (down.attempts, down.next_retry_at) == (0, T0 + timedelta(seconds=1.0))
    assert "connection lost" in down.error
    assert sleep.delays == [1.0]
    assert server.connections_made == 2


async def test_backoff_doubles_while_the_server_refuses(server, tmp_path) -> None:
    async def reopen_on_third(count: int) -> None:
        if count == 3:
            await server.accept_connections()

    sleep = FakeSleep(reopen_on_third)
    changes: list[SshStatus] = []
    pool = make_pool(server, tmp_path, sleep=sleep, clock=lambda: T0, random=lambda: 0.5,
                     on_change=lambda vm, status: changes.append(status))
    async with pool:
        await pool.connection("vm", server.target)
        await server.refuse_connections()
        server.drop_connections()
        await wait_for(lambda: len(sleep.delays) >= 3 and pool.status("vm").state == "up")
    assert sleep.delays == [1.0, 2.0, 4.0]
    downs = [status for status in changes if status.state == "down"]
    assert [status.attempts for status in downs] == [0, 1, 2]
    assert [status.next_retry_at - T0 for status in downs] == [timedelta(seconds=s) for s in (1, 2, 4)]
    assert "connection refused" in downs[1].error


async def test_backoff_is_jittered_and_capped(server, tmp_path) -> None:
    pool = make_pool(server, tmp_path, random=lambda: 0.999, backoff_base_s=1.0, backoff_max_s=60.0)
    assert pool._backoff(0) == pytest.approx(1.499)
    assert pool._backoff(3) == pytest.approx(8 * 1.499)
    assert pool._backoff(40) == 60.0
    low = make_pool(server, tmp_path, random=lambda: 0.0)
    assert low._backoff(2) == 2.0


async def test_keepalive_drops_a_silent_server(server, tmp_path) -> None:
    """A peer that stops answering (frozen proxy) is noticed by keepalives, not by TCP."""
    frozen = False
    writers: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                if not frozen:  # once frozen, bytes are swallowed: the peer goes silent
                    writer.write(data)
                    await writer.drain()
        writer.transport.abort()

    async def proxy_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
        writers.extend((writer, up_writer))
        await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))

    proxy = await asyncio.start_server(proxy_client, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(server.known_hosts_line.replace(f":{server.port} ", f":{port} "))
    changes: list[str] = []
    pool = make_pool(server, tmp_path, known_hosts=known_hosts, keepalive_s=0.1, keepalive_count_max=2,
                     sleep=lambda delay: asyncio.Event().wait(),  # stay down once down
                     on_change=lambda vm, status: changes.append(status.state))
    async with pool:
        await pool.connection("vm", f"aiconsole@127.0.0.1:{port}")
        frozen = True
        await wait_for(lambda: pool.status("vm").state == "down", timeout=5)
        assert "not responding" in pool.status("vm").error.lower()
    proxy.close()
    for writer in writers:
        writer.transport.abort()
    await asyncio.gather(*handlers, return_exceptions=True)
    await proxy.wait_closed()
    assert changes[:3] == ["connecting", "up", "down"]


async def test_close_wakes_waiters_and_never_raises(server, tmp_path) -> None:
    await server.refuse_connections()
    pool = make_pool(server, tmp_path, sleep=lambda delay: asyncio.Event().wait())
    await pool.close("never-opened")
    with pytest.raises(SshUnavailable):
        await pool.connection("vm", server.target)  # the first attempt fails
    waiter = asyncio.create_task(pool.connection("vm", server.target))  # waits out the backoff
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await pool.close("vm")
    with pytest.raises(SshUnavailable, match="closed"):
        await waiter
    await pool.close("vm")
    await pool.aclose()
    assert pool.status("vm").state == "idle"


async def test_bad_target_text_is_an_ssh_error(tmp_path, server) -> None:
    async with make_pool(server, tmp_path) as pool:
        with pytest.raises(SshUnavailable, match="password"):
            await pool.connection("vm", "me:pw@host")


async def test_a_server_bound_before_the_loop_keeps_its_port_and_serves(tmp_path) -> None:
    """The demo names the port in its config before any event loop runs (`bind()`)."""
    server = LoopbackSshServer(tmp_path / "bound", script).bind()
    reserved = server.port
    async with server:
        assert server.port == reserved
        pool = make_pool(server, tmp_path)
        try:
            result = await pool.run("vm", server.target, "hello")
            assert result.ok and result.stdout.strip() == "ran: hello"
        finally:
            await pool.aclose()
