"""Simulated RTX 4090s for the demo fleet: what `nvidia-smi` would print under load.

Readings are a pure function of time (smooth waves plus seeded jitter), so the demo
looks alive while tests can ask for the reading at any instant. The output format is
the real one: the same fields, separators and precision as the captures from a real
GPU in tests/data/nvidia/ (`index, uuid, name, temp, mem used, mem total, util, power,
power limit`, with `--format=csv,noheader,nounits`).
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass

RTX_4090 = "NVIDIA GeForce RTX 4090"
RTX_4090_MEM_MIB = 24564
RTX_4090_POWER_LIMIT_W = 450.0


@dataclass(frozen=True, slots=True)
class GpuLoad:
    """How busy a simulated GPU is: baselines and how far and how fast they swing."""

    util_base: float
    util_swing: float
    mem_base_mib: float
    mem_swing_mib: float
    period_s: float = 90.0


INFERENCE_LOAD = GpuLoad(util_base=25, util_swing=45, mem_base_mib=19_800, mem_swing_mib=600)
"""Ollama with three models resident (~20 GB), bursts of generation."""
TRAINING_LOAD = GpuLoad(util_base=92, util_swing=8, mem_base_mib=21_900, mem_swing_mib=900, period_s=240)
"""A LoRA fine-tune: the GPU flat out, VRAM near its warning level, heat near 75 °C."""
IDLE_LOAD = GpuLoad(util_base=0, util_swing=2, mem_base_mib=1, mem_swing_mib=0)


@dataclass(frozen=True, slots=True)
class SimulatedGpu:
    index: int
    uuid: str
    load: GpuLoad
    name: str = RTX_4090
    mem_total_mib: int = RTX_4090_MEM_MIB
    power_limit_w: float = RTX_4090_POWER_LIMIT_W
    seed: int = 0

    def reading(self, t: float) -> tuple[int, int, int, float]:
        """(temperature °C, memory used MiB, utilisation %, power W) at time `t` (seconds)."""
        jitter = random.Random(self.seed * 1_000_003 + int(t)).uniform(-1.0, 1.0)
        wave = (math.sin(2 * math.pi * t / self.load.period_s) + 1) / 2
        util = _clamp(self.load.util_base + self.load.util_swing * wave + 3 * jitter, 0, 100)
        mem = _clamp(self.load.mem_base_mib + self.load.mem_swing_mib * wave, 0, self.mem_total_mib)
        # Heat and power follow utilisation: ~35 °C and ~25 W idle, ~78 °C and ~430 W flat out.
        temp = 35 + 0.43 * util + 1.5 * jitter
        power = 25 + 4.05 * util + 6 * jitter
        return round(temp), round(mem), round(util), round(_clamp(power, 5, self.power_limit_w), 2)

    def smi_line(self, t: float) -> str:
        temp, mem, util, power = self.reading(t)
        return (
            f"{self.index}, {self.uuid}, {self.name}, {temp}, {mem}, {self.mem_total_mib}, "
            f"{util}, {power:.2f}, {self.power_limit_w:.2f}"
        )


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def demo_gpus(host_seed: int, load: GpuLoad, count: int = 1) -> tuple[SimulatedGpu, ...]:
    """`count` RTX 4090s with stable, distinct UUIDs for one simulated host."""
    rng = random.Random(host_seed)
    return tuple(
        SimulatedGpu(index, f"GPU-{uuid.UUID(int=rng.getrandbits(128))}", load, seed=host_seed * 100 + index)
        for index in range(count)
    )


def smi_round(gpus: tuple[SimulatedGpu, ...], t: float) -> str:
    """One `-lms` round: a line per GPU, in index order."""
    return "".join(gpu.smi_line(t) + "\n" for gpu in gpus)


def compute_apps(gpus: tuple[SimulatedGpu, ...], t: float, process: tuple[int, str]) -> str:
    """`--query-compute-apps` output: one process per busy GPU (an empty string when idle)."""
    pid, name = process
    lines = []
    for gpu in gpus:
        _, mem, util, _ = gpu.reading(t)
        if util > 0 or mem > 100:
            lines.append(f"{pid + gpu.index}, {name}, {max(0, mem - 420)}, {gpu.uuid}\n")
    return "".join(lines)


def interval_ms(command: str, default: int = 1000) -> int:
    """The `-lms N` (or `--loop-ms=N`) of an nvidia-smi command line."""
    parts = command.replace("=", " ").split()
    for flag in ("-lms", "--loop-ms"):
        if flag in parts:
            position = parts.index(flag) + 1
            if position < len(parts) and parts[position].isdigit():
                return max(50, int(parts[position]))
    return default
