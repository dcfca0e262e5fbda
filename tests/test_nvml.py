"""LocalGpus: the local GPUs through NVML.

Without an NVIDIA GPU (this machine, CI) the real pynvml is used, for real: it raises
NVMLError_LibraryNotFound, which must read as "no GPU". On a machine with a GPU the
same test reads the real devices instead.

For the GPU path a stand-in `nvml` module is injected (`FakeNvml`). This replaces the
C library under pynvml's Python API, not our code: NVML has no wire protocol that a
loopback server could speak, so the nearest "wire" is pynvml's functions. The stand-in
returns the values read through pynvml on a real H100 (tests/data/nvidia/nvml.json,
loaded-nvml.json) and raises pynvml's own exception classes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from aiconsole.domain.gpu import SOURCE_NVML
from aiconsole.services.nvml import LocalGpuReading, LocalGpus, LocalGpuStatus

DATA = Path(__file__).parent / "data" / "nvidia"
IDLE = json.loads((DATA / "nvml.json").read_text())["gpus"][0]
LOADED = json.loads((DATA / "loaded-nvml.json").read_text())
AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MIB = 1024 * 1024


def nvml_error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # pynvml maps the code to its subclass, e.g. NVMLError_NotSupported


class FakeNvml:
    """The part of pynvml that LocalGpus uses; handles are GPU indexes.

    `fail[(function, index)] = code` makes that call raise for that GPU; `index` None: all.
    """

    NVMLError = pynvml.NVMLError

    def __init__(self, gpus: list[dict[str, Any]], *, names_as_bytes: bool = False) -> None:
        self.gpus = gpus
        self.names_as_bytes = names_as_bytes
        self.fail: dict[tuple[str, int | None], int] = {}
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.inits = self.shutdowns = 0
        self.count_delay = 0.0

    def _call(self, function: str, index: int | None = None) -> None:
        self.calls.append(function)
        self.threads.add(threading.get_ident())
        code = self.fail.get((function, index), self.fail.get((function, None)))
        if code is not None:
            raise nvml_error(code)

    def nvmlInit(self) -> None:
        self._call("nvmlInit")
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        time.sleep(self.count_delay)  # the driver can take this long: it must not stall the loop
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._call("nvmlDeviceGetHandleByIndex", index)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        self._call("nvmlDeviceGetName", handle)
        name = self.gpus[handle]["name"]
        return name.encode() if self.names_as_bytes and isinstance(name, str) else name

    def nvmlDeviceGetUUID(self, handle: int) -> str | bytes:
        self._call("nvmlDeviceGetUUID", handle)
        uuid = self.gpus[handle]["uuid"]
        return uuid.encode() if self.names_as_bytes else uuid

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature", handle)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self.gpus[handle]["temp_c"]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo", handle)
        gpu = self.gpus[handle]
        return SimpleNamespace(total=gpu["mem_total"], used=gpu["mem_used"], free=gpu["mem_total"] - gpu["mem_used"])

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        self._call("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=self.gpus[handle]["util_gpu"], memory=self.gpus[handle].get("util_mem", 0))

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._call("nvmlDeviceGetPowerUsage", handle)
        return self.gpus[handle]["power_mw"]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
        return self.gpus[handle]["power_limit_mw"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        self._call("nvmlDeviceGetComputeRunningProcesses", handle)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.gpus[handle]["procs"]]

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._call("nvmlSystemGetProcessName")
        return self.gpus[0].get("proc_names", {}).get(pid, "python3")


def h100(**changes: Any) -> dict[str, Any]:
    return dict(IDLE) | changes


def loaded_h100() -> dict[str, Any]:
    return h100(
        temp_c=LOADED["temp_c"],
        mem_used=LOADED["mem_used"],
        mem_total=LOADED["mem_total"],
        util_gpu=LOADED["util_gpu"],
        power_mw=LOADED["power_mw"],
        procs=LOADED["procs"],
    )


async def read(nvml: FakeNvml, **options: Any) -> LocalGpuReading:
    async with LocalGpus(nvml, clock=lambda: AT, **options) as gpus:
        return await gpus.sample()


# --- no GPU: the real pynvml on this machine ---------------------------------------------


def _real_nvml_available() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


async def test_real_nvml_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real pynvml: "no GPU" without an NVIDIA driver (a GPU frame where there is one),
    no exception, and NVML is called from a worker thread, never the event loop's."""
    init_threads: list[int] = []
    real_init = pynvml.nvmlInit

    def recording_init() -> None:
        init_threads.append(threading.get_ident())
        real_init()

    has_gpu = _real_nvml_available()
    monkeypatch.setattr(pynvml, "nvmlInit", recording_init)
    loop_thread = threading.get_ident()
    gpus = LocalGpus()
    try:
        first, second = await gpus.sample(), await gpus.sample()
    finally:
        await gpus.close()
    assert init_threads and loop_thread not in init_threads
    assert loop_thread not in gpus.thread_ids
    if has_gpu:
        assert first.status is LocalGpuStatus.OK, first.message
        assert first.gpus and all(gpu.mem_total_mib for gpu in first.gpus)
        return
    assert first.status is LocalGpuStatus.NO_GPU
    assert "no GPU" in first.message and first.frame is None and first.gpus == ()
    assert second.status is LocalGpuStatus.NO_GPU
    assert len(init_threads) == 1  # a missing library is remembered, not looked for every sample


async def test_no_gpu_does_not_block_the_event_loop() -> None:
    """A slow driver call runs in a thread while the loop keeps ticking."""
    nvml = FakeNvml([h100()])
    nvml.count_delay = 0.3
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    reading = await read(nvml)
    task.cancel()
    assert reading.status is LocalGpuStatus.OK
    assert ticks >= 10
    assert threading.get_ident() not in nvml.threads


@pytest.mark.parametrize(
    ("code", "words"),
    [(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "library"), (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "not loaded")],
)
async def test_missing_library_or_driver_is_no_gpu_and_remembered(code: int, words: str) -> None:
    nvml = FakeNvml([h100()])
    nvml.fail[("nvmlInit", None)] = code
    async with LocalGpus(nvml, clock=lambda: AT) as gpus:
        readings = [await gpus.sample() for _ in range(3)]
    assert {reading.status for reading in readings} == {LocalGpuStatus.NO_GPU}
    assert words in readings[0].message and readings[0].at == AT
    assert nvml.inits == 0 and nvml.calls == ["nvmlInit"] and nvml.shutdowns == 0


async def test_driver_without_devices_is_no_gpu() -> None:
    reading = await read(FakeNvml([]))
    assert reading.status is LocalGpuStatus.NO_GPU and "no device" in reading.message


# --- a GPU: values converted ----------------------------------------------------------------


async def test_idle_h100_values_are_converted() -> None:
    nvml = FakeNvml([h100()])
    reading = await read(nvml)
    assert reading.status is LocalGpuStatus.OK and reading.message == ""
    [gpu] = reading.gpus
    assert gpu.index == 0
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid == "GPU-08e6c2fb-82e3-c767-12ed-5fe6bbbf7c6c"
    assert gpu.temp_c == 36
    assert gpu.mem_used_mib == 480  # 503316480 bytes
    assert gpu.mem_total_mib == 81559  # 85520809984 bytes
    assert gpu.util_pct == 0
    assert gpu.power_w == pytest.approx(71.579)
    assert gpu.power_limit_w == 700
    assert gpu.source == SOURCE_NVML and gpu.at == AT
    assert reading.frame is not None and reading.frame.at == AT and reading.at == AT
    assert reading.processes == ()
    assert nvml.inits == 1 and nvml.shutdowns == 1  # closed by the context manager


async def test_loaded_h100_with_its_process() -> None:
    reading = await read(FakeNvml([loaded_h100()]))
    [gpu] = reading.gpus
    assert gpu.temp_c == 44 and gpu.util_pct == 3
    assert gpu.mem_used_mib == pytest.approx(23000317952 / MIB)  # 21935 MiB
    assert gpu.power_w == pytest.approx(159.318)
    [process] = reading.processes
    assert process.pid == 457 and process.name == "python3"
    assert process.used_mib == 21446  # 22487760896 bytes
    assert process.gpu_uuid == gpu.uuid


async def test_processes_can_be_left_out() -> None:
    nvml = FakeNvml([loaded_h100()])
    reading = await read(nvml, processes=False)
    assert reading.processes == () and "nvmlDeviceGetComputeRunningProcesses" not in nvml.calls


async def test_process_memory_unknown_is_none() -> None:
    reading = await read(FakeNvml([h100(procs=[[99, None]])]))
    assert reading.processes[0].used_mib is None


async def test_two_gpus_in_index_order() -> None:
    second = h100(uuid="GPU-second", temp_c=50)
    reading = await read(FakeNvml([h100(), second]))
    assert [gpu.index for gpu in reading.gpus] == [0, 1]
    assert reading.gpus[1].uuid == "GPU-second" and reading.gpus[1].temp_c == 50


async def test_names_as_bytes_from_old_pynvml() -> None:
    reading = await read(FakeNvml([h100()], names_as_bytes=True))
    [gpu] = reading.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3" and isinstance(gpu.name, str)
    assert gpu.uuid == "GPU-08e6c2fb-82e3-c767-12ed-5fe6bbbf7c6c"
    invalid = await read(FakeNvml([h100(name=b"NVIDIA \xff H100")]))
    assert invalid.gpus[0].name == "NVIDIA \ufffd H100"


async def test_hostile_names_are_sanitised() -> None:
    gpu = h100(name="\x1b]0;pwn\x07[bold]H100[/]\x1b[2J", proc_names={7: "\x1b[31mevil\r\n"}, procs=[[7, MIB]])
    reading = await read(FakeNvml([gpu]))
    assert reading.gpus[0].name == "[bold]H100[/]"
    assert reading.processes[0].name == "evil"


# --- fields a GPU cannot report, and real failures ------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND],
)
async def test_field_a_gpu_cannot_report_is_none(code: int) -> None:
    nvml = FakeNvml([h100()])
    nvml.fail[("nvmlDeviceGetPowerUsage", 0)] = code
    nvml.fail[("nvmlDeviceGetEnforcedPowerLimit", 0)] = code
    nvml.fail[("nvmlDeviceGetComputeRunningProcesses", 0)] = code
    reading = await read(nvml)
    assert reading.status is LocalGpuStatus.OK
    [gpu] = reading.gpus
    assert gpu.power_w is None and gpu.power_limit_w is None
    assert gpu.temp_c == 36 and gpu.mem_used_mib == 480


async def test_every_field_unsupported_still_gives_a_sample() -> None:
    nvml = FakeNvml([h100()])
    for function in ("nvmlDeviceGetTemperature", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates",
                     "nvmlDeviceGetName", "nvmlDeviceGetUUID"):  # fmt: skip
        nvml.fail[(function, None)] = pynvml.NVML_ERROR_NOT_SUPPORTED
    [gpu] = (await read(nvml)).gpus
    assert (gpu.temp_c, gpu.mem_used_mib, gpu.mem_total_mib, gpu.util_pct) == (None, None, None, None)
    assert gpu.name == "" and gpu.power_w == pytest.approx(71.579)


async def test_temperature_through_the_v_function_when_the_old_one_is_gone() -> None:
    class NewerNvml(FakeNvml):
        nvmlDeviceGetTemperature = None  # type: ignore[assignment]

        def nvmlDeviceGetTemperatureV(self, handle: int, sensor: int) -> int:
            self._call("nvmlDeviceGetTemperatureV", handle)
            return 41

    [gpu] = (await read(NewerNvml([h100()]))).gpus
    assert gpu.temp_c == 41


async def test_gpu_lost_mid_read_is_an_error_then_recovers() -> None:
    nvml = FakeNvml([h100(), h100(uuid="GPU-second")])
    nvml.fail[("nvmlDeviceGetPowerUsage", 1)] = pynvml.NVML_ERROR_GPU_IS_LOST
    async with LocalGpus(nvml, clock=lambda: AT) as gpus:
        lost = await gpus.sample()
        assert lost.status is LocalGpuStatus.ERROR and lost.frame is None
        assert lost.message == "GPU 1: NVML: GPU is lost (code 15)"
        assert nvml.shutdowns == 1  # shut down, to start afresh
        nvml.fail.clear()
        back = await gpus.sample()
    assert back.status is LocalGpuStatus.OK and len(back.gpus) == 2
    assert nvml.inits == 2


async def test_unknown_error_at_init_is_an_error_and_retried() -> None:
    nvml = FakeNvml([h100()])
    nvml.fail[("nvmlInit", None)] = pynvml.NVML_ERROR_UNKNOWN
    async with LocalGpus(nvml, clock=lambda: AT) as gpus:
        first = await gpus.sample()
        nvml.fail.clear()
        second = await gpus.sample()
    assert first.status is LocalGpuStatus.ERROR and "Unknown Error" in first.message
    assert second.status is LocalGpuStatus.OK


async def test_driver_library_mismatch_is_an_error_not_no_gpu() -> None:
    nvml = FakeNvml([h100()])
    nvml.fail[("nvmlInit", None)] = pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH
    reading = await read(nvml)
    assert reading.status is LocalGpuStatus.ERROR and "mismatch" in reading.message


async def test_a_non_nvml_exception_is_an_error_state() -> None:
    class Broken(FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            raise RuntimeError("driver said \x1b[2Jno")

    reading = await read(Broken([h100()]))
    assert reading.status is LocalGpuStatus.ERROR
    assert reading.message == "RuntimeError: driver said no"  # before any GPU: no index


# --- lifecycle ---------------------------------------------------------------------------------------


async def test_init_once_and_shutdown_on_close_off_the_loop() -> None:
    nvml = FakeNvml([h100()])
    gpus = LocalGpus(nvml, clock=lambda: AT)
    await asyncio.gather(*(gpus.sample() for _ in range(4)))
    assert nvml.inits == 1 and nvml.shutdowns == 0
    await gpus.close()
    await gpus.close()
    assert nvml.shutdowns == 1
    assert threading.get_ident() not in nvml.threads


async def test_close_without_a_sample_touches_nothing() -> None:
    nvml = FakeNvml([h100()])
    await LocalGpus(nvml).close()
    assert nvml.calls == []
