"""Port forwards through the VM's SSH connection, and `Endpoints`, against loopback servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from aiconsole.demo.httpserver import LoopbackHttpServer, Request, Response
from aiconsole.demo.ssh_server import LoopbackSshServer
from aiconsole.services.endpoints import Endpoints, UnknownService, forward_destination, forwarded_url
from aiconsole.services.ssh import SshError, SshPool, SshUnavailable


async def health(request: Request) -> Response:
    return Response(200, {"path": request.path, "query": request.query})


async def no_commands(command, process) -> int:
    return 127


@pytest.fixture
async def ssh_server(tmp_path: Path):
    async with LoopbackSshServer(tmp_path / "server", no_commands) as server:
        yield server


@pytest.fixture
async def http_server():
    async with LoopbackHttpServer(health) as server:
        yield server


@pytest.fixture
async def pool(ssh_server: LoopbackSshServer, tmp_path: Path):
    async def no_wait(delay: float) -> None:
        await asyncio.sleep(0)

    async with SshPool(
        known_hosts=ssh_server.known_hosts_path, config_file=tmp_path / "no-config",
        client_keys=[ssh_server.client_key_path], use_agent=False, sleep=no_wait,
    ) as pool:
        yield pool


async def reconnect(pool: SshPool, server: LoopbackSshServer) -> None:
    """Cut the connection and wait until the pool has opened a new one."""
    made = server.connections_made
    server.drop_connections()
    for _ in range(300):
        if server.connections_made > made:
            break
        await asyncio.sleep(0.01)
    await pool.connection("vm", server.target)  # waits for the attempt in progress
    assert pool.status("vm").state == "up"


def http_port(server: LoopbackHttpServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5.0) as client:
        return await client.get(url)


async def test_forward_answers_and_is_kept(pool, ssh_server, http_server) -> None:
    host, port = await pool.forward("vm", ssh_server.target, "127.0.0.1", http_port(http_server))
    assert host == "127.0.0.1" and port != http_port(http_server)
    response = await get(f"http://{host}:{port}/health?x=1")
    assert response.json() == {"path": "/health", "query": {"x": "1"}}
    assert await pool.forward("vm", ssh_server.target, "127.0.0.1", http_port(http_server)) == (host, port)
    assert ssh_server.connections_made == 1


async def test_forward_works_again_after_a_reconnect(pool, ssh_server, http_server) -> None:
    before = await pool.forward("vm", ssh_server.target, "127.0.0.1", http_port(http_server))
    await reconnect(pool, ssh_server)  # waits for the reconnect
    after = await pool.forward("vm", ssh_server.target, "127.0.0.1", http_port(http_server))
    assert after == before  # the same local port, listened on again
    assert (await get(f"http://{after[0]}:{after[1]}/again")).json()["path"] == "/again"
    assert ssh_server.connections_made == 2


async def test_forward_reopened_before_anyone_asks(pool, ssh_server, http_server) -> None:
    host, port = await pool.forward("vm", ssh_server.target, "127.0.0.1", http_port(http_server))
    await reconnect(pool, ssh_server)
    assert (await get(f"http://{host}:{port}/kept")).status_code == 200


async def test_a_closed_remote_port_fails_the_request_not_the_ssh(pool, ssh_server, http_server) -> None:
    url = http_server.url
    await http_server.close()
    host, port = await pool.forward("vm", ssh_server.target, "127.0.0.1", int(url.rsplit(":", 1)[1]))
    with pytest.raises(httpx.HTTPError):
        await get(f"http://{host}:{port}/")
    assert pool.status("vm").state == "up"


async def test_forward_refused_by_the_server_is_an_ssh_error(pool, ssh_server, http_server) -> None:
    ssh_server.allow_forwarding = False
    host, port = await pool.forward("vm", ssh_server.target, "127.0.0.1", http_port(http_server))
    with pytest.raises(httpx.HTTPError):  # asyncssh refuses per connection through the listener
        await get(f"http://{host}:{port}/")
    assert pool.status("vm").state == "up"


async def test_endpoints_give_direct_and_forwarded_urls(pool, ssh_server, http_server) -> None:
    endpoints = Endpoints(pool)
    endpoints.add("vm", "direct", http_server.url + "/health")
    endpoints.add("vm", "tunnel", f"http://127.0.0.1:{http_port(http_server)}/api/version?v=1",
                  via_ssh=True, ssh=ssh_server.target)
    assert await endpoints.url("vm", "direct") == http_server.url + "/health"
    url = await endpoints.url("vm", "tunnel")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api/version?v=1")
    assert url != f"http://127.0.0.1:{http_port(http_server)}/api/version?v=1"
    assert (await get(url)).json() == {"path": "/api/version", "query": {"v": "1"}}
    with pytest.raises(UnknownService, match="nope"):
        await endpoints.url("vm", "nope")


async def test_endpoints_without_ssh_raise_ssh_unavailable() -> None:
    endpoints = Endpoints(None)
    endpoints.add("vm", "svc", "http://127.0.0.1:1/", via_ssh=True, ssh="me@host")
    with pytest.raises(SshUnavailable):
        await endpoints.url("vm", "svc")
    with pytest.raises(ValueError, match="no ssh target"):
        endpoints.add("vm", "bad", "http://127.0.0.1:1/", via_ssh=True)


def test_url_helpers() -> None:
    assert forward_destination("http://127.0.0.1:11434") == ("127.0.0.1", 11434)
    assert forward_destination("https://internal.host/v1") == ("internal.host", 443)
    assert forward_destination("http://[::1]/x") == ("::1", 80)
    assert forwarded_url("http://10.0.0.2:8000/v1/models?a=b", "127.0.0.1", 4321) == "http://127.0.0.1:4321/v1/models?a=b"


def test_ssh_error_is_the_base(pool) -> None:
    assert issubclass(SshUnavailable, SshError)
