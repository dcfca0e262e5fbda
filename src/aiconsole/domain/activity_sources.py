"""Two activity sources read off a VM, as pure functions: login sessions (`who`) and Ollama's keep-alive.

**Login sessions.** `parse_who(text)` reads what `who` printed on the VM and keeps the
sessions that sit on a terminal: `pts/3`, `tty1`, `ttyS0`, `hvc0`, `console`, an X display
`:0`. The console's own SSH work never shows there: it runs commands on exec channels
without a pty, which make no utmp entry, so a utmp-reading `who` does not list them. A
`who` that reads logind instead of utmp (coreutils built with systemd) does list such a
session, with the service's name where the terminal would be (`aiconsole sshd 2026-… (host)`)
and no terminal at all: those lines, and seat lines (`seat0`: the same graphical session
again), are not logins and are skipped. An interactive SSH login there reads
`alice sshd pts/0 …`: its terminal is found in the first two words after the user.

`who` output is remote text: lines are never trusted to be well formed, names are
sanitised, and nothing here raises, whatever bytes came back.

**Ollama's keep-alive.** A model loaded with a finite keep-alive was used recently (each
request pushes `expires_at` on), so it holds the VM busy until its `expires_at`. A model
pinned with `keep_alive = -1` (Ollama sends a far-off date, which `OllamaModels.loaded`
turns into None) says nothing about use: it stays loaded whether anyone uses it or not, so
counting it would keep its VM running for good. The same goes for any `expires_at` more
than `PINNED_HORIZON` ahead. `expires_at` comes from the VM's clock; a VM whose clock runs
ahead holds a little longer, never less.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from aiconsole.domain.models import LoadedModel
from aiconsole.domain.sanitize import sanitize_line

__all__ = [
    "MAX_WHO_LINES",
    "PINNED_HORIZON",
    "LoginSession",
    "holding_models",
    "keepalive_detail",
    "keepalive_until",
    "parse_who",
    "sessions_detail",
]

PINNED_HORIZON = timedelta(hours=24)
"""A keep-alive running out further ahead than this is a pin (`keep_alive = -1`, or a day or
more on purpose): it says nothing about use and does not hold the VM busy."""

MAX_WHO_LINES = 10_000
"""Lines of `who` read at most; a host printing more is not a login table (bounds the work)."""

_MAX_USER = 64
_MAX_NAMES_SHOWN = 3
_MAX_NAMES_CHARS = 32
_MAX_MODEL_NAME = 60

# Terminal lines as `who` prints them on Linux, the BSDs and macOS: pts/N (also ptsN), ttyN,
# ttyS0, ttys001, ttyAMA0, hvc0/xvc0 (a cloud VM's serial console), console, vc/N, and an X
# display (:0, :1.0). A service name (sshd, login, cron) or a seat (seat0) is none of these.
_TERMINAL = re.compile(r"(?:pts/?\d+|tty[A-Za-z0-9/]*|[hx]vc\d+|console|vc/\d+|:\d+(?:\.\d+)?)")
_SAFE_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")


@dataclass(frozen=True, slots=True)
class LoginSession:
    """One login on the VM, as a line of `who` shows it (all fields sanitised, one line each)."""

    user: str
    terminal: str
    host: str = ""
    """Where it came from (the text in parentheses), empty for a local login."""


def parse_who(text: str) -> tuple[LoginSession, ...]:
    """The login sessions in `who`'s output, in its order; lines that are not logins are
    skipped (see the module's docstring). Never raises."""
    if not isinstance(text, str):
        return ()
    sessions = []
    for number, line in enumerate(text.splitlines()):
        if number >= MAX_WHO_LINES:
            break
        session = _session(line)
        if session is not None:
            sessions.append(session)
    return tuple(sessions)


def _session(line: str) -> LoginSession | None:
    words = line.split()
    if len(words) < 2 or (words[0] == "USER" and words[1] == "TTY"):  # empty, junk, BusyBox's header
        return None
    terminal = next((word for word in words[1:3] if _TERMINAL.fullmatch(word)), None)
    if terminal is None:
        return None
    last = words[-1]
    host = last[1:-1] if len(words) > 2 and len(last) > 2 and last[0] == "(" and last[-1] == ")" else ""
    return LoginSession(sanitize_line(words[0], _MAX_USER), terminal, sanitize_line(host, 255))


def sessions_detail(sessions: Iterable[LoginSession]) -> str:
    """The count, as "1 SSH session" or "2 SSH sessions (alice, bob)": the users are named when
    there are at most three, each a plain user name, and they are short together."""
    sessions = tuple(sessions)
    if not sessions:
        return "no SSH session"
    count = f"{len(sessions)} SSH session{'s' if len(sessions) != 1 else ''}"
    users = list(dict.fromkeys(session.user for session in sessions))
    named = ", ".join(users)
    if (
        len(users) <= _MAX_NAMES_SHOWN
        and len(named) <= _MAX_NAMES_CHARS
        and all(_SAFE_USER.fullmatch(user) for user in users)
    ):
        return f"{count} ({named})"
    return count


def holding_models(loaded: Iterable[LoadedModel], now: datetime) -> tuple[LoadedModel, ...]:
    """The loaded models whose keep-alive holds the VM busy at `now`: expiring after `now`
    and within `PINNED_HORIZON` (a pinned model, or one already expired, does not)."""
    now = _aware(now)
    horizon = now + PINNED_HORIZON
    return tuple(
        model for model in loaded if model.expires_at is not None and now < _aware(model.expires_at) <= horizon
    )


def keepalive_until(loaded: Iterable[LoadedModel], now: datetime) -> datetime | None:
    """When the last holding keep-alive runs out; None when no model holds the VM."""
    holding = holding_models(loaded, now)
    if not holding:
        return None
    return max(_aware(model.expires_at) for model in holding if model.expires_at is not None)


def keepalive_detail(loaded: Iterable[LoadedModel], now: datetime, tz: tzinfo | None = None) -> str:
    """What holds the VM, as "llama3.1:8b loaded (keep-alive to 14:05)" or "2 models loaded
    (keep-alive to 14:05)": the time in `tz`; without one, in UTC and saying so. Empty when
    no model holds the VM."""
    holding = holding_models(loaded, now)
    until = keepalive_until(holding, now)
    if until is None:
        return ""
    clock = until.astimezone(tz).strftime("%H:%M") if tz is not None else until.astimezone(UTC).strftime("%H:%M UTC")
    if until - _aware(now) >= timedelta(hours=12):  # past the same time tomorrow, a clock time alone misleads
        clock = until.astimezone(tz or UTC).strftime("%a ") + clock
    if len(holding) == 1:
        what = sanitize_line(holding[0].name, _MAX_MODEL_NAME) or "a model"
    else:
        what = f"{len(holding)} models"
    return f"{what} loaded (keep-alive to {clock})"


def _aware(moment: datetime) -> datetime:
    """A naive time taken as UTC (Ollama always sends an offset; this only keeps us from raising)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
