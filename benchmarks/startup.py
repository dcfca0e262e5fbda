"""Time to first frame: `aiconsole --demo` against a bare Textual app, same run.

Each program is started in a pseudo-terminal of 80x24, as a user over SSH would
see it, and timed from spawn until the terminal has received a frame showing a
known piece of text. Three figures, runs interleaved so machine noise hits all alike:

- bare Textual app: an App with one Static ("bare-app-ready");
- aiconsole first frame: the header's "demo fleet", on screen from the first frame
  (the Fleet tab is then "Loading the fleet…");
- aiconsole fleet shown: the first VM pane ("inference"), after the settings are
  validated, the ledger read and the panes mounted. Provider answers come later still.

    python benchmarks/startup.py [--runs 15]

Both programs run from bytecode caches, as installed packages do (pip compiles a
wheel's modules when it installs them): an editable install under
PYTHONDONTWRITEBYTECODE=1 would otherwise recompile aiconsole's sources at every start.

Prints the median, min and max of each, and the ratio of the medians.
Targets (issue 2): ratio <= 1.3 and aiconsole under 0.4 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from _proc import stop_session  # benchmarks/ is on sys.path: this runs as a script

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 20.0


def time_to_text(argv: list[str], marker: bytes, env: dict[str, str]) -> float:
    """Seconds from spawn until `marker` appears in what the program wrote to the pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        while time.perf_counter() - started < TIMEOUT_S:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen += chunk
            if marker in seen:
                return time.perf_counter() - started
        raise RuntimeError(f"{argv} never showed {marker!r}; it wrote: {seen[-2000:]!r}")
    finally:
        stop_session(proc)
        os.close(master)


def summary(name: str, times: list[float]) -> str:
    return (
        f"{name:<22} median {statistics.median(times):.3f} s   "
        f"min {min(times):.3f} s   max {max(times):.3f} s   (n={len(times)})"
    )


def compile_bytecode() -> None:
    """Write aiconsole's .pyc files, as `pip install` does for an installed wheel."""
    import compileall

    import aiconsole

    compileall.compile_dir(Path(aiconsole.__file__).parent, quiet=1)
    compileall.compile_file(HERE / "_bare_app.py", quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compile_bytecode()
    data_dir = tempfile.mkdtemp(prefix="aiconsole-bench-")
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "AICONSOLE_DATA_DIR": data_dir}
    env.pop("TEXTUAL", None)
    aiconsole = [sys.executable, "-m", "aiconsole", "--demo"]
    programs = {
        "bare Textual app": ([sys.executable, str(HERE / "_bare_app.py")], b"bare-app-ready"),
        "aiconsole first frame": (aiconsole, b"demo fleet"),
        "aiconsole fleet shown": (aiconsole, b"inference"),
    }
    for argv, marker in programs.values():  # warm the bytecode caches; not counted
        time_to_text(argv, marker, env)
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(args.runs):
        for name, (argv, marker) in programs.items():
            times[name].append(time_to_text(argv, marker, env))
    for name, values in times.items():
        print(summary(name, values))
    # Each round runs the three back to back, so a per-round ratio cancels slow patches.
    rounds = zip(times["aiconsole first frame"], times["bare Textual app"])
    paired = statistics.median(ours / bare for ours, bare in rounds)
    print(f"median of per-round ratios (first frame / bare): {paired:.2f}x")
    bare = statistics.median(times["bare Textual app"])
    first = statistics.median(times["aiconsole first frame"])
    shown = statistics.median(times["aiconsole fleet shown"])
    print(f"first frame: {first:.3f} s = {first / bare:.2f}x bare   targets: < 0.400 s and <= 1.30x")
    print(f"fleet shown: {shown:.3f} s = {shown / bare:.2f}x bare   (no target; reported for honesty)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
