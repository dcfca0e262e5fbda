"""GPU samples from nvidia-smi and NVML, and the parser for nvidia-smi's `-lms` stream.

Everything here reads untrusted remote output, so the rule is: a line that is not a
sample is skipped (never an exception), a field the tool could not read is None
(never 0, which would look like an idle GPU), and text fields pass the sanitiser.
The parser runs for every line of every host (100 hosts x 8 GPUs a second in the
benchmark), so the common line costs one `split` and one `float` per field; odd
fields take a slower path only when the fast one fails. Shapes seen on a real H100
are in tests/data/nvidia/.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple
from datetime import datetime
from functools import lru_cache

from aiconsole.domain.cost import require_aware
from aiconsole.domain.sanitize import sanitize_line

GPU_QUERY_FIELDS = (
    "index",
    "uuid",
    "name",
    "temperature.gpu",
    "memory.used",
    "memory.total",
    "utilization.gpu",
    "power.draw",
    "power.limit",
)
COMPUTE_APPS_QUERY = ("pid", "process_name", "used_memory", "gpu_uuid")
MAX_LINE_CHARS = 4096
"""A longer line is no sample: it is dropped, so a stream without newlines cannot grow memory."""

SOURCE_NVIDIA_SMI = "nvidia-smi"
SOURCE_NVML = "nvml"

_NUMERIC_FIELDS = len(GPU_QUERY_FIELDS) - 3  # after index, uuid, name
_NAME_LIMIT = 200
_UUID_LIMIT = 128
_INF = float("inf")
# Units nvidia-smi appends without `nounits`, in the scale `nounits` uses (so no GiB, mW).
_UNITS = frozenset({"MiB", "W", "%", "C", "MHz"})
_MIB = 1024 * 1024


def nvidia_smi_stream_command(interval_ms: int) -> str:
    """One long-lived nvidia-smi printing one line per GPU every `interval_ms`."""
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    fields = ",".join(GPU_QUERY_FIELDS)
    return f"nvidia-smi --query-gpu={fields} --format=csv,noheader,nounits -lms {int(interval_ms)}"


def nvidia_smi_apps_command() -> str:
    """The per-process GPU memory query, run now and then (not streamed)."""
    fields = ",".join(COMPUTE_APPS_QUERY)
    return f"nvidia-smi --query-compute-apps={fields} --format=csv,noheader,nounits"


class GpuSample(NamedTuple):
    """One GPU at one moment. A None value is one the tool could not read.

    A named tuple, not a frozen dataclass: the parser makes 800 a second for 100 VMs,
    and a frozen dataclass's `__init__` (one `object.__setattr__` per field) was 40 %
    of the cost of parsing a line. Immutable either way."""

    index: int
    uuid: str
    name: str
    temp_c: float | None
    mem_used_mib: float | None
    mem_total_mib: float | None
    util_pct: float | None
    power_w: float | None
    power_limit_w: float | None
    at: datetime
    source: str = SOURCE_NVIDIA_SMI
    """"nvidia-smi" or "nvml": they count used memory differently (see tests/data/nvidia)."""

    @property
    def mem_share(self) -> float | None:
        """Used / total VRAM in 0..1, or None when either is unknown or total is 0."""
        if self.mem_used_mib is None or not self.mem_total_mib:
            return None
        return self.mem_used_mib / self.mem_total_mib


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding GPU memory, from `--query-compute-apps`."""

    pid: int
    name: str
    used_mib: float | None
    gpu_uuid: str


@dataclass(frozen=True, slots=True)
class GpuFrame:
    """One complete reading of all GPUs of a host (those that answered), in index order."""

    at: datetime
    """When the last line of the reading arrived."""
    gpus: tuple[GpuSample, ...]


def _number(field: str) -> float | None:
    """A finite, non-negative number, or None for [N/A], blanks and garbage."""
    try:
        value = float(field)  # float() ignores surrounding blanks
    except ValueError:
        return _number_with_unit(field)
    # Comparisons are False for NaN, so NaN, inf and negatives (garbage for every field) go.
    return value if 0.0 <= value < _INF else None


def _number_with_unit(field: str) -> float | None:
    # Accepting "71.59 W" keeps a stream without `nounits` (a hand-run or older command) usable.
    head, _, unit = field.strip().rpartition(" ")
    if unit not in _UNITS:
        return None
    try:
        value = float(head)
    except ValueError:
        return None
    return value if 0.0 <= value < _INF else None


@lru_cache(maxsize=1024)
def _clean_name(raw: str) -> str:
    # Cached: a host repeats the same few names every interval, so each is sanitised once.
    return sanitize_line(raw, _NAME_LIMIT)


@lru_cache(maxsize=1024)
def _clean_uuid(raw: str) -> str:
    return sanitize_line(raw, _UUID_LIMIT)


def _parse_fields(line: str, at: datetime) -> GpuSample | None:
    parts = line.split(",")
    extra = len(parts) - len(GPU_QUERY_FIELDS)
    if extra < 0:
        return None  # headers' siblings, error text, blank lines: too few fields
    head = parts[0].strip()
    if not (head.isascii() and head.isdigit()):
        return None  # the header line, or text that happens to hold commas
    index = int(head)
    # nvidia-smi does not quote: a name with commas spreads over extra fields. The fields
    # before and after it are fixed, so the middle is the name.
    raw_name = parts[2] if extra == 0 else ",".join(parts[2 : 3 + extra])
    numbers = parts[3 + extra :]
    try:  # the common line: six plain numbers, converted in C, checked without a call each
        temp, used, total, util, power, limit = map(float, numbers)
        # Chained comparisons are False for NaN: NaN, inf and negatives take the slow path.
        plain = (0.0 <= temp < _INF and 0.0 <= used < _INF and 0.0 <= total < _INF
                 and 0.0 <= util < _INF and 0.0 <= power < _INF and 0.0 <= limit < _INF)  # fmt: skip
    except ValueError:
        plain = False
    if not plain:  # [N/A], blanks, units, garbage: field by field
        temp, used, total, util, power, limit = [_number(f) for f in numbers]
    return GpuSample(
        index, _clean_uuid(parts[1]), _clean_name(raw_name),
        temp, used, total, util, power, limit, at, SOURCE_NVIDIA_SMI,
    )  # fmt: skip


def parse_gpu_line(line: str, at: datetime) -> GpuSample | None:
    """One `--query-gpu` CSV line (fields as in GPU_QUERY_FIELDS), or None if it is no sample."""
    require_aware(at, "at")
    if len(line) > MAX_LINE_CHARS:
        return None
    return _parse_fields(line, at)


class GpuStreamParser:
    """Turns the chunks of one `nvidia-smi -lms` stream into complete `GpuFrame`s.

    nvidia-smi prints one line per GPU per interval, in index order, with no separator
    between rounds: a round ends when an index is not above the one before. Waiting for
    that line would show every reading one interval late, so a round is also emitted as
    soon as it reaches the last index of the last complete round. (Not "as soon as it has
    as many lines": when a GPU comes back, a count would cut the round before its last
    GPU, which would then vanish from the view for one interval.) A GPU that drops out
    makes a smaller frame; a last GPU that drops out makes its round wait for the next
    round's first line. When a GPU above the last index comes back after a round was
    emitted early, that round is reopened and emitted again, complete, when it ends:
    the later frame supersedes the earlier one. `flush` ends a stream: it emits the
    unfinished round (a round cut by a lost connection is a partial frame).

    Pure: no I/O and no clock. `skipped_lines` counts non-blank lines that were no
    sample (error text, headers, over-long lines), for diagnostics.
    """

    __slots__ = ("_discarding", "_emitted", "_partial", "_round", "_round_end", "skipped_lines")

    def __init__(self) -> None:
        self._partial = ""  # text after the last newline
        self._discarding = False  # inside an over-long line: drop until its newline
        self._round: list[GpuSample] = []
        self._emitted: tuple[GpuSample, ...] = ()  # the last round emitted early, to reopen
        self._round_end: int | None = None  # last index of the last complete round
        self.skipped_lines = 0

    def feed(self, chunk: str, at: datetime) -> list[GpuFrame]:
        """Take any piece of the stream; return the frames it completes (often none or one)."""
        require_aware(at, "at")
        if self._discarding:
            newline = chunk.find("\n")
            if newline < 0:
                return []
            self._discarding = False
            self.skipped_lines += 1
            chunk = chunk[newline + 1 :]
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_CHARS:
            self._partial = ""
            self._discarding = True
        frames: list[GpuFrame] = []
        for line in lines:
            self._take_line(line, at, frames)
        return frames

    def feed_lines(self, lines: Iterable[str], at: datetime) -> list[GpuFrame]:
        """Take complete lines (without their newline), as `RemoteLines.run` hands them over.

        The same as `feed("\\n".join(lines) + "\\n", at)`, without joining and splitting
        again what the SSH layer already split."""
        if self._partial or self._discarding:  # a chunk fed before ended mid-line: let `feed` join it
            return self.feed("".join(line + "\n" for line in lines), at)
        require_aware(at, "at")
        frames: list[GpuFrame] = []
        take = self._take_line
        for line in lines:
            take(line, at, frames)
        return frames

    def flush(self, at: datetime) -> list[GpuFrame]:
        """The stream ended: take a last line without newline and emit the unfinished round."""
        require_aware(at, "at")
        frames: list[GpuFrame] = []
        partial, self._partial = self._partial, ""
        if self._discarding:
            self._discarding = False
            self.skipped_lines += 1
        elif partial:
            self._take_line(partial, at, frames)
        if self._round:
            frames.append(self._close_round())
        # A round cut with its stream says nothing about where rounds end: keep `_round_end`.
        self._emitted = ()
        return frames

    def _take_line(self, line: str, at: datetime, frames: list[GpuFrame]) -> None:
        sample = _parse_fields(line, at) if len(line) <= MAX_LINE_CHARS else None
        if sample is None:
            if line.strip():
                self.skipped_lines += 1
            return
        current = self._round  # one list for the parser's life: closing a round clears it
        if current:
            if sample.index <= current[-1].index:
                frames.append(self._close_round())
                self._round_end = frames[-1].gpus[-1].index
        elif self._emitted and sample.index > self._emitted[-1].index:
            # The last round was emitted early but goes on: a GPU came back. Reopen it and
            # wait for its natural end to learn the new size.
            current.extend(self._emitted)
            self._round_end = None
        current.append(sample)
        self._emitted = ()
        if self._round_end is not None and sample.index >= self._round_end:
            frames.append(self._close_round())
            self._emitted = frames[-1].gpus

    def _close_round(self) -> GpuFrame:
        gpus = tuple(self._round)
        self._round.clear()
        return GpuFrame(gpus[-1].at, gpus)


def parse_compute_apps(text: str) -> tuple[GpuProcess, ...]:
    """`--query-compute-apps=pid,process_name,used_memory,gpu_uuid` output; junk lines skipped.

    Empty output means no process. A process name may hold commas (it can be a path),
    so the fields around it are taken from both ends.
    """
    processes: list[GpuProcess] = []
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < len(COMPUTE_APPS_QUERY) or len(line) > MAX_LINE_CHARS:
            continue
        head = parts[0].strip()
        if not (head.isascii() and head.isdigit()):
            continue
        name = _clean_name(",".join(parts[1:-2]))
        processes.append(GpuProcess(int(head), name, _number(parts[-2]), _clean_uuid(parts[-1])))
    return tuple(processes)


def _nvml_text(value: str | bytes, limit: int) -> str:
    # nvidia-ml-py before 11.5 returns bytes; decode leniently, like the SSH stream.
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return sanitize_line(text, limit)


def _scaled(value: float | None, divisor: float) -> float | None:
    if value is None:
        return None
    try:
        scaled = float(value) / divisor
    except (TypeError, ValueError):
        return None
    return scaled if 0.0 <= scaled < _INF else None


def sample_from_nvml(
    index: int,
    uuid: str | bytes,
    name: str | bytes,
    temp_c: float | None,
    mem_used_bytes: int | None,
    mem_total_bytes: int | None,
    util_pct: float | None,
    power_mw: float | None,
    power_limit_mw: float | None,
    at: datetime,
) -> GpuSample:
    """A `GpuSample` from the raw values NVML gives (bytes, mW); None where a call failed."""
    require_aware(at, "at")
    return GpuSample(
        index=int(index),
        uuid=_nvml_text(uuid, _UUID_LIMIT),
        name=_nvml_text(name, _NAME_LIMIT),
        temp_c=_scaled(temp_c, 1),
        mem_used_mib=_scaled(mem_used_bytes, _MIB),
        mem_total_mib=_scaled(mem_total_bytes, _MIB),
        util_pct=_scaled(util_pct, 1),
        power_w=_scaled(power_mw, 1000),
        power_limit_w=_scaled(power_limit_mw, 1000),
        at=at,
        source=SOURCE_NVML,
    )
