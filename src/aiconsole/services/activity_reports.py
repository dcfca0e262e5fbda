"""`ActivityReports`: each activity source's callback, feeding the monitor's idle timers.

The console and `aiconsole watch` build the same sources (the telemetry hub's GPU feeds,
the MLflow watch, the model library's pulls, the SSH/Ollama probe) and hand them these
callbacks, so that both count the same things busy, with the same leases:

    reports = ActivityReports(monitor, settings)
    await hub.run(monitor.powers, on_gpu=reports.gpu)
    build_training(..., on_activity=reports.mlflow)

A lease is how long a report holds its VM busy if its source stops reporting (a crashed
console, a stopped watch): about three of the source's own intervals, so one late report
never lets the VM look idle.
"""

from __future__ import annotations

from datetime import datetime

from aiconsole.domain.idle import ActivityKind

UNKNOWN_LEASE_S = 30.0
"""A GPU that cannot be read is reported every second; the lease spares the ledger a write
a second (a lease is written when half spent) and lapses soon after the feed goes away."""
PULL_LEASE_S = 30.0
"""A pull reports itself about once a second while bytes come."""


class ActivityReports:
    def __init__(self, monitor, settings) -> None:
        self.monitor = monitor
        self.mlflow_lease_s = 3 * settings.training.refresh_s

    def gpu(self, vm: str, busy: bool | None, at: datetime, why: str) -> None:
        """The hub's verdict each second: busy (an instant: it repeats while busy), or unknown."""
        if busy:
            self.monitor.note_activity(vm, ActivityKind.GPU, "GPU busy", at)
        elif busy is None:
            self.monitor.note_activity(vm, ActivityKind.GPU, why, at, lease_s=UNKNOWN_LEASE_S, unknown=True)

    def pull(self, vm: str, detail: str) -> None:
        self.monitor.note_activity(vm, ActivityKind.PULL, detail, lease_s=PULL_LEASE_S)

    def mlflow(self, vm: str, detail: str, unknown: bool = False) -> None:
        """RUNNING runs (or, unknown, a server that cannot be read), every `refresh_s`."""
        self.monitor.note_activity(vm, ActivityKind.MLFLOW, detail, lease_s=self.mlflow_lease_s, unknown=unknown)

    def probe(self, vm: str, kind: str, detail: str, *, until: datetime | None, unknown: bool = False) -> None:
        """The probe's SSH sessions and Ollama keep-alives: leases it sets itself."""
        self.monitor.note_activity(vm, kind, detail, until=until, unknown=unknown)
