"""nvidia-smi / NVML parsing against real H100 output (tests/data/nvidia) and crafted odd cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiconsole.domain.gpu import (
    GPU_QUERY_FIELDS,
    MAX_LINE_CHARS,
    GpuFrame,
    GpuProcess,
    GpuSample,
    GpuStreamParser,
    nvidia_smi_apps_command,
    nvidia_smi_stream_command,
    parse_compute_apps,
    parse_gpu_line,
    sample_from_nvml,
)

DATA = Path(__file__).parent / "data" / "nvidia"
AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
H100_UUID = "GPU-08e6c2fb-82e3-c767-12ed-5fe6bbbf7c6c"
H100 = "NVIDIA H100 80GB HBM3"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def gpu_line(index: int, temp: str = "40", used: str = "1000", util: str = "5", name: str = "RTX 4090") -> str:
    return f"{index}, GPU-{index:08d}-aaaa, {name}, {temp}, {used}, 24564, {util}, 120.50, 450.00"


def frames_of(text: str, chunks: list[str] | None = None) -> list[GpuFrame]:
    parser = GpuStreamParser()
    frames: list[GpuFrame] = []
    for chunk in chunks if chunks is not None else [text]:
        frames += parser.feed(chunk, AT)
    return frames + parser.flush(AT)


def indices(frames: list[GpuFrame]) -> list[list[int]]:
    return [[gpu.index for gpu in frame.gpus] for frame in frames]


# --- commands ----------------------------------------------------------------------------


def test_stream_command_queries_the_fields_in_parser_order() -> None:
    assert nvidia_smi_stream_command(1000) == (
        "nvidia-smi --query-gpu=index,uuid,name,temperature.gpu,memory.used,memory.total,"
        "utilization.gpu,power.draw,power.limit --format=csv,noheader,nounits -lms 1000"
    )
    assert len(GPU_QUERY_FIELDS) == 9
    with pytest.raises(ValueError):
        nvidia_smi_stream_command(0)


def test_apps_command() -> None:
    assert nvidia_smi_apps_command() == (
        "nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv,noheader,nounits"
    )


# --- the real H100 captures --------------------------------------------------------------


def test_idle_h100_stream_gives_one_frame_per_line() -> None:
    frames = frames_of(read("query-gpu-lms500.txt"))
    assert len(frames) == 6 and all(len(f.gpus) == 1 for f in frames)
    first = frames[0].gpus[0]
    assert first == GpuSample(0, H100_UUID, H100, 38.0, 0.0, 81559.0, 0.0, 121.95, 700.0, AT, "nvidia-smi")
    assert first.mem_share == 0.0
    assert [f.gpus[0].temp_c for f in frames] == [38, 37, 37, 36, 36, 36]
    assert [f.gpus[0].power_w for f in frames][-1] == 71.57


def test_loaded_h100_stream() -> None:
    frames = frames_of(read("loaded-query-gpu-lms500.txt"))
    samples = [f.gpus[0] for f in frames]
    assert [s.temp_c for s in samples] == [53, 58, 58, 60, 60, 61]
    assert {s.util_pct for s in samples} == {98.0}
    assert max(s.power_w or 0 for s in samples) == 693.62
    assert samples[0].mem_share == pytest.approx(21455 / 81559)


def test_header_and_units_file_rejects_the_header_and_accepts_units() -> None:
    header, row = read("query-gpu-header-units.txt").splitlines()
    assert parse_gpu_line(header, AT) is None
    sample = parse_gpu_line(row, AT)
    assert sample is not None
    assert (sample.temp_c, sample.mem_used_mib, sample.mem_total_mib) == (36, 0, 81559)
    assert (sample.util_pct, sample.power_w, sample.power_limit_w) == (0, 71.59, 700.0)
    parser = GpuStreamParser()
    assert indices(parser.feed(read("query-gpu-header-units.txt"), AT) + parser.flush(AT)) == [[0]]
    assert parser.skipped_lines == 1


def test_other_query_shapes_are_not_gpu_samples() -> None:
    # Five fields: not the --query-gpu shape this parser reads.
    assert parse_gpu_line(read("query-gpu-extra.txt").strip(), AT) is None
    for line in read("nvidia-smi-version.txt").splitlines():
        assert parse_gpu_line(line, AT) is None


def test_compute_apps_empty_and_loaded() -> None:
    # The capture of the empty case holds only the recorded exit status ("rc=0").
    assert parse_compute_apps(read("query-compute-apps.txt")) == ()
    assert parse_compute_apps("") == ()
    assert parse_compute_apps(read("loaded-query-compute-apps.txt")) == (
        GpuProcess(457, "python3", 21354.0, H100_UUID),
    )


def test_compute_apps_odd_lines() -> None:
    text = (
        "No running processes found\n"
        "12, /opt/my, app/bin/python, [N/A], GPU-1\r\n"
        "x, junk, 1, GPU-2\n"
        "13, \x1b]0;pwned\x07[b]evil[/b], 100 MiB, GPU-3\n"
    )
    assert parse_compute_apps(text) == (
        GpuProcess(12, "/opt/my, app/bin/python", None, "GPU-1"),
        GpuProcess(13, "[b]evil[/b]", 100.0, "GPU-3"),
    )


def test_nvml_values_from_the_capture() -> None:
    gpu = json.loads(read("nvml.json"))["gpus"][0]
    sample = sample_from_nvml(
        gpu["index"], gpu["uuid"], gpu["name"].encode(), gpu["temp_c"], gpu["mem_used"], gpu["mem_total"],
        gpu["util_gpu"], gpu["power_mw"], gpu["power_limit_mw"], AT,
    )  # fmt: skip
    assert sample.source == "nvml" and sample.name == H100 and sample.uuid == H100_UUID
    assert sample.mem_used_mib == 480.0 and sample.mem_total_mib == pytest.approx(81559.0, abs=1)
    assert sample.power_w == 71.579 and sample.power_limit_w == 700.0 and sample.temp_c == 36


def test_nvml_loaded_capture_and_missing_values() -> None:
    loaded = json.loads(read("loaded-nvml.json"))
    sample = sample_from_nvml(
        0, b"GPU-\xff1", b"bad\x1b[31m name", loaded["temp_c"], loaded["mem_used"], loaded["mem_total"],
        loaded["util_gpu"], loaded["power_mw"], None, AT,
    )  # fmt: skip
    assert sample.mem_used_mib == pytest.approx(21935, abs=1) and sample.power_w == 159.318
    assert sample.power_limit_w is None and sample.uuid == "GPU-\ufffd1" and sample.name == "bad name"
    empty = sample_from_nvml(1, "u", "n", None, None, None, None, None, None, AT)
    assert empty.temp_c is None and empty.mem_share is None


# --- odd fields --------------------------------------------------------------------------


UNREADABLE = ["[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", "[GPU requires reset]", "", "  "]
GARBAGE = ["12abc", "nan", "inf", "-5", "0x1A", "1.2.3"]


@pytest.mark.parametrize("field", UNREADABLE + GARBAGE)
def test_unreadable_fields_are_none_not_zero(field: str) -> None:
    for position in range(3, 9):
        parts = gpu_line(0).split(", ")
        parts[position] = field
        sample = parse_gpu_line(", ".join(parts), AT)
        assert sample is not None
        values = (sample.temp_c, sample.mem_used_mib, sample.mem_total_mib, sample.util_pct,
                  sample.power_w, sample.power_limit_w)  # fmt: skip
        assert values[position - 3] is None
        assert sum(v is None for v in values) == 1


def test_units_are_accepted_only_in_the_nounits_scale() -> None:
    line = "0, GPU-1, X, 40 C, 10 MiB, 100 MiB, 50 %, 71.5 W, 450 W"
    sample = parse_gpu_line(line, AT)
    assert sample is not None and sample.mem_share == 0.1 and sample.power_w == 71.5
    odd = parse_gpu_line("0, GPU-1, X, 40, 10 GiB, 100 MiB, 50, 71500 mW, 450", AT)
    assert odd is not None and odd.mem_used_mib is None and odd.power_w is None


@pytest.mark.parametrize(
    "line",
    [
        "",
        "index, uuid, name, temperature.gpu, memory.used [MiB], memory.total [MiB], utilization.gpu [%], power.draw [W], power.limit [W]",
        "Unable to determine the device handle for GPU0000:01:00.0: Unknown Error",
        "No devices were found",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        "0, GPU-1, X, 40, 10, 100, 50, 71.5",  # a field short
        "-1, GPU-1, X, 40, 10, 100, 50, 71.5, 450",
        "x, GPU-1, X, 40, 10, 100, 50, 71.5, 450",
        "\u0663, GPU-1, X, 40, 10, 100, 50, 71.5, 450",  # Arabic-Indic 3: int() would take it
        "0" * 10 + ", " * (MAX_LINE_CHARS // 2),
    ],
)
def test_non_sample_lines_are_rejected(line: str) -> None:
    assert parse_gpu_line(line, AT) is None


def test_a_name_with_commas_keeps_the_fields_around_it() -> None:
    sample = parse_gpu_line("3, GPU-3, Tesla, V100, SXM2, 16GB, 40, 10, 100, 50, 71.5, 450", AT)
    assert sample is not None
    assert (sample.index, sample.uuid, sample.name) == (3, "GPU-3", "Tesla, V100, SXM2, 16GB")
    assert (sample.temp_c, sample.power_limit_w) == (40, 450)


def test_escape_sequences_go_and_markup_stays_literal() -> None:
    name = "\x1b[2J\x1b]0;owned\x07RTX\x1b[31m [bold red]x[/]\x07\x00 4090\x9b1m"
    sample = parse_gpu_line(gpu_line(0, name=name).replace("GPU-00000000", "GPU-\x1b[8m0"), AT)
    assert sample is not None
    assert sample.name == "RTX [bold red]x[/] 4090"
    assert sample.uuid == "GPU-0-aaaa"
    for text in (sample.name, sample.uuid):
        assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def test_replacement_characters_from_lenient_decoding_pass() -> None:
    raw = "0, GPU-1, RTX \udcff 4090".encode("utf-8", "surrogateescape") + b", 40, 1, 2, 3, 4, 5"
    sample = parse_gpu_line(raw.decode("utf-8", errors="replace"), AT)
    assert sample is not None and sample.name == "RTX \ufffd 4090" and sample.temp_c == 40


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_gpu_line(gpu_line(0), datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        GpuStreamParser().feed(gpu_line(0), datetime(2026, 1, 1))


# --- the stream ----------------------------------------------------------------------------


def rounds(*gpu_sets: list[int]) -> str:
    return "".join(gpu_line(i) + "\n" for gpus in gpu_sets for i in gpus)


def test_eight_gpus_per_round() -> None:
    eight = list(range(8))
    frames = frames_of(rounds(eight, eight, eight))
    assert indices(frames) == [eight, eight, eight]


def test_a_steady_stream_emits_each_round_with_its_last_line() -> None:
    parser = GpuStreamParser()
    assert parser.feed(rounds([0, 1]), AT) == []  # the first round's size is not known yet
    assert indices(parser.feed(gpu_line(0) + "\n", AT)) == [[0, 1]]
    assert parser.feed(gpu_line(1, temp="41"), AT) == []  # no newline yet: may be partial
    frames = parser.feed("\n", AT)
    assert indices(frames) == [[0, 1]] and frames[0].gpus[1].temp_c == 41
    assert parser.flush(AT) == []


def test_flush_emits_the_pending_round_and_a_last_line_without_newline() -> None:
    parser = GpuStreamParser()
    assert parser.feed(rounds([0, 1]) + gpu_line(0), AT) == []
    assert indices(parser.flush(AT)) == [[0, 1], [0]]
    assert parser.flush(AT) == []


def test_frame_time_is_the_time_of_its_last_line() -> None:
    parser = GpuStreamParser()
    later = AT + timedelta(seconds=1)
    parser.feed(gpu_line(0) + "\n", AT)
    parser.feed(gpu_line(1) + "\n", later)
    (frame,) = parser.feed(gpu_line(0) + "\n", later + timedelta(seconds=1))
    assert frame.at == later and [g.at for g in frame.gpus] == [AT, later]


def test_a_middle_gpu_that_disappears_and_reappears_costs_no_extra_frame() -> None:
    text = rounds([0, 1, 2], [0, 1, 2], [0, 2], [0, 2], [0, 1, 2], [0, 1, 2])
    assert indices(frames_of(text)) == [[0, 1, 2], [0, 1, 2], [0, 2], [0, 2], [0, 1, 2], [0, 1, 2]]


def test_the_last_gpu_disappearing_and_reappearing() -> None:
    got = indices(frames_of(rounds([0, 1], [0, 1], [0], [0], [0, 1], [0, 1], [0, 1])))
    # When GPU 1 comes back its round was already emitted as [0] (0 was the last index);
    # the round is reopened and emitted again, complete: the later frame supersedes.
    assert got == [[0, 1], [0, 1], [0], [0], [0], [0, 1], [0, 1], [0, 1]]


def test_the_first_gpu_disappearing_and_reappearing() -> None:
    got = indices(frames_of(rounds([0, 1], [0, 1], [1], [1], [0, 1], [0, 1])))
    assert got == [[0, 1], [0, 1], [1], [1], [0, 1], [0, 1]]


def test_early_emission_follows_the_lines_not_the_chunks() -> None:
    parser = GpuStreamParser()
    parser.feed(rounds([0, 1, 2], [0]), AT)
    assert indices(parser.feed(gpu_line(2) + "\n", AT)) == [[0, 2]]  # GPU 1 missing: emitted at index 2
    assert indices(parser.feed(gpu_line(0) + "\n" + gpu_line(1) + "\n", AT)) == []
    assert indices(parser.feed(gpu_line(2) + "\n", AT)) == [[0, 1, 2]]


def test_non_csv_lines_between_samples_are_skipped_and_counted() -> None:
    text = (
        gpu_line(0) + "\n"
        "Unable to determine the device handle for GPU0000:02:00.0: Unknown Error\n"
        "\n"
        + gpu_line(2) + "\n"
        "index, uuid, name, temperature.gpu, memory.used, memory.total, utilization.gpu, power.draw, power.limit\n"
        + gpu_line(0) + "\n" + gpu_line(2) + "\n"
    )  # fmt: skip
    parser = GpuStreamParser()
    frames = parser.feed(text, AT) + parser.flush(AT)
    assert indices(frames) == [[0, 2], [0, 2]]
    assert parser.skipped_lines == 2  # blank lines are not counted


def test_crlf_gives_the_same_frames() -> None:
    text = rounds([0, 1], [0, 1], [0, 1])
    assert frames_of(text.replace("\n", "\r\n")) == frames_of(text)


def test_any_split_point_gives_the_same_frames_as_the_whole_input() -> None:
    text = (
        rounds([0, 1, 2], [0, 2]).replace("\n", "\r\n", 2)
        + "junk line\n" + gpu_line(1, name="A, B") + "\n" + rounds([0, 1, 2], [0, 1, 2])
    )  # fmt: skip
    whole = frames_of(text)
    assert len(whole) >= 4
    for cut in range(len(text) + 1):
        assert frames_of(text, [text[:cut], text[cut:]]) == whole, cut
    for cut in range(0, len(text), 7):  # three pieces, the middle one small
        assert frames_of(text, [text[:cut], text[cut : cut + 3], text[cut + 3 :]]) == whole, cut
    assert frames_of(text, list(text)) == whole  # one character at a time


def test_complete_lines_give_the_same_frames_as_the_text() -> None:
    # What `RemoteLines.run` hands the feed: lines already split, a read's worth at a time.
    text = (
        rounds([0, 1, 2], [0, 2]) + "junk line\n\n" + gpu_line(1, name="A, B") + "\n"
        + rounds([0, 1, 2]) + "0" * (MAX_LINE_CHARS + 1) + "\n" + rounds([0, 1, 2])
    )  # fmt: skip
    whole = frames_of(text)
    lines = text.split("\n")[:-1]
    for size in (1, 2, 3, 8, len(lines)):
        parser, frames = GpuStreamParser(), []
        for start in range(0, len(lines), size):
            frames += parser.feed_lines(lines[start : start + size], AT)
        assert frames + parser.flush(AT) == whole, size
        assert parser.skipped_lines == 2  # the junk and the over-long line
    mixed = GpuStreamParser()  # a chunk that ended mid-line, then lines: the first line completes it
    cut = text.index("\n") // 2
    frames = mixed.feed(text[:cut], AT) + mixed.feed_lines(text[cut:].split("\n")[:-1], AT)
    assert frames + mixed.flush(AT) == whole


def test_an_over_long_line_is_dropped_without_growing_the_buffer() -> None:
    parser = GpuStreamParser()
    parser.feed(rounds([0]), AT)
    for _ in range(100):
        assert parser.feed("x" * 1000, AT) == []
        assert len(parser._partial) <= MAX_LINE_CHARS
    frames = parser.feed("tail\n" + rounds([0]), AT) + parser.flush(AT)
    assert indices(frames) == [[0], [0]]
    assert parser.skipped_lines == 1


def test_an_over_long_line_is_dropped_the_same_whole_or_in_pieces() -> None:
    long_sample = gpu_line(1, name="N" * MAX_LINE_CHARS)
    text = rounds([0]) + long_sample + "\n" + rounds([0])
    parser = GpuStreamParser()
    whole = parser.feed(text, AT) + parser.flush(AT)
    assert indices(whole) == [[0], [0]] and parser.skipped_lines == 1
    for cut in (len(text) // 2, len(text) - 1, 30):
        assert frames_of(text, [text[:cut], text[cut:]]) == whole


def test_flush_of_an_over_long_unfinished_line() -> None:
    parser = GpuStreamParser()
    parser.feed(gpu_line(0) + "\n" + "y" * (MAX_LINE_CHARS + 1), AT)
    assert indices(parser.flush(AT)) == [[0]]
    assert parser.skipped_lines == 1


def test_a_new_stream_after_flush_keeps_its_round_size() -> None:
    parser = GpuStreamParser()
    parser.feed(rounds([0, 1], [0, 1], [0]), AT)  # cut mid-round
    assert indices(parser.flush(AT)) == [[0]]
    assert indices(parser.feed(rounds([0, 1]), AT)) == [[0, 1]]  # reconnected: no extra latency
