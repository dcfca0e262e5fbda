"""MLflow's experiments, runs and metric points as the console sees them (pure: no I/O, no clock).

Values arrive as MLflow's JSON writes them (protobuf JSON): a float, or the strings
"NaN", "Infinity", "-Infinity". MLflow's SQL store cannot hold an infinity and stores
±sys.float_info.max instead, so that value is read back as ±inf: what was logged.
Nothing here raises on a strange value; an unreadable one becomes NaN.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

RUNNING = "RUNNING"
SCHEDULED = "SCHEDULED"
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
TERMINAL_STATUSES = frozenset({FINISHED, FAILED, KILLED})
# RUNNING first: what the operator watches; then what may still start; then the ended.
_STATUS_ORDER = {RUNNING: 0, SCHEDULED: 1, FAILED: 2, KILLED: 3, FINISHED: 4}

_SPECIAL = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    name: str
    lifecycle_stage: str = "active"


@dataclass(frozen=True, slots=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: datetime

    @property
    def identity(self) -> tuple[str, int, datetime, str]:
        """Equal for the same logged point; NaN-safe (NaN != NaN, its repr is equal)."""
        return (self.key, self.step, self.timestamp, repr(self.value))


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    name: str
    experiment_id: str
    status: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    user: str = ""
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest: dict[str, MetricPoint] = field(default_factory=dict)
    """The last point of each metric, as the server reports it with the run."""

    @property
    def is_running(self) -> bool:
        return self.status == RUNNING

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def metric_value(raw: Any) -> float:
    """A metric value off the wire as a float; NaN/±Infinity kept, garbage becomes NaN."""
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, (int, float)):
        value = float(raw)
    elif isinstance(raw, str):
        special = _SPECIAL.get(raw.strip().lower())
        if special is not None:
            return special
        try:
            value = float(raw)
        except ValueError:
            return math.nan
    else:
        return math.nan
    if abs(value) == sys.float_info.max:  # how MLflow's SQL store keeps ±inf
        return math.copysign(math.inf, value)
    return value


def from_millis(raw: Any) -> datetime | None:
    """MLflow's epoch milliseconds (number or string) as an aware UTC datetime; 0/absent -> None."""
    try:
        millis = int(raw)
    except (TypeError, ValueError):
        return None
    if millis <= 0:
        return None
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def status_rank(status: str) -> int:
    return _STATUS_ORDER.get(status, len(_STATUS_ORDER))


def sort_runs(runs: Iterable[Run]) -> list[Run]:
    """RUNNING first, then by status; newest start first within a status."""

    def key(run: Run) -> tuple[int, float]:
        started = run.start_time.timestamp() if run.start_time else 0.0
        return (status_rank(run.status), -started)

    return sorted(runs, key=key)


def run_duration(run: Run, now: datetime) -> timedelta | None:
    """How long the run went (ended) or has gone so far (not ended); None without a start."""
    if run.start_time is None:
        return None
    end = run.end_time or (now if not run.is_finished else None)
    if end is None:
        return None
    return max(end - run.start_time, timedelta(0))
