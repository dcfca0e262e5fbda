"""The `ui` variant of benchmarks/pull.py: the real console, headless at 80x24, pulling.

The app is the one `aiconsole` runs (`make_app`), on the console's own event loop, with a
config of one always-on VM whose `ollama` service is the benchmark's loopback server. It
switches to the Models tab, waits for the library's first answer, then starts the pull
as the pull dialog does on enter (`ModelsPane.start_pull`), and measures until it ends:

- frame interval: a 60 Hz timer in the app notes when each tick runs; the gaps between
  ticks are how long the screen could not have answered a key or painted (max and p99);
- progress shown: each time the tab's board is handed new lines, the pull's line is
  compared with the last one shown; a change is one progress update on screen;
- the process's CPU time over the pull (the UI's reader, parser and painting together).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

CONFIG = """\
[gpu]
local = false

[[vm]]
name = "inference"
provider = "static"

[[vm.service]]
name = "ollama"
kind = "ollama"
url = "{url}"
"""


def measure_ui(url: str, model: str) -> dict:
    from aiconsole.services.event_loop import run

    try:
        from aiconsole.ui.models_pane import ModelsPane  # noqa: F401
    except ImportError:
        return {"skipped": "no Models tab (ui/models_pane.py) in this tree"}
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.toml"
        config.write_text(CONFIG.format(url=url))
        return run(_measure(config, Path(folder), model))


async def _measure(config: Path, data: Path, model: str) -> dict:
    import os

    from aiconsole.domain.models import PullState
    from aiconsole.runtime import RuntimeRequest
    from aiconsole.ui.app import make_app

    os.environ["AICONSOLE_DATA_DIR"] = str(data)
    app = make_app(RuntimeRequest.for_user(config, dict(os.environ)))
    ticks: list[float] = []
    shown: list[tuple[float, str]] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await _until(lambda: app.console_tabs is not None and app.console_tabs.models.library is not None, 30)
        await pilot.press("4")
        pane = app.console_tabs.models
        await _until(lambda: pane.snapshot is not None and pane.snapshot.server("inference").fetched_at, 30)
        _watch_board(pane, model, shown)
        app.set_interval(1 / 60, lambda: ticks.append(time.perf_counter()))
        await asyncio.sleep(0.5)  # the timer settles before the pull
        started, cpu = time.perf_counter(), _cpu_s()
        pane.start_pull("inference", model)  # what the pull dialog does on enter
        library = pane.library
        await _until(lambda: library.snapshot().pulls[0].state is not PullState.RUNNING, 120, period=0.01)
        ended, cpu_used = time.perf_counter(), _cpu_s() - cpu
        await asyncio.sleep(0.3)  # the last frame
        status = library.snapshot().pulls[0]
    if status.state is not PullState.SUCCEEDED:
        return {"failed": f"pull ended {status.state.value}: {status.error}"}
    gaps = [(b - a) * 1000 for a, b in zip(ticks, ticks[1:]) if started <= b <= ended + 0.05]
    in_pull = [text for at, text in shown if started <= at <= ended + 0.3]
    changes = sum(1 for before, after in zip(in_pull, in_pull[1:]) if after and after != before)
    wall = ended - started
    return {
        "events": status.events,
        "wall_s": wall,
        "events_per_s": status.events / wall,
        "cpu_s": cpu_used,
        "frame_max_ms": max(gaps) if gaps else float("nan"),
        "frame_p99_ms": statistics.quantiles(gaps, n=100)[98] if len(gaps) >= 2 else float("nan"),
        "progress_updates": changes,
        "progress_per_s": changes / wall,
    }


def _cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _watch_board(pane, model: str, shown: list[tuple[float, str]]) -> None:
    """Note the pull's line each time the board is handed its lines (what the screen shows)."""
    board = pane.board
    original = board.show

    def show(lines, *args, **kwargs):
        text = next((line.plain for line in lines if model in line.plain and "%" in line.plain), "")
        shown.append((time.perf_counter(), text))
        return original(lines, *args, **kwargs)

    board.show = show


async def _until(condition, timeout: float, period: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the Models tab did not get there in time")
        await asyncio.sleep(period)
