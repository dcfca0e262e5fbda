"""Shared by the benchmark scripts: ending a program started in its own session."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_session(proc: subprocess.Popen, wait_s: float = 5.0) -> None:
    """SIGTERM to the program's whole process group, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
