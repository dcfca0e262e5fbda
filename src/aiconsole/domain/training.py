"""The fleet's MLflow servers and their runs as the Training tab and the stop guard see them.

Pure: built by `services.training.TrainingWatch` from what each server answered, with the
time passed in. A server's runs stay shown after a failed reading, marked stale with their
age and the error: the operator must never take an hour-old RUNNING for a live one.

Why a RUNNING run is not proof of life: MLflow marks a run ended only when the training
script says so. A script killed by the OOM killer, a reboot or `kill -9` leaves its run
RUNNING for ever; the only hint is that its metrics stopped coming, so the tab shows the
age of the last metric beside the status, and says so once it is old.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aiconsole.domain.format import format_duration
from aiconsole.domain.mlflow import RUNNING, Experiment, Run, sort_runs
from aiconsole.domain.sanitize import sanitize_line

QUIET_AFTER = timedelta(minutes=10)
"""A RUNNING run with no metric for this long may be dead: the tab says how it can happen."""
STATUS_FILTERS = ("all", RUNNING, "FINISHED", "FAILED", "KILLED")
"""What the status filter cycles through."""
_NAME_LIMIT = 80


@dataclass(frozen=True, slots=True)
class TrackingServer:
    """One `mlflow` service of the fleet (built from the config by `assembly.tracking_servers`)."""

    vm: str
    service: str
    api_key_env: str | None = None
    username: str | None = None
    hourly_usd: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.vm}/{self.service}"


@dataclass(frozen=True, slots=True)
class ServerRuns:
    """What one server last answered, and whether its latest reading failed."""

    server: TrackingServer
    experiments: tuple[Experiment, ...] = ()
    runs: tuple[Run, ...] = ()
    """Sorted: RUNNING first, then by status, newest first."""
    fetched_at: datetime | None = None
    """When `runs` were read; None: never (yet)."""
    error: str = ""
    """The latest reading's failure (sanitised); "" when it succeeded."""
    vm_running: bool = True
    """False while its VM is not running: nothing is asked, the last runs stay as they were."""

    def age(self, now: datetime) -> float | None:
        return None if self.fetched_at is None else max(0.0, (now - self.fetched_at).total_seconds())

    def is_stale(self, now: datetime, max_age_s: float) -> bool:
        """Shown data that is not current: a failed reading, a stopped VM, or too old."""
        if self.fetched_at is None:
            return False  # nothing shown, nothing to mistake
        age = self.age(now) or 0.0
        return bool(self.error) or not self.vm_running or age > max_age_s

    def experiment_name(self, experiment_id: str) -> str:
        for experiment in self.experiments:
            if experiment.id == experiment_id:
                return experiment.name
        return experiment_id

    @property
    def running(self) -> tuple[Run, ...]:
        return tuple(run for run in self.runs if run.is_running)


@dataclass(frozen=True, slots=True)
class TrainingSnapshot:
    at: datetime
    servers: tuple[ServerRuns, ...] = field(default_factory=tuple)

    def server(self, vm: str, service: str) -> ServerRuns | None:
        return next((s for s in self.servers if (s.server.vm, s.server.service) == (vm, service)), None)


def with_runs(previous: ServerRuns, experiments: Sequence[Experiment], runs: Iterable[Run], at: datetime) -> ServerRuns:
    """A successful reading: the new runs, RUNNING first."""
    return ServerRuns(previous.server, tuple(experiments), tuple(sort_runs(runs)), at, "", True)


def with_error(previous: ServerRuns, error: str) -> ServerRuns:
    """A failed reading: the last runs stay, marked by the error."""
    return ServerRuns(previous.server, previous.experiments, previous.runs, previous.fetched_at, error, True)


def run_label(run: Run) -> str:
    """The run's name as it may be shown (sanitised, bounded), its id when it has none."""
    return sanitize_line(run.name or run.id[:12], _NAME_LIMIT)


def last_metric_at(run: Run) -> datetime | None:
    """When the run last logged any metric (from the latest point of each)."""
    times = [point.timestamp for point in run.latest.values()]
    return max(times) if times else None


def quiet_for(run: Run, now: datetime) -> float | None:
    """Seconds since the run's last metric (None: it has none)."""
    last = last_metric_at(run)
    return None if last is None else max(0.0, (now - last).total_seconds())


KILLED_CAVEAT = "a run killed without ending stays RUNNING in MLflow"


def last_metric_note(run: Run, now: datetime) -> str:
    """ "last metric 12s ago" (or "no metric logged yet")."""
    quiet = quiet_for(run, now)
    return "no metric logged yet" if quiet is None else f"last metric {format_duration(quiet)} ago"


def is_quiet(run: Run, now: datetime) -> bool:
    """A RUNNING run with no metric for `QUIET_AFTER`: it may have been killed."""
    quiet = quiet_for(run, now)
    return run.is_running and quiet is not None and quiet >= QUIET_AFTER.total_seconds()


def running_note(run: Run, now: datetime) -> str:
    """One line for a RUNNING run: the last metric's age, and the caveat when quiet."""
    note = last_metric_note(run, now)
    return f"{note} — {KILLED_CAVEAT}" if is_quiet(run, now) else note


def activity_detail(runs: Sequence[Run]) -> str:
    """The idle timer's reason for RUNNING runs: "MLflow run lora-r16 RUNNING"."""
    names = [run_label(run) for run in runs]
    if len(names) == 1:
        return f"MLflow run {names[0]} RUNNING"
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"MLflow runs {shown} RUNNING"


def filter_runs(runs: Iterable[Run], status: str = "all", name: str = "") -> list[Run]:
    """Runs with `status` ("all" for any) whose name holds `name` (case-insensitive)."""
    needle = name.casefold()
    return [
        run
        for run in runs
        if (status == "all" or run.status == status) and (not needle or needle in run.name.casefold())
    ]


def next_status_filter(current: str) -> str:
    index = STATUS_FILTERS.index(current) if current in STATUS_FILTERS else -1
    return STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]


@dataclass(frozen=True, slots=True)
class StopCheck:
    """What the stop guard found on a VM before stopping it."""

    vm: str
    running: tuple[tuple[TrackingServer, Run], ...] = ()
    unreadable: tuple[tuple[TrackingServer, str], ...] = ()
    """Servers that could not be asked, with why: a run may be going there."""
    failed: str = ""
    """The check itself could not be made (why): nothing is known, so nothing is clear."""

    @property
    def clear(self) -> bool:
        return not self.running and not self.unreadable and not self.failed

    @property
    def run_names(self) -> list[str]:
        return [run_label(run) for _, run in self.running]

    def warnings(self, now: datetime) -> list[str]:
        """One line per reason, naming each run: what the operator must read before confirming."""
        lines = [
            f"MLflow run {run_label(run)} is RUNNING on {self.vm} ({server.service}; {running_note(run, now)})"
            for server, run in self.running
        ]
        lines += [
            f"MLflow on {server.label} could not be checked ({error}): a run may still be going"
            for server, error in self.unreadable
        ]
        if self.failed:
            lines.append(f"what runs on {self.vm} could not be checked ({self.failed})")
        return lines
