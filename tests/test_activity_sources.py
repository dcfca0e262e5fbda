"""Login sessions from `who` and Ollama keep-alives, as activity (pure; explicit times)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aiconsole.domain.activity_sources import (
    MAX_WHO_LINES,
    PINNED_HORIZON,
    LoginSession,
    holding_models,
    keepalive_detail,
    keepalive_until,
    parse_who,
    sessions_detail,
)
from aiconsole.domain.models import LoadedModel
from providers_conftest import has_no_control_chars

NOW = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
GIB = 1024**3

# --- who ------------------------------------------------------------------------------------------

GNU_UTF8 = """\
alice    pts/0        2026-11-22 12:41 (203.0.113.5)
bob      pts/3        2026-11-22 12:58 (2001:db8::7)
"""
GNU_C_LOCALE = """\
alice    pts/0        Nov 22 12:41 (203.0.113.5)
root     tty1         Nov 22 09:00
"""
# coreutils built with systemd reads logind: an SSH exec session without a pty (the console's
# own connection) shows its service where the terminal would be; an interactive login shows
# the service and its pty; a graphical session also shows its seat.
SYSTEMD_WHO = """\
aiconsole sshd         2026-11-22 12:00 (198.51.100.2)
alice    sshd pts/0   2026-11-22 12:41 (203.0.113.5)
carol    seat0        2026-11-22 08:00
carol    tty2         2026-11-22 08:00
"""
BUSYBOX_WHO = """\
USER       TTY      IDLE      TIME            HOST
root       pts/0    00:00     Nov 22 12:41:07 203.0.113.5
"""


def test_gnu_who_lines_are_sessions_with_their_terminal_and_host() -> None:
    assert parse_who(GNU_UTF8) == (
        LoginSession("alice", "pts/0", "203.0.113.5"),
        LoginSession("bob", "pts/3", "2001:db8::7"),
    )
    assert parse_who(GNU_C_LOCALE) == (LoginSession("alice", "pts/0", "203.0.113.5"), LoginSession("root", "tty1"))


def test_lines_without_a_terminal_are_not_logins_so_the_consoles_own_exec_session_is_not_counted() -> None:
    sessions = parse_who(SYSTEMD_WHO)
    assert [(s.user, s.terminal) for s in sessions] == [("alice", "pts/0"), ("carol", "tty2")]


def test_busybox_header_is_skipped_and_its_rows_are_read() -> None:
    assert parse_who(BUSYBOX_WHO) == (LoginSession("root", "pts/0"),)


@pytest.mark.parametrize(
    "terminal", ["pts/12", "tty1", "ttyS0", "ttys001", "ttyAMA0", "hvc0", "xvc0", "console", ":0", ":1.0", "vc/1"]
)
def test_every_terminal_kind_counts(terminal: str) -> None:
    assert parse_who(f"op {terminal} 2026-11-22 12:00\n") == (LoginSession("op", terminal),)


@pytest.mark.parametrize("line", ["sshd 2026-11-22", "op sshd 2026-11-22 12:00", "op seat0 x", "op", "op login"])
def test_non_login_lines_are_skipped(line: str) -> None:
    assert parse_who(line + "\n") == ()


def test_nothing_printed_is_no_session() -> None:
    assert parse_who("") == () and parse_who("\n\n   \n") == ()


def test_hostile_who_output_is_read_without_raising_and_what_it_yields_is_inert() -> None:
    hostile = (
        "\x1b]0;pwned\x07\x1b[31mmallory\x1b[0m pts/1 2026-11-22 12:00 (\x1b]52;c;Zm9v\x07evil.example)\n"
        "\x00\x01\x02 pts/2\r\n"
        "eve\u202e pts/4 2026-11-22 (x)\n"
        "\ufffd\ufffd pts/5\n"
        "(((( pts/6 ((((\n"
        "user pts/7 )(\n"
    )
    sessions = parse_who(hostile)
    assert [s.terminal for s in sessions] == ["pts/1", "pts/2", "pts/4", "pts/5", "pts/6", "pts/7"]
    assert sessions[0] == LoginSession("mallory", "pts/1", "evil.example")
    for session in sessions:
        for text in (session.user, session.terminal, session.host):
            assert has_no_control_chars(text) and "\x1b" not in text and "\u202e" not in text
            assert "\n" not in text
    detail = sessions_detail(sessions)
    assert detail == "6 SSH sessions", "names that are not plain user names are not shown"


def test_random_bytes_never_raise() -> None:
    rng = random.Random(7)
    for _ in range(300):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
        sessions = parse_who(blob.decode("utf-8", errors="replace"))
        assert all(isinstance(s, LoginSession) for s in sessions)
        sessions_detail(sessions)
    assert parse_who(None) == ()  # type: ignore[arg-type]


def test_a_huge_output_is_read_up_to_its_bound() -> None:
    text = "op pts/0 2026-11-22 12:00\n" * (MAX_WHO_LINES + 50)
    assert len(parse_who(text)) == MAX_WHO_LINES
    assert parse_who("x" * 1_000_000) == ()


def test_sessions_detail_counts_and_names_short_plain_users() -> None:
    alice, bob = LoginSession("alice", "pts/0"), LoginSession("bob", "pts/1")
    assert sessions_detail([alice]) == "1 SSH session (alice)"
    assert sessions_detail([alice, bob]) == "2 SSH sessions (alice, bob)"
    assert sessions_detail([alice, LoginSession("alice", "pts/2")]) == "2 SSH sessions (alice)"
    assert sessions_detail([]) == "no SSH session"


def test_sessions_detail_leaves_names_out_when_many_long_or_odd() -> None:
    many = [LoginSession(name, "pts/0") for name in ("a", "b", "c", "d")]
    assert sessions_detail(many) == "4 SSH sessions"
    long = [LoginSession("a" * 20, "pts/0"), LoginSession("b" * 20, "pts/1")]
    assert sessions_detail(long) == "2 SSH sessions"
    assert sessions_detail([LoginSession("rm -rf", "pts/0")]) == "1 SSH session"
    assert sessions_detail([LoginSession("[b]bold[/b]", "pts/0")]) == "1 SSH session", "no markup-looking names"


# --- Ollama keep-alive ---------------------------------------------------------------------------------


def model(name: str, expires: datetime | None) -> LoadedModel:
    return LoadedModel(name, 6 * GIB, 6 * GIB, 8192, expires)


def test_a_model_with_a_finite_keep_alive_holds_until_it_expires() -> None:
    loaded = [model("llama3.1:8b", NOW + timedelta(minutes=5))]
    assert keepalive_until(loaded, NOW) == NOW + timedelta(minutes=5)
    assert keepalive_detail(loaded, NOW) == "llama3.1:8b loaded (keep-alive to 13:05 UTC)"


def test_the_latest_expiry_of_several_models_holds() -> None:
    loaded = [model("mistral:7b", NOW + timedelta(minutes=5)), model("llama3.1:8b", NOW + timedelta(hours=1))]
    assert keepalive_until(loaded, NOW) == NOW + timedelta(hours=1)
    assert keepalive_detail(loaded, NOW) == "2 models loaded (keep-alive to 14:00 UTC)"


def test_the_clock_time_is_written_in_the_given_zone() -> None:
    paris = timezone(timedelta(hours=1))
    loaded = [model("llama3.1:8b", NOW + timedelta(minutes=5))]
    assert keepalive_detail(loaded, NOW, paris) == "llama3.1:8b loaded (keep-alive to 14:05)"


def test_a_pinned_model_does_not_hold_the_vm() -> None:
    pinned = model("deepseek-coder-v2:16b", None)  # keep_alive -1, as OllamaModels.loaded gives it
    far = model("qwen:7b", NOW + PINNED_HORIZON + timedelta(seconds=1))
    assert keepalive_until([pinned, far], NOW) is None
    assert keepalive_detail([pinned, far], NOW) == ""
    just_inside = model("qwen:7b", NOW + PINNED_HORIZON)
    assert keepalive_until([pinned, just_inside], NOW) == NOW + PINNED_HORIZON
    assert keepalive_detail([pinned, just_inside], NOW) == "qwen:7b loaded (keep-alive to Mon 13:00 UTC)"


def test_a_pinned_model_beside_a_finite_one_is_not_counted_in_the_detail() -> None:
    loaded = [model("deepseek-coder-v2:16b", None), model("llama3.1:8b", NOW + timedelta(minutes=30))]
    assert holding_models(loaded, NOW) == (loaded[1],)
    assert keepalive_detail(loaded, NOW) == "llama3.1:8b loaded (keep-alive to 13:30 UTC)"


def test_an_expired_model_does_not_hold_the_vm() -> None:
    assert keepalive_until([model("mistral:7b", NOW)], NOW) is None
    assert keepalive_until([model("mistral:7b", NOW - timedelta(seconds=1))], NOW) is None
    assert keepalive_until([], NOW) is None


def test_a_naive_expiry_is_taken_as_utc_rather_than_raising() -> None:
    naive = model("mistral:7b", (NOW + timedelta(minutes=2)).replace(tzinfo=None))
    assert keepalive_until([naive], NOW) == NOW + timedelta(minutes=2)


def test_a_hostile_model_name_is_sanitised_and_cut() -> None:
    loaded = [model("\x1b]0;pwn\x07evil\x1b[2J" + "x" * 200, NOW + timedelta(minutes=1))]
    detail = keepalive_detail(loaded, NOW)
    assert has_no_control_chars(detail) and detail.startswith("evil") and len(detail) < 120
    assert keepalive_detail([model("\x1b[2J", NOW + timedelta(minutes=1))], NOW).startswith("a model loaded")
