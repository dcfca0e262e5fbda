"""`LocalGpus`: the GPUs of the machine the console runs on, read through NVML (nvidia-ml-py).

NVML is a C library: every call blocks, so all of them run in a worker thread
(`asyncio.to_thread`), one read at a time, and the event loop never waits on the driver.
NVML is initialised lazily, in that thread, on the first `sample()`, and shut down by
`close()`.

A reading is one of three things (`LocalGpuReading.status`):
- `ok`: a `GpuFrame` of every GPU, plus the processes holding GPU memory;
- `no-gpu`: no NVIDIA library or driver, or no device. This is what most laptops and
  jump hosts are, so it is a state to show, never an error. A missing library or
  driver is remembered (it will not appear while the console runs): later samples
  answer at once without calling NVML again;
- `error`: a real failure (a GPU fallen off the bus, an NVML/driver version mismatch
  after an upgrade, "Unknown Error"), with a sanitised message. NVML is shut down and
  initialised again on the next sample, which is how a reset GPU comes back.

A field one GPU cannot report (power on many boards: `NVMLError_NotSupported`) is None
in its sample, not a failed reading. pynvml before 11.5 returns names as bytes; both
forms are taken (decoded leniently by `sample_from_nvml`).

`nvml=` takes any object with the pynvml functions and error class used here; tests pass
a small stand-in with values captured on a real H100 (NVML has no wire protocol to fake).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from aiconsole.domain.gpu import GpuFrame, GpuProcess, GpuSample, sample_from_nvml
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.services.clock import utc_now

# NVML return codes (nvml.h; stable across driver versions, also pynvml's NVML_ERROR_*).
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_NOT_FOUND = 6
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_NO_DATA = 21
_ARGUMENT_VERSION_MISMATCH = 25
_DEPRECATED = 26
_NOT_READY = 27

_NO_GPU_REASONS = {
    _LIBRARY_NOT_FOUND: "no GPU: no NVIDIA driver library (libnvidia-ml) on this machine",
    _DRIVER_NOT_LOADED: "no GPU: the NVIDIA driver is not loaded",
}
_FIELD_CODES = frozenset(
    {_NOT_SUPPORTED, _NO_PERMISSION, _NOT_FOUND, _FUNCTION_NOT_FOUND, _NO_DATA,
     _ARGUMENT_VERSION_MISMATCH, _DEPRECATED, _NOT_READY}
)  # fmt: skip
"""Codes that mean "this GPU cannot tell this one value": the field is None, the read goes on."""
_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
_MIB = 1024 * 1024
_MESSAGE_LIMIT = 200


class LocalGpuStatus(StrEnum):
    OK = "ok"
    NO_GPU = "no-gpu"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LocalGpuReading:
    """One read of the local GPUs: a frame, "no GPU", or an error (never an exception)."""

    status: LocalGpuStatus
    at: datetime
    frame: GpuFrame | None = None
    """Every GPU, in index order, when `status` is ok."""
    processes: tuple[GpuProcess, ...] = ()
    """Processes holding GPU memory, on all GPUs (`gpu_uuid` says which)."""
    message: str = ""
    """Why there is no GPU, or what failed (sanitised, one line)."""

    @property
    def gpus(self) -> tuple[GpuSample, ...]:
        return self.frame.gpus if self.frame is not None else ()


class _NoGpu(Exception):
    """Raised inside the thread: there is no NVIDIA GPU to read (not an error)."""


class _GpuFailed(Exception):
    """Raised inside the thread: one GPU could not be read; the message names it."""




class LocalGpus:
    """Reads the local NVIDIA GPUs through NVML, off the event loop.

    `nvml`: the pynvml module (imported in the thread on first use when None).
    `clock`: stamps samples (timezone-aware). `processes`: also list GPU processes.
    """

    def __init__(
        self,
        nvml: Any | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        processes: bool = True,
    ) -> None:
        self._nvml = nvml
        self._clock = clock
        self._with_processes = processes
        self._initialised = False
        self._no_gpu: str | None = None  # why, once the library or driver was found missing
        self._turn = asyncio.Lock()  # one read (or close) at a time
        # A cancelled sample() leaves its thread running: this keeps the next one out of it.
        self._in_thread = threading.Lock()
        self.thread_ids: set[int] = set()
        """Threads NVML was called from (diagnostics; tests check it is never the loop's)."""

    async def sample(self) -> LocalGpuReading:
        """Read every local GPU once; never raises (cancellation aside)."""
        async with self._turn:
            if self._no_gpu is not None:
                return LocalGpuReading(LocalGpuStatus.NO_GPU, self._clock(), message=self._no_gpu)
            return await asyncio.to_thread(self._read)

    async def close(self) -> None:
        """Shut NVML down (in the worker thread) if it was initialised."""
        async with self._turn:
            if self._initialised:
                await asyncio.to_thread(self._shutdown)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- in the worker thread ------------------------------------------------------------

    def _read(self) -> LocalGpuReading:
        with self._in_thread:
            self.thread_ids.add(threading.get_ident())
            return self._read_locked()

    def _read_locked(self) -> LocalGpuReading:
        try:
            nvml = self._ensure_initialised()
            frame, processes = self._read_all(nvml)
        except _NoGpu as why:
            return LocalGpuReading(LocalGpuStatus.NO_GPU, self._clock(), message=str(why))
        except Exception as exc:  # NVML errors and anything else: an error state, never a crash
            self._shutdown_locked()  # start afresh next time: how a reset GPU or reloaded driver comes back
            return LocalGpuReading(LocalGpuStatus.ERROR, self._clock(), message=_describe(exc))
        return LocalGpuReading(LocalGpuStatus.OK, frame.at, frame=frame, processes=processes)

    def _ensure_initialised(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._no_gpu = "no GPU: nvidia-ml-py is not installed"
                raise _NoGpu(self._no_gpu) from None
            self._nvml = pynvml
        nvml = self._nvml
        if not self._initialised:
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                why = _NO_GPU_REASONS.get(_code(exc) or 0)
                if why is not None:
                    self._no_gpu = why
                    raise _NoGpu(why) from None
                raise
            self._initialised = True
        return nvml

    def _read_all(self, nvml: Any) -> tuple[GpuFrame, tuple[GpuProcess, ...]]:
        count = nvml.nvmlDeviceGetCount()
        if not count:
            raise _NoGpu("no GPU: the NVIDIA driver sees no device")
        samples: list[GpuSample] = []
        processes: list[GpuProcess] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                sample = self._read_gpu(nvml, index, handle)
                if self._with_processes:
                    processes += _read_processes(nvml, handle, sample.uuid)
            except Exception as exc:  # say which GPU failed; `_read_locked` makes it an error state
                raise _GpuFailed(f"GPU {index}: {_describe(exc)}") from exc
            samples.append(sample)
        return GpuFrame(samples[-1].at, tuple(samples)), tuple(processes)

    def _read_gpu(self, nvml: Any, index: int, handle: Any) -> GpuSample:
        field = _FieldReader(nvml)
        memory = field(nvml.nvmlDeviceGetMemoryInfo, handle)
        utilisation = field(nvml.nvmlDeviceGetUtilizationRates, handle)
        power_limit = field(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        return sample_from_nvml(
            index=index,
            uuid=field(nvml.nvmlDeviceGetUUID, handle) or "",
            name=field(nvml.nvmlDeviceGetName, handle) or "",
            temp_c=field(_temperature, nvml, handle),
            mem_used_bytes=getattr(memory, "used", None),
            mem_total_bytes=getattr(memory, "total", None),
            util_pct=getattr(utilisation, "gpu", None),
            power_mw=field(nvml.nvmlDeviceGetPowerUsage, handle),
            power_limit_mw=power_limit,
            at=self._clock(),
        )

    def _shutdown(self) -> None:
        with self._in_thread:
            self.thread_ids.add(threading.get_ident())
            self._shutdown_locked()

    def _shutdown_locked(self) -> None:
        if not self._initialised:
            return
        self._initialised = False
        with contextlib.suppress(Exception):  # nothing to do about a failed shutdown; the next init tells
            self._nvml.nvmlShutdown()


class _FieldReader:
    """Calls one NVML getter: a value, or None when this GPU cannot report it."""

    def __init__(self, nvml: Any) -> None:
        self._error = nvml.NVMLError

    def __call__(self, getter: Callable[..., Any], *args: Any) -> Any:
        try:
            return getter(*args)
        except self._error as exc:
            if _code(exc) in _FIELD_CODES:
                return None
            raise
        except UnicodeDecodeError:  # pynvml decodes names strictly; one bad byte is no failure
            return None


def _temperature(nvml: Any, handle: Any) -> int | None:
    # nvmlDeviceGetTemperature is deprecated for CUDA 14; the V form exists from driver 550.
    getter = getattr(nvml, "nvmlDeviceGetTemperature", None)
    if getter is not None:
        try:
            return getter(handle, _TEMPERATURE_GPU)
        except nvml.NVMLError as exc:
            if _code(exc) not in (_FUNCTION_NOT_FOUND, _DEPRECATED):
                raise
    getter_v = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
    return getter_v(handle, _TEMPERATURE_GPU) if getter_v is not None else None


def _read_processes(nvml: Any, handle: Any, gpu_uuid: str) -> list[GpuProcess]:
    field = _FieldReader(nvml)
    running = field(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    processes = []
    for process in running:
        pid = int(getattr(process, "pid", 0) or 0)
        used = getattr(process, "usedGpuMemory", None)  # None where the OS cannot tell (WDDM)
        raw_name = field(nvml.nvmlSystemGetProcessName, pid) or ""
        if isinstance(raw_name, bytes):
            raw_name = raw_name.decode("utf-8", errors="replace")
        name = sanitize_line(str(raw_name), _MESSAGE_LIMIT)
        processes.append(GpuProcess(pid, name, used / _MIB if used is not None else None, gpu_uuid))
    return processes


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _describe(exc: BaseException) -> str:
    """'NVML: GPU is lost (code 15)', from any exception, sanitised to one line."""
    if isinstance(exc, _GpuFailed):
        return str(exc)
    code = _code(exc)
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ calls into the library, which may be gone
        text = ""
    if code is not None:
        return sanitize_line(f"NVML: {text or 'error'} (code {code})", _MESSAGE_LIMIT)
    return sanitize_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, _MESSAGE_LIMIT)
