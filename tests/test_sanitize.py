"""The sanitiser: every escape sequence and control character out (but \\n, \\t), in whole text
and in a stream cut anywhere."""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest

from aiconsole.domain.sanitize import StreamSanitizer, sanitize, sanitize_line

ESC, BEL, ST = "\x1b", "\x07", "\x1b\\"
# What must never come out: C0 except \t and \n, DEL, and the C1 block.
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def fed(text: str, cuts: list[int]) -> str:
    """`text` through a StreamSanitizer, cut into chunks at the given offsets."""
    stream = StreamSanitizer()
    bounds = [0, *cuts, len(text)]
    out = "".join(stream.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
    return out + stream.flush()


# (raw, shown): each sequence between visible text, so a sequence that swallowed too much
# or too little shows.
CASES = {
    "sgr colour": ("a\x1b[31mred\x1b[0m b", "ared b"),
    "sgr truecolour": ("a\x1b[38;2;255;0;0;48;5;17mX\x1b[m", "aX"),
    "cursor moves": ("a\x1b[10;20Hb\x1b[2Ac\x1b[Dd", "abcd"),
    "clear screen": ("a\x1b[2J\x1b[Hb", "ab"),
    "private mode": ("a\x1b[?1049h\x1b[?25lb", "ab"),
    "csi with intermediate": ("a\x1b[1 qb", "ab"),
    "osc title bel": ("a\x1b]0;pwned\x07b", "ab"),
    "osc title st": ("a\x1b]2;pwned\x1b\\b", "ab"),
    "osc 52 clipboard": ("a\x1b]52;c;cm0gLXJmIH4=\x07b", "ab"),
    "osc 8 hyperlink": ("\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\", "click"),
    "dcs": ("a\x1bP1$qm\x1b\\b", "ab"),
    "apc": ("a\x1b_Gf=100;AAAA\x1b\\b", "ab"),
    "pm": ("a\x1b^private\x1b\\b", "ab"),
    "sos": ("a\x1bXstart of string\x07b", "ab"),
    "8-bit csi": ("a\x9b31mb", "ab"),
    "8-bit osc with 8-bit st": ("a\x9d0;pwned\x9cb", "ab"),
    "8-bit osc with bel": ("a\x9d0;pwned\x07b", "ab"),
    "8-bit dcs": ("a\x90q#0;2;0;0;0\x9cb", "ab"),
    "two-byte esc": ("a\x1b7b\x1b8c\x1b(Bd\x1bce", "abcde"),
    "lone esc at end": ("ab\x1b", "ab"),
    "lone esc before text": ("a\x1b\x80b", "ab"),
    "c0 controls": ("a\x00b\x07c\x08d\re\x7ff\x0bg\x0ch", "abcdefgh"),
    "c1 controls": ("a\x85b\x8ec\x9ad", "abcd"),
    # Trojan Source: an override (U+202E) or isolate (U+2066) would show "user" code reversed.
    "bidi override": ("if admin\u202e { ok }\u202c", "if admin { ok }"),
    "bidi isolates": ("a\u2066b\u2067c\u2068d\u2069e\u202af\u202bg\u202dh", "abcdefgh"),
    "bidi marks kept": ("a\u200eb\u200fc\u061cd", "a\u200eb\u200fc\u061cd"),
    "8-bit apc": ("a\x9fGf=100\x9cb", "ab"),
    "osc aborted by esc": ("a\x1b]0;title\x1b[31mb", "ab"),
    "unterminated osc at end": ("a\x1b]0;pwned and everything after\nmore", "a"),
    # Not a sequence any more (the text ended): ESC [ goes, the parameters are plain text.
    "unterminated csi at end": ("a\x1b[12;3", "a12;3"),
}


@pytest.mark.parametrize(("raw", "shown"), list(CASES.values()), ids=list(CASES))
def test_sequences_and_controls_are_removed(raw: str, shown: str) -> None:
    assert sanitize(raw) == shown


def test_newline_and_tab_unicode_emoji_and_markup_are_kept() -> None:
    text = "line 1\n\tcafé — 東京 🚀👩‍💻 [bold]x[/] [link=https://x]y[/link] \\[z]"
    assert sanitize(text) == text
    assert sanitize("") == ""


def test_sequence_parameters_are_not_left_behind() -> None:
    # What a half-removed sequence would leave: its parameters as text.
    out = sanitize("\x1b[38;5;196m\x1b]8;id=1;https://e.x\x07link\x1b]8;;\x07\x1b[0m")
    assert out == "link"


def test_an_overlong_csi_is_cut_to_harmless_text() -> None:
    # Not a sequence any more: ESC [ goes, the digits stay as text; no control survives.
    out = sanitize("a\x1b[" + "1" * 1000 + "mb")
    assert out == "a" + "1" * 1000 + "mb"


def test_sanitize_line_folds_whitespace_and_limits_length() -> None:
    assert sanitize_line("a\x1b]0;t\x07\n\tb\r\nc  d") == "a b c d"
    assert sanitize_line("x" * 20, limit=10) == "x" * 9 + "…"
    assert sanitize_line("x" * 10, limit=10) == "x" * 10
    assert sanitize_line("[bold red]x[/]") == "[bold red]x[/]"


@pytest.mark.parametrize(("raw", "shown"), list(CASES.values()), ids=list(CASES))
def test_a_chunk_boundary_anywhere_gives_the_same_result(raw: str, shown: str) -> None:
    for cut in range(len(raw) + 1):
        assert fed(raw, [cut]) == shown, f"cut at {cut}"


def test_one_character_chunks_give_the_same_result() -> None:
    raw = "".join(raw for raw, _ in CASES.values() if not raw.endswith("more"))
    assert fed(raw, list(range(1, len(raw)))) == sanitize(raw)
    assert not FORBIDDEN.search(sanitize(raw))


def test_a_split_osc_is_held_until_it_ends() -> None:
    stream = StreamSanitizer()
    assert stream.feed("before \x1b]0;pwn") == "before "
    assert stream.feed("ed\x1b") == ""
    assert stream.feed("\\after") == "after"
    assert stream.flush() == ""


def test_an_unterminated_osc_at_the_end_of_the_stream_is_dropped_by_flush() -> None:
    stream = StreamSanitizer()
    assert stream.feed("text \x1b]52;c;") == "text "
    assert stream.feed("Y2xpcGJvYXJk") == ""
    assert stream.flush() == ""
    # And the stream is clean afterwards: nothing of the dropped sequence comes back.
    assert stream.feed("next") == "next"


def test_an_unfinished_csi_at_the_end_of_the_stream_leaves_only_its_parameters() -> None:
    stream = StreamSanitizer()
    assert stream.feed("a\x1b[1") == "a"
    assert stream.feed("2;3") == ""
    assert stream.flush() == "12;3"
    assert stream.flush() == ""


def test_an_esc_that_turns_out_not_to_start_a_sequence_is_released() -> None:
    stream = StreamSanitizer()
    assert stream.feed("a\x1b") == "a"
    assert stream.feed("\x80b") == "b"


ALPHABET = [ESC, "[", "]", BEL, "\\", "0", "1", "2", ";", "a", "b", "P", "m", "\n", "\x9b", "\x9d", "\x9c", "é"]


def test_property_random_streams_are_clean_and_chunking_never_matters() -> None:
    rng = random.Random(20260101)
    for case in range(4000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        whole = sanitize(text)
        assert not FORBIDDEN.search(whole), (case, text, whole)
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(1, 6))))
        assert fed(text, cuts) == whole, (case, text, cuts)
        assert fed(text, list(range(1, len(text)))) == whole, (case, text)
        assert sanitize(whole) == whole  # idempotent: nothing left to remove


@pytest.mark.parametrize(
    "hostile",
    [
        "\x9d" * 100_000 + "\x1bq",  # 8-bit openers, each of which used to rescan the rest
        "\x1b]0;" + "a" * 100_000 + "\x1bq",
        "\x1b[" + "1" * 100_000 + "\x07",
        ("\x1b[" + "1" * 50 + "\x1b") * 2_000,
    ],
    ids=["8-bit openers", "long aborted osc", "long csi", "many broken csi"],
)
def test_hostile_input_costs_linear_time(hostile: str) -> None:
    # A guard, not a benchmark (those live in benchmarks/): this takes milliseconds, while
    # the quadratic matching it guards against took minutes on these inputs.
    began = time.perf_counter()
    whole = sanitize(hostile)
    assert fed(hostile, list(range(1000, len(hostile), 1000))) == whole
    assert time.perf_counter() - began < 5.0
    assert not FORBIDDEN.search(whole)


def test_a_long_unterminated_osc_is_not_buffered_in_full() -> None:
    stream = StreamSanitizer()
    stream.feed("\x1b]52;c;")
    began = time.perf_counter()
    for _ in range(2_000):
        assert stream.feed("A" * 1000) == ""
    assert time.perf_counter() - began < 5.0  # was ~12 s: each chunk rescanned all before it
    assert stream.feed("\x07shown") == "shown"
