"""The loopback HTTP server against httpx, over a real socket."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from aiconsole.demo.faults import FaultPlan
from aiconsole.demo.httpserver import (
    DropConnection,
    LoopbackHttpServer,
    Request,
    Response,
    Router,
)


async def echo(request: Request) -> Response:
    return Response(
        200,
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "agent": request.headers.get("USER-AGENT", ""),
            "body": request.body.decode(),
        },
    )


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


async def test_serves_json_with_query_and_case_insensitive_headers(client):
    async with LoopbackHttpServer(echo) as server:
        assert server.url.startswith("http://127.0.0.1:")
        response = await client.post(
            server.url + "/a/b%20c?x=1&y=two", content=b"hello", headers={"User-Agent": "t/1"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "method": "POST",
        "path": "/a/b c",
        "query": {"x": "1", "y": "two"},
        "agent": "t/1",
        "body": "hello",
    }


async def test_str_and_bytes_bodies_and_custom_reason():
    async def handler(request: Request) -> Response:
        if request.path == "/text":
            return Response(200, "héllo")
        return Response(
            500, b"raw", {"Content-Type": "application/octet-stream"}, reason="Configuration file gone"
        )

    async with LoopbackHttpServer(handler) as server, httpx.AsyncClient() as client:
        text = await client.get(server.url + "/text")
        raw = await client.get(server.url + "/raw")
    assert text.text == "héllo" and text.headers["content-type"].startswith("text/plain")
    assert raw.content == b"raw" and raw.reason_phrase == "Configuration file gone"


async def test_keep_alive_reuses_one_connection(client):
    async with LoopbackHttpServer(echo) as server:
        for _ in range(5):
            assert (await client.get(server.url + "/")).status_code == 200
        assert server.connections_opened == 1
        assert server.requests_served == 5


async def test_connection_close_is_honoured(client):
    async with LoopbackHttpServer(echo) as server:
        for _ in range(2):
            response = await client.get(server.url + "/", headers={"Connection": "close"})
            assert response.headers["connection"] == "close"
        assert server.connections_opened == 2


async def test_streamed_body_is_sent_chunked(client):
    async def lines():
        for index in range(3):
            yield (json.dumps({"n": index}) + "\n").encode()
            await asyncio.sleep(0)

    async def handler(request: Request) -> Response:
        return Response(200, lines(), {"Content-Type": "application/x-ndjson"})

    async with LoopbackHttpServer(handler) as server:
        async with client.stream("GET", server.url + "/stream") as response:
            assert response.headers["transfer-encoding"] == "chunked"
            received = [json.loads(line) async for line in response.aiter_lines() if line]
        assert received == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert (await client.get(server.url + "/stream")).status_code == 200  # connection still fine


async def test_drop_mid_stream_cuts_the_connection_and_server_goes_on(client):
    async def cut_off():
        yield b'{"n": 0}\n'
        raise DropConnection()

    async def handler(request: Request) -> Response:
        return Response(200, cut_off()) if request.path == "/cut" else Response(200, {"ok": True})

    async with LoopbackHttpServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream("GET", server.url + "/cut") as response:
                async for _ in response.aiter_bytes():
                    pass
        assert (await client.get(server.url + "/after")).json() == {"ok": True}


async def test_client_leaving_mid_stream_closes_the_generator_quietly(client, caplog):
    closed = asyncio.Event()

    async def endless():
        try:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    async def handler(request: Request) -> Response:
        return Response(200, endless(), {"Content-Type": "text/event-stream"})

    async with LoopbackHttpServer(handler) as server:
        async with client.stream("GET", server.url + "/events") as response:
            async for _ in response.aiter_bytes():
                break
        await asyncio.wait_for(closed.wait(), 2.0)
    assert "Traceback" not in caplog.text


async def test_malformed_request_gets_400():
    async with LoopbackHttpServer(echo) as server:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 400")


async def test_bind_gives_the_url_before_start(client):
    server = LoopbackHttpServer(echo).bind()
    url = server.url
    await server.start()
    try:
        assert server.url == url
        assert (await client.get(url + "/early")).json()["path"] == "/early"
    finally:
        await server.close()


async def test_drop_before_answering(client):
    async def handler(request: Request) -> Response:
        raise DropConnection()

    async with LoopbackHttpServer(handler) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url + "/")


async def test_handler_exception_is_a_500_and_server_survives(client, caplog):
    async def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("kaboom")
        return Response(200, {"ok": True})

    async with LoopbackHttpServer(handler) as server:
        response = await client.get(server.url + "/boom")
        assert response.status_code == 500
        assert (await client.get(server.url + "/fine")).json() == {"ok": True}
    assert "kaboom" in caplog.text


async def test_chunked_request_body_is_read(client):
    async def parts():
        yield b'{"a": '
        yield b"1}"

    async def handler(request: Request) -> Response:
        return Response(200, {"got": request.json()})

    async with LoopbackHttpServer(handler) as server:
        response = await client.post(server.url + "/", content=parts())
    assert response.json() == {"got": {"a": 1}}


async def test_form_body():
    async def handler(request: Request) -> Response:
        return Response(200, request.form())

    async with LoopbackHttpServer(handler) as server, httpx.AsyncClient() as client:
        response = await client.post(server.url + "/", data={"timeout": 120, "overrule-shutdown": 1})
    assert response.json() == {"timeout": "120", "overrule-shutdown": "1"}


async def test_router_captures_and_404_405(client):
    router = Router()

    @router.route("GET", "/nodes/{node}/tasks/{upid}/status")
    async def task(request: Request) -> Response:
        return Response(200, request.path_params)

    async with LoopbackHttpServer(router) as server:
        upid = "UPID:pve:0001:00AB:65F0:qmstart:101:root@pam!x:"
        found = await client.get(f"{server.url}/nodes/pve/tasks/{upid.replace(':', '%3A')}/status")
        missing = await client.get(server.url + "/nodes/pve/nothing")
        wrong = await client.post(server.url + "/nodes/pve/tasks/x/status")
    assert found.json() == {"node": "pve", "upid": upid}
    assert missing.status_code == 404
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"


async def test_fault_plan_plays_faults_in_order_then_answers(client):
    faults = FaultPlan()
    faults.fail_next(503, headers={"Retry-After": "3"})
    faults.garble_next()
    faults.drop_next()
    faults.delay_next(0.05)
    async with LoopbackHttpServer(faults.wrap(echo)) as server:
        failed = await client.get(server.url + "/")
        garbled = await client.get(server.url + "/")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url + "/")
        started = time.monotonic()
        delayed = await client.get(server.url + "/x")
        elapsed = time.monotonic() - started
        normal = await client.get(server.url + "/y")
    assert failed.status_code == 503 and failed.headers["retry-after"] == "3"
    assert garbled.status_code == 200 and garbled.text.startswith("<html>")
    assert delayed.json()["path"] == "/x" and elapsed >= 0.05
    assert normal.json()["path"] == "/y" and faults.pending == 0


async def test_close_ends_a_slow_handler_promptly():
    async def slow(request: Request) -> Response:
        await asyncio.sleep(30)
        return Response(200)

    server = await LoopbackHttpServer(slow).start()
    async with httpx.AsyncClient() as client:
        request = asyncio.create_task(client.get(server.url + "/"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 1.0
        with pytest.raises(httpx.HTTPError):
            await request


async def test_url_before_start_is_an_error():
    with pytest.raises(RuntimeError):
        _ = LoopbackHttpServer(echo).url
