"""A small HTTP/1.1 server on loopback, with no dependency outside the standard library.

It ships inside the app for `aiconsole --demo` and is the wire-level peer of the tests:
the real clients (httpx, ollama, ...) talk to it over a real socket, so nothing above
the socket is mocked. It does what those clients need and no more: keep-alive (httpx
reuses connections), Content-Length and chunked bodies both ways, a streamed body
(an async iterator of bytes, sent chunked: NDJSON, SSE), and `DropConnection` for
handlers that must cut a connection mid-answer. A handler that raises answers 500;
the server keeps serving.

    async with LoopbackHttpServer(handler) as server:
        httpx.get(server.url + "/path")
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger(__name__)

Body = bytes | str | dict | list | AsyncIterable[bytes] | None
Handler = Callable[["Request"], Awaitable["Response"]]

_MAX_BODY = 16 * 1024 * 1024


class DropConnection(Exception):
    """Raise from a handler, or from inside a streamed body, to cut the connection abruptly."""


class _BadRequest(ValueError):
    pass


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only header mapping (the last value wins on repeats)."""

    def __init__(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        self._items = {name.lower(): value for name, value in items}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Request:
    method: str
    path: str
    """Percent-decoded path, without the query string."""
    query: dict[str, str] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    raw_path: str = ""
    """The path as sent (still percent-encoded); the router splits this one."""
    path_params: dict[str, str] = field(default_factory=dict)
    """Filled by `Router` from `{name}` captures."""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", errors="replace")))


@dataclass
class Response:
    status: int = 200
    body: Body = b""
    """bytes, str (UTF-8 text), dict/list (JSON) or an async iterator of bytes (chunked)."""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    """Reason phrase; empty for the standard one (Proxmox puts its error text here)."""


class Router:
    """Routes `METHOD /path/{param}` to handlers; a handler for an unknown path answers 404."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, tuple[str, ...], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), _segments(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    async def __call__(self, request: Request) -> Response:
        segments = _segments(request.raw_path or request.path)
        allowed: list[str] = []
        for method, pattern, handler in self._routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            request.path_params = params
            return await handler(request)
        if allowed:
            return Response(405, {"error": "method not allowed"}, {"Allow": ", ".join(allowed)})
        return Response(404, {"error": f"no route for {request.path}"})


def _segments(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.strip("/").split("/") if part)


def _match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            params[expected[1:-1]] = unquote(actual)
        elif expected != actual:
            return None
    return params


class LoopbackHttpServer:
    """Serves `handler` on 127.0.0.1 (port 0 = any free port) until `close()`."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host, self._port = host, port
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.connections_opened = 0
        """How many TCP connections clients opened (tests use it to see keep-alive work)."""
        self.requests_served = 0

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("server not bound: call bind() or start() first")
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def bind(self) -> LoopbackHttpServer:
        """Take the port now, no event loop needed, so `url` is known before `start()`.

        Clients that connect before `start()` wait in the listen backlog.
        """
        if self._socket is None:
            self._socket = socket.create_server((self._host, self._port))
        return self

    async def start(self) -> LoopbackHttpServer:
        self.bind()
        self._server = await asyncio.start_server(self._serve, sock=self._socket)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> LoopbackHttpServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_opened += 1
        # Small answers must not wait out Nagle + delayed ACK (40 ms each); asyncio sets
        # this on sockets it creates itself, not on those accepted from a bind()-ed one.
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._serve_one(reader, writer):
                pass
        except DropConnection:
            writer.transport.abort()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            writer.transport.abort()
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection should close."""
        try:
            request = await _read_request(reader)
        except ValueError as exc:  # malformed framing, or a line past the reader's limit
            await _write(writer, Response(400, f"bad request: {exc}"), head_only=False, keep_alive=False)
            return False
        if request is None:
            return False
        response = await self._dispatch(request)
        keep_alive = request.headers.get("connection", "").lower() != "close"
        await _write(writer, response, head_only=request.method == "HEAD", keep_alive=keep_alive)
        self.requests_served += 1
        return keep_alive

    async def _dispatch(self, request: Request) -> Response:
        try:
            response = await self._handler(request)
        except DropConnection:
            raise
        except Exception:  # a broken handler must answer 500, never end the server
            log.exception("loopback handler failed on %s %s", request.method, request.path)
            return Response(500, {"error": "internal error in loopback handler"})
        if not isinstance(response, Response):
            log.error("loopback handler returned %r, not a Response", type(response))
            return Response(500, {"error": "handler returned no response"})
        return response


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line.strip():
        return None
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise _BadRequest("malformed request line") from None
    pairs: list[tuple[str, str]] = []
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, sep, value = header.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest("malformed header line")
        pairs.append((name.strip(), value.strip()))
    headers = Headers(pairs)
    split = urlsplit(target)
    return Request(
        method=method.upper(),
        path=unquote(split.path),
        query=dict(parse_qsl(split.query)),
        headers=headers,
        body=await _read_body(reader, headers),
        raw_path=split.path,
    )


async def _read_body(reader: asyncio.StreamReader, headers: Headers) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest("bad Content-Length") from None
    if length > _MAX_BODY:
        raise _BadRequest("body too large")
    return await reader.readexactly(length) if length else b""


def _encode(body: Body, headers: dict[str, str]) -> bytes:
    if isinstance(body, (dict, list)):
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(body).encode()
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body.encode()
    if body is None or isinstance(body, bytes):
        return body or b""
    raise TypeError(f"cannot send a {type(body).__name__} body")


async def _write(
    writer: asyncio.StreamWriter, response: Response, *, head_only: bool, keep_alive: bool
) -> None:
    headers = {"Server": "aiconsole-loopback"} | response.headers
    headers["Connection"] = "keep-alive" if keep_alive else "close"
    body = response.body
    stream = body if isinstance(body, AsyncIterable) else None
    if stream is not None:
        headers["Transfer-Encoding"] = "chunked"
        payload = b""
    else:
        payload = _encode(body, headers)
        headers["Content-Length"] = str(len(payload))
    reason = response.reason or status_phrase(response.status)
    lines = [f"HTTP/1.1 {response.status} {_one_line(reason)}"]
    lines += [f"{_one_line(name)}: {_one_line(value)}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
    writer.write(head if head_only else head + payload)
    await writer.drain()
    if stream is not None and not head_only:
        await _write_chunks(writer, stream)


async def _write_chunks(writer: asyncio.StreamWriter, body: AsyncIterable[bytes]) -> None:
    try:
        async for chunk in body:
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
    except (DropConnection, ConnectionError):  # ConnectionError: the client left, as clients may
        raise
    except Exception:  # headers are out: the only honest way to fail now is to cut
        log.exception("streamed body failed mid-answer")
        raise DropConnection() from None
    finally:  # a generator left half-read still gets to run its cleanup
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")
