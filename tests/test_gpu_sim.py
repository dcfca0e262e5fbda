"""The demo's simulated RTX 4090s print what the real nvidia-smi prints, and move."""

from __future__ import annotations

from datetime import datetime, timezone

from aiconsole.demo.gpu_sim import (
    INFERENCE_LOAD,
    RTX_4090_MEM_MIB,
    TRAINING_LOAD,
    compute_apps,
    demo_gpus,
    interval_ms,
    smi_round,
)
from aiconsole.domain.gpu import GpuStreamParser, nvidia_smi_stream_command, parse_compute_apps

AT = datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)


def test_simulated_rounds_parse_with_the_real_parser_into_plausible_values() -> None:
    gpus = demo_gpus(7, TRAINING_LOAD, count=2)
    parser = GpuStreamParser()
    frames = [frame for t in range(0, 300, 5) for frame in parser.feed(smi_round(gpus, float(t)), AT)]
    assert parser.skipped_lines == 0
    assert len(frames) == 60 and all(len(frame.gpus) == 2 for frame in frames)
    for sample in (gpu for frame in frames for gpu in frame.gpus):
        assert sample.name == "NVIDIA GeForce RTX 4090" and sample.uuid.startswith("GPU-")
        assert sample.mem_total_mib == RTX_4090_MEM_MIB and 0 < sample.mem_used_mib <= RTX_4090_MEM_MIB
        assert 0 <= sample.util_pct <= 100 and 30 <= sample.temp_c <= 90
        assert 0 < sample.power_w <= sample.power_limit_w == 450.0
    temps = {gpu.temp_c for frame in frames for gpu in frame.gpus}
    assert max(temps) >= 75, "the training load must reach the warning level now and then"


def test_inference_load_moves_between_bursts_and_lulls() -> None:
    (gpu,) = demo_gpus(3, INFERENCE_LOAD)
    utils = [gpu.reading(float(t))[2] for t in range(0, 90, 3)]
    assert min(utils) < 30 < 60 < max(utils)


def test_the_same_time_gives_the_same_reading_and_uuids_are_stable() -> None:
    first, again = demo_gpus(5, TRAINING_LOAD), demo_gpus(5, TRAINING_LOAD)
    assert first == again and first[0].smi_line(42.5) == again[0].smi_line(42.5)
    assert demo_gpus(6, TRAINING_LOAD)[0].uuid != first[0].uuid


def test_compute_apps_parse_and_interval_is_read_from_the_command() -> None:
    gpus = demo_gpus(1, TRAINING_LOAD, count=2)
    processes = parse_compute_apps(compute_apps(gpus, 10.0, (4242, "python3")))
    assert [(p.pid, p.name, p.gpu_uuid) for p in processes] == [(4242, "python3", gpus[0].uuid), (4243, "python3", gpus[1].uuid)]
    assert interval_ms(nvidia_smi_stream_command(500)) == 500
    assert interval_ms("nvidia-smi --query-gpu=index --loop-ms=250") == 250
    assert interval_ms("nvidia-smi -L") == 1000
