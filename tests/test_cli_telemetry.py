"""`status --json` with GPUs and services, and `aiconsole gpus`, on the demo fleet over SSH."""

from __future__ import annotations

import json

from aiconsole.cli import main


def run(capsys, tmp_path, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={"AICONSOLE_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json_has_gpus_and_services_per_vm(capsys, tmp_path) -> None:
    code, out, err = run(capsys, tmp_path, "status", "--json", "--demo")
    assert code == 0, err
    vms = {vm["name"]: vm for vm in json.loads(out)["vms"]}
    (gpu,) = vms["inference"]["gpus"]
    assert set(gpu) >= {"index", "name", "temp_c", "mem_used_mib", "mem_total_mib", "util_pct", "power_w", "stale"}
    assert gpu["name"] == "NVIDIA GeForce RTX 4090" and gpu["mem_total_mib"] == 24564 and gpu["stale"] is False
    assert 30 <= gpu["temp_c"] <= 90 and 0 < gpu["power_w"] <= 450
    services = {s["name"]: s for s in vms["inference"]["services"]}
    assert set(services["ollama"]) >= {"name", "kind", "healthy", "latency_ms", "error"}
    assert services["ollama"]["healthy"] is True and services["ollama"]["latency_ms"] > 0  # through the SSH forward
    assert services["open-webui"]["healthy"] is True
    assert vms["training"]["gpus"] == [] and vms["training"]["telemetry"]["state"] == "off"  # stopped: no connection
    assert vms["brain"]["telemetry"]["state"] == "no-gpu" and "nvidia-smi" in vms["brain"]["telemetry"]["message"]
    localai = vms["homelab"]["services"][0]
    assert localai["state"] == "starting" and localai["healthy"] is False  # 503 while loading its model


def test_gpus_prints_one_row_per_gpu_and_a_line_per_host_without_one(capsys, tmp_path) -> None:
    code, out, err = run(capsys, tmp_path, "gpus", "--demo")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["HOST", "GPU", "NAME"]
    assert any(line.startswith("inference") and "RTX 4090" in line for line in lines)
    assert any(line.startswith("homelab") for line in lines)
    assert not any(line.startswith("training") for line in lines)
    assert any(line.startswith("brain: no-gpu") for line in lines)
    assert "\x1b" not in out
