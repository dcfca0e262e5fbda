"""Service health: what a check found, and where each kind of service is checked.

Where a kind is checked (FLEET.md, "Health checks"):

| kind | GET | notes |
|---|---|---|
| `ollama` | `<url>/api/version` | JSON `{"version": "0.12.6"}`: the version is shown |
| `mlflow` | `<url>/health` | text `OK` |
| `openai` | `<root>/health`, then `<root>/readyz` | see below |
| `http` | the configured URL itself | Open WebUI: `http://host:3000/health` |

`openai` covers vLLM, llama.cpp and LocalAI, whose chat URL ends in `/v1`
(`http://host:8000/v1`) while their health endpoint sits at the server root: the
`/v1` is dropped (a reverse-proxy prefix before it is kept). vLLM and llama.cpp answer
`/health`; LocalAI answers `/readyz` (and `/healthz`) but not `/health`, so a 404 or 405
on `/health` moves on to `/readyz` (`health_urls` lists the candidates in order; the
checker remembers which one answered). If the configured URL already ends in a health
path (`/health`, `/healthz`, `/readyz`), it is used as it is.

How an answer reads: any 2xx is `up`; 503 is `starting` (vLLM, LocalAI and Ollama answer
503 while a model loads); every other status, a refused connection or a timeout is `down`
with the reason. `unknown` is "not checked yet" or "the check itself failed": it never
counts as healthy, nor as idle.

No secret in a URL is shown: `shown_url` drops the userinfo (`user:password@`), the
query string and the fragment, where tokens ride.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import unquote, urlsplit, urlunsplit


class HealthState(StrEnum):
    UP = "up"
    DOWN = "down"
    STARTING = "starting"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One check of one service: an immutable snapshot for the health board and the CLI."""

    name: str
    kind: str
    state: HealthState
    latency_ms: float | None = None
    """From sending the request to reading the (capped) answer; None when nothing answered."""
    version: str = ""
    """The server's version where it says one (Ollama); sanitised."""
    error: str = ""
    """Why it is not up (sanitised, one line, no credentials); empty when up."""
    checked_at: datetime | None = None
    url_shown: str = ""
    """The URL without userinfo, query or fragment (see `shown_url`)."""

    @property
    def healthy(self) -> bool:
        return self.state is HealthState.UP


@dataclass(frozen=True, slots=True)
class HealthTarget:
    """A service to check: `url` is where to connect (a local forward for `via_ssh`
    services), `shown_as` the URL to show when it differs (the one seen from the VM)."""

    name: str
    kind: str
    url: str
    shown_as: str | None = None


_HEALTH_LEAVES = ("health", "healthz", "readyz")
LOADING_STATUS = 503


def unchecked(name: str, kind: str, url: str) -> ServiceHealth:
    """The health of a service before its first check."""
    return ServiceHealth(name, kind, HealthState.UNKNOWN, url_shown=shown_url(url))


def state_for_status(status: int) -> HealthState:
    """2xx: up; 503: starting (a server loading its model); anything else: down."""
    if 200 <= status < 300:
        return HealthState.UP
    if status == LOADING_STATUS:
        return HealthState.STARTING
    return HealthState.DOWN


def health_urls(kind: str, configured_url: str) -> tuple[str, ...]:
    """The URLs to GET for a service, in the order to try them (the next on 404/405)."""
    split = urlsplit(configured_url.strip())
    path = split.path.rstrip("/")
    if kind == "http":
        return (configured_url.strip(),)
    if kind == "openai":
        if path.rsplit("/", 1)[-1] in _HEALTH_LEAVES:
            return (_with_path(split, path),)
        root = path.removesuffix("/v1")
        return (_with_path(split, root + "/health"), _with_path(split, root + "/readyz"))
    if kind == "ollama":
        return (_with_path(split, path + "/api/version"),)
    return (_with_path(split, path + "/health"),)  # mlflow, and any kind added later


def health_path(kind: str, configured_url: str) -> str:
    """The first URL to check a service on (see `health_urls` for the fallbacks)."""
    return health_urls(kind, configured_url)[0]


def _with_path(split, path: str) -> str:
    return urlunsplit((split.scheme, split.netloc, path, "", ""))


def shown_url(url: str) -> str:
    """`url` without userinfo, query or fragment: what may appear on screen and in logs."""
    try:
        split = urlsplit(url.strip())
        host = split.hostname or ""
        port = split.port
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((split.scheme, netloc, split.path, "", ""))


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of `url` that may be secret (username, password, query values), for redaction."""
    try:
        split = urlsplit(url)
        parts = [split.username or "", split.password or ""]
    except ValueError:
        return ()
    parts += [pair.partition("=")[2] for pair in split.query.split("&")]
    parts += [unquote(part) for part in parts]
    # Longest first, so a secret is masked whole before a part of it; shorter than 3
    # characters is too likely an ordinary word in a message to mask.
    return tuple(sorted({part for part in parts if len(part) >= 3}, key=len, reverse=True))
