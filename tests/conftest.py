"""Shared test setup.

- Tests never read the developer's own config, data or SSH files: HOME and the
  XDG directories point into a temporary directory for the whole session.
- SVG snapshots live in the top-level snapshots/ folder, one folder per test module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_ROOT = ROOT / "snapshots"


def _isolate_home(base: Path) -> None:
    for var, sub in (
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "home/.config"),
        ("XDG_DATA_HOME", "home/.local/share"),
        ("XDG_STATE_HOME", "home/.local/state"),
        ("XDG_CACHE_HOME", "home/.cache"),
    ):
        path = base / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)
    for var in ("AICONSOLE_CONFIG", "AICONSOLE_DATA_DIR", "TENSORDOCK_API_KEY"):
        os.environ.pop(var, None)


@pytest.fixture(scope="session")
def mlflow_real(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One real `mlflow server` on loopback for the whole session (tests/mlflow_server.py):
    installed into its own environment the first time, started once, stopped at the end."""
    from mlflow_server import mlflow_server

    yield from mlflow_server(request.config, tmp_path_factory)


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    _isolate_home(Path(tempfile.mkdtemp(prefix="aiconsole-tests-")))
    _store_snapshots_at_top_level()


def _store_snapshots_at_top_level() -> None:
    """pytest-textual-snapshot writes to tests/__snapshots__; we keep them in snapshots/."""
    import pytest_textual_snapshot

    base = pytest_textual_snapshot.SVGImageExtension

    class TopLevelSVGExtension(base):
        @classmethod
        def dirname(cls, *, test_location) -> str:
            return str(SNAPSHOT_ROOT / test_location.basename)

    # snap_compare looks the class up on the module each time it is called.
    pytest_textual_snapshot.SVGImageExtension = TopLevelSVGExtension
