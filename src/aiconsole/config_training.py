"""The `[training]` section: how often the MLflow servers of the fleet are read.

[training]
refresh_s = 15        # runs list of every mlflow service on a running VM
tail_s = 3            # the shown run's metrics, while the Training tab shows
max_runs = 200        # newest runs read per server
stop_check_timeout_s = 10
"""

# No `from __future__ import annotations`: see config.py.
from pydantic import Field

from aiconsole.config_fields import Section


class TrainingConfig(Section):
    refresh_s: float = Field(default=15.0, ge=2, le=3600)
    """Seconds between readings of each MLflow server's runs (while its VM runs). A RUNNING run
    found there counts as activity for the VM's idle timer, so keep this well under the VM's
    idle_stop_minutes."""
    tail_s: float = Field(default=3.0, ge=0.5, le=600)
    """Seconds between polls of the shown run's metrics while the Training tab shows; each poll
    asks only for the points logged since the last one."""
    max_runs: int = Field(default=200, ge=1, le=50_000)
    """At most this many runs are read per server, newest first (RUNNING runs always come first
    in the tab)."""
    stop_check_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """Before a VM with an MLflow service is stopped, its RUNNING runs are asked for; an answer
    slower than this counts as "could not check", which asks for the same second confirmation."""
