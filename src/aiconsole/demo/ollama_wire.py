"""How a real Ollama (0.12.x) writes times, reads durations and frames streams; for `FakeOllama`.

Sources (github.com/ollama/ollama): times are Go `time.Time` marshalled as RFC 3339 with
nanoseconds (`modified_at` and `expires_at` in the server's local zone, `created_at` in
UTC); `keep_alive` is `api.Duration` (api/types.go): a number is seconds, a string is Go's
`time.ParseDuration`, and anything negative means "keep loaded forever", saturating at
the largest Go duration (so `expires_at` lands ~292 years ahead); streams are NDJSON,
one JSON object per line (server/routes.go `streamResponse`), and an error after the
stream began is one more line, `{"error": ...}`, on the 200 already sent; with
`"stream": false` the last object comes alone, or the error with a 500 (`waitForStream`).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiconsole.demo.httpserver import DropConnection, Response

Event = dict[str, Any]

FOREVER_S = (2**63 - 1) / 1e9
"""`math.MaxInt64` nanoseconds: the keep-alive a negative value stands for."""
DEFAULT_KEEP_ALIVE_S = 300.0
"""Ollama's default (`OLLAMA_KEEP_ALIVE` unset): 5 minutes."""

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")
_TOKEN = re.compile(r"\s*\S+|\s+")


def go_time(epoch_s: float, *, utc: bool = False) -> str:
    """RFC 3339 as Go writes it: nanoseconds with trailing zeros cut, `Z` for a zero offset."""
    whole = math.floor(epoch_s)
    seconds, nanos = divmod(whole * 10**9 + round((epoch_s - whole) * 1e9), 10**9)  # no float ns product
    moment = datetime.fromtimestamp(seconds, UTC)
    if not utc:
        moment = moment.astimezone()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    offset = moment.strftime("%z")
    if utc or offset in ("", "+0000"):
        return text + "Z"
    return f"{text}{offset[:3]}:{offset[3:]}"


def keep_alive_s(value: object, default: float = DEFAULT_KEEP_ALIVE_S) -> float:
    """Seconds a model stays loaded after a request; ValueError/TypeError carry Ollama's message."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"Unsupported type: '{type(value).__name__}'")
    seconds = float(value) if not isinstance(value, str) else go_duration_s(value)
    return FOREVER_S if seconds < 0 else seconds


def go_duration_s(text: str) -> float:
    """Go's `time.ParseDuration` ("1h30m", "300ms", "-1m", "0"), in seconds."""
    quoted = json.dumps(text)
    body = text[1:] if text[:1] in "+-" else text
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"time: invalid duration {quoted}")
    total, pos = 0.0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            raise ValueError(f"time: invalid duration {quoted}")
        number, unit = match.groups()
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {json.dumps(unit)} in duration {quoted}")
        total += float(number) * _UNITS[unit]
        pos = match.end()
    return sign * total


def tokens(text: str) -> list[str]:
    """Word-sized pieces, whitespace kept in front, that join back to `text` exactly."""
    return _TOKEN.findall(text)


def ndjson(event: dict[str, object]) -> bytes:
    """One line of an Ollama stream. Non-ASCII goes out as UTF-8, as Go writes it (Go also
    escapes `<`, `>` and `&` as `\\u003c`...: the same JSON once parsed)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class Fault:
    """A planned failure of one stream."""

    after: int
    """Events sent before it strikes."""
    message: str | None
    """The error line to send; None: cut the connection."""
    hold: bool = False
    """Instead: send nothing more and keep the stream open (a model stuck thinking) until
    the client leaves."""


async def faulted(events: AsyncIterator[Event], fault: Fault | None) -> AsyncIterator[Event]:
    """`events`, until `fault` strikes: an error line that ends the stream, or a cut."""
    async with aclosing(events):  # type: ignore[type-var]
        sent = 0
        while True:
            if fault is not None and sent >= fault.after:  # checked before the next event is made
                if fault.hold:
                    await asyncio.Event().wait()  # until the client goes (the server cancels us)
                if fault.message is None:
                    raise DropConnection()
                yield {"error": fault.message}
                return
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            yield event
            sent += 1


async def lines(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """The body of a streamed answer."""
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            yield ndjson(event)


def streamed(events: AsyncIterator[Event]) -> Response:
    return Response(200, lines(events), {"Content-Type": "application/x-ndjson"})


async def single(events: AsyncIterator[Event], join: Callable[[Event, list[Event]], Event] | None = None) -> Response:
    """`"stream": false`: the last event (or `join` of it and all), or the error line as a 500."""
    seen: list[Event] = []
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if "error" in event:
                return Response(500, {"error": event["error"]})
            seen.append(event)
    last = seen[-1] if seen else {}
    return Response(200, join(last, seen) if join is not None else last)
