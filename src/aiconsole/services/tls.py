"""One SSL context for each way of trusting servers, shared by every HTTP client the app makes.

Why: httpx builds a new `ssl.SSLContext` for every client made with default settings and
loads certifi's CA bundle into it, even when the client only ever speaks http://. Measured
(docs/performance.md, "aiconsole watch (issue 7)"): 50 clients = 42.8 MB and 1.57 s of CPU;
a 100-VM `aiconsole watch` makes ~250 of them (RSS 295 MB); with one shared context it was
92 MB and its start-up CPU went from 13.8 to 4.3 s.

    httpx.AsyncClient(..., verify=shared_ssl_context())                 # trust_env=True (default)
    httpx.AsyncClient(..., trust_env=False, verify=shared_ssl_context(trust_env=False))

`shared_ssl_context(trust_env)` trusts exactly what httpx's own default would for a client
with that `trust_env`: it is built by `httpx.create_ssl_context(verify=True, trust_env=...)`,
so with `trust_env` `SSL_CERT_FILE` (else `SSL_CERT_DIR`) is honoured as httpx honours it,
and without it certifi's bundle is used. The variables are read on every call, as httpx reads
them for every new client; one context is built per distinct answer, on first use, and kept
for the life of the process.

Sharing is safe because nothing changes a context once built, with one exception: httpcore
sets the ALPN protocols on the context before each TLS connection, to the same
`["http/1.1"]` for every client here. A client with `http2=True` must get its own context.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable

import httpx

__all__ = ["ca_file_context", "shared_ssl_context"]

_contexts: dict[tuple[str, str | None, str | None], ssl.SSLContext] = {}
_lock = threading.Lock()  # clients are also built in worker threads: build each context once


def shared_ssl_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """The context httpx would build for `AsyncClient(trust_env=trust_env)`, built once."""
    if trust_env:
        key = ("env", os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)
    else:
        key = ("env", None, None)  # what trust_env=True gives when neither variable is set
    return _cached(key, lambda: httpx.create_ssl_context(verify=True, trust_env=trust_env))


def ca_file_context(cafile: str) -> ssl.SSLContext:
    """A context that trusts the CA bundle at `cafile` (a homelab's own CA), built once per path."""
    return _cached(("cafile", cafile, None), lambda: ssl.create_default_context(cafile=cafile))


def _cached(key: tuple[str, str | None, str | None], build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    context = _contexts.get(key)
    if context is not None:
        return context
    with _lock:
        context = _contexts.get(key)
        if context is None:  # a bad path raises here, as httpx would, and nothing is kept
            context = _contexts[key] = build()
        return context
