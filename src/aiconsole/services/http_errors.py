"""What went wrong with an HTTP connection itself, said plainly: one wording for every client.

`transport_problem(exc, doing, peer)` -> (message, retryable) for a refused connection, a
timeout, a peer that closed without answering, or a stream cut off; None for anything
else (the caller knows its own protocol's errors). Every one of these is retryable.
"""

from __future__ import annotations

import httpx


def transport_problem(exc: BaseException, doing: str, peer: str, cut_hint: str = "") -> tuple[str, bool] | None:
    if isinstance(exc, (ConnectionError, httpx.ConnectError)):
        return f"{doing}: cannot reach {peer} (connection refused)", True
    if isinstance(exc, httpx.TimeoutException):
        return f"{doing}: {peer} did not answer in time", True
    if isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc):
        # Through an SSH forward this is what a service that is not listening looks like:
        # the forward accepts, the VM's side is refused, the connection closes.
        return f"{doing}: no answer from {peer} (is it running?)", True
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return f"{doing}: the connection dropped mid-answer{cut_hint}", True
    return None
