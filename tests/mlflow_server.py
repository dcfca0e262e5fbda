"""A real `mlflow server` for the integration tests, kept out of the console's dependencies.

`mlflow` (pinned below) is installed once into its own virtual environment under pytest's
cache folder (`.pytest_cache/d/mlflow-<version>`, git-ignored; `AICONSOLE_MLFLOW_VENV`
overrides the place) and reused by later runs. `MlflowServer` starts it on loopback with a
SQLite store in a temporary folder, waits for `/health`, and can stop and start again on
the same port and store (a restart mid-tail). The install needs PyPI: without it the
tests are skipped with the reason, except under CI (`CI` set), where that is a failure.

The pin: mlflow 3.18.0 is on PyPI, but its `mlflow-skinny==3.18.0` was not yet published
on the index we install from, so 3.17.2 is the newest that installs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
import venv
from pathlib import Path

import httpx
import pytest

MLFLOW_VERSION = "3.17.2"
INSTALL_TIMEOUT = 900.0
START_TIMEOUT = 120.0


def _bin(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_mlflow(cache_dir: Path) -> Path:
    """The `mlflow` executable of a venv with the pinned mlflow, installing it the first time."""
    env = Path(os.environ.get("AICONSOLE_MLFLOW_VENV") or cache_dir)
    env.parent.mkdir(parents=True, exist_ok=True)
    marker = env / f".installed-{MLFLOW_VERSION}"
    with open(env.parent / f".{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest processes must not install at once
        if marker.exists():
            return _bin(env, "mlflow")
        venv.EnvBuilder(clear=True, with_pip=True).create(env)
        started = time.monotonic()
        done = subprocess.run(
            [str(_bin(env, "python")), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"mlflow=={MLFLOW_VERSION}"],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            reason = f"cannot install mlflow=={MLFLOW_VERSION} from PyPI: {done.stderr.strip()[-600:]}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        marker.write_text(f"installed in {time.monotonic() - started:.1f} s\n")
        return _bin(env, "mlflow")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store under `workdir`."""

    def __init__(self, mlflow: Path, workdir: Path) -> None:
        self.mlflow, self.workdir = mlflow, workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0
        """How long the last start took until /health answered."""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Job execution off: mlflow 3 otherwise starts a job runner and 7 huey workers for its
        # GenAI jobs, which keep both cores busy for ~15 s after /health answers.
        env = os.environ | {
            "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }  # fmt: skip
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - the server writes it
        started = time.monotonic()
        self._process = subprocess.Popen(
            [str(self.mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
             "--default-artifact-root", str(self.workdir / "artifacts"), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        log.close()
        self._wait_healthy(started)
        self.start_seconds = time.monotonic() - started

    def _wait_healthy(self, started: float) -> None:
        assert self._process is not None
        while time.monotonic() - started < START_TIMEOUT:
            if self._process.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self._process.returncode}): {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {START_TIMEOUT:g} s: {self.log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its own session: uvicorn and its workers
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, size: int = 2000) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""


def mlflow_server(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    """Generator for a fixture: yields a started `MlflowServer`, stops it afterwards."""
    mlflow = ensure_mlflow(config.cache.mkdir(f"mlflow-{MLFLOW_VERSION}"))
    server = MlflowServer(mlflow, tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["MLFLOW_VERSION", "MlflowServer", "ensure_mlflow", "mlflow_server"]
