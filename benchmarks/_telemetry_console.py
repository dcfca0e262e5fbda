"""The whole console, measured from outside: `aiconsole` in a pty, its GPU view drawing the fleet.

Used by telemetry.py (`--with-ui`); run on its own for experiments:

    python benchmarks/_telemetry_console.py --fleet FLEET.json --vms 100 --seconds 60 [--size 80x24]

The console is the real program (`python -m aiconsole --config X`), started in a
pseudo-terminal of `--size` like a user's terminal over SSH, with a config of `--vms`
always-on VMs whose `ssh` targets are the benchmark's servers (known_hosts and client key
from the fleet's ready line). After start-up it is sent `2` (the GPU tab) and left to
run: every VM streams nvidia-smi once a second, and the GPU view redraws the rows on
screen once a second. Measured over the window, for the console's process alone (all its
threads): CPU from /proc/PID/stat (utime + stime) over wall time = share of one core; peak
RSS (VmHWM). Everything it writes to the terminal is read, so the pty never blocks it.

Proof that it drew live data (a quiet console would look cheap): the output goes through
a terminal emulator (`pyte`, the `bench` extra) and the screen at the window's start and
end is kept: the GPU rows must be there, none stale, and the values must have moved.
Without pyte it says the screen was not checked.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

from _proc import process_cpu_s, stop_session  # benchmarks/ is on sys.path: this runs as a script

START_TIMEOUT_S = 60.0


def write_config(fleet: dict, vms: int, directory: Path) -> Path:
    """A config with `vms` always-on VMs (provider static) streaming from the benchmark's servers."""
    ssh_config = directory / "ssh_config"
    ssh_config.write_text(f"Host *\n  IdentityFile {fleet['client_key']}\n  IdentitiesOnly yes\n")
    lines = [
        "[gpu]", "local = false", "",
        "[ssh]", f'known_hosts = "{fleet["known_hosts"]}"', f'config_file = "{ssh_config}"', "",
    ]  # fmt: skip
    for index, target in enumerate(fleet["targets"][:vms]):
        lines += ["[[vm]]", f'name = "vm{index:03d}"', 'provider = "static"', "poll_seconds = 30", f'ssh = "{target}"', ""]
    config = directory / "console.toml"
    config.write_text("\n".join(lines))
    return config


class Terminal:
    """The pty's other end: reads everything, and keeps a screen when pyte is installed."""

    def __init__(self, master: int, columns: int, rows: int) -> None:
        self.master = master
        self.bytes_read = 0
        try:
            import pyte
        except ImportError:
            self.screen = self.stream = None
        else:
            self.screen = pyte.Screen(columns, rows)
            self.stream = pyte.ByteStream(self.screen)

    def pump(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            ready, _, _ = select.select([self.master], [], [], min(left, 0.1))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    return
                self.bytes_read += len(chunk)
                if self.stream is not None:
                    self.stream.feed(chunk)

    def text(self) -> str | None:
        return None if self.screen is None else "\n".join(line.rstrip() for line in self.screen.display)

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


GPU_ROW = re.compile(r"^\s*vm\d{3}\s+\d+\s")


def check_screen(before: str | None, after: str | None) -> dict[str, Any]:
    """What the GPU view showed: rows, stale rows, and whether values moved in the window."""
    if before is None or after is None:
        return {"screen": "not checked (pyte is not installed: pip install -e '.[bench]')"}
    rows = [line for line in after.splitlines() if GPU_ROW.match(line)]
    return {
        "screen": "checked",
        "gpu_rows_on_screen": len(rows),
        "stale_rows": sum("stale" in row for row in rows),
        "values_moved": before != after,
        "last_screen": after,
    }


def measure(args: argparse.Namespace, fleet: dict, directory: Path) -> dict[str, Any]:
    columns, rows = (int(part) for part in args.size.split("x"))
    config = write_config(fleet, args.vms, directory)
    env = {
        **os.environ, "TERM": "xterm-256color", "COLORTERM": "", "HOME": str(directory),
        "XDG_DATA_HOME": str(directory / "data"), "XDG_CONFIG_HOME": str(directory / "config"),
    }  # fmt: skip
    env.pop("SSH_AUTH_SOCK", None)  # the key in the ssh config, no agent
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    command = [sys.executable, "-m", "aiconsole", "--config", str(config)]
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    terminal = Terminal(master, columns, rows)
    result: dict[str, Any] = {
        "variant": "console", "vms": args.vms, "gpus": args.gpus, "size": args.size, "key": args.key,
    }  # fmt: skip
    try:
        terminal.pump(args.startup)  # the first frame, the panes, 100 handshakes (8 at a time)
        terminal.send(args.key.encode())  # the GPU tab by default
        terminal.pump(args.warmup)
        if proc.poll() is not None:
            return result | {"failed": f"the console exited with status {proc.returncode}: {terminal.text()}"}
        servers = args.server_pid or None
        before, bytes0, wall0 = terminal.text(), terminal.bytes_read, time.perf_counter()
        cpu0, server0 = process_cpu_s(proc.pid), process_cpu_s(servers) if servers else 0.0
        terminal.pump(args.seconds)
        wall = time.perf_counter() - wall0
        cpu, server = process_cpu_s(proc.pid) - cpu0, (process_cpu_s(servers) - server0) if servers else float("nan")
        result |= {
            "window_s": wall, "cpu_s": cpu, "cpu_pct": 100 * cpu / wall, "rss_peak_mb": _vm_hwm_mb(proc.pid),
            "terminal_bytes_per_s": (terminal.bytes_read - bytes0) / wall, "server_cpu_pct": 100 * server / wall,
        }  # fmt: skip
        result |= check_screen(before, terminal.text())
    finally:
        stop_session(proc, wait_s=10.0)
        os.close(master)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", required=True, help="the servers' ready line, as a JSON file")
    parser.add_argument("--vms", type=int, required=True)
    parser.add_argument("--gpus", type=int, default=8, help="for the report only: the servers decide")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--startup", type=float, default=15.0, help="seconds before the GPU tab is shown")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds on the GPU tab before the window")
    parser.add_argument("--size", default="80x24", help="terminal COLUMNSxROWS")
    parser.add_argument("--key", default="2", help="the key sent after start-up (2: the GPU tab)")
    parser.add_argument("--dir", required=True, help="a scratch directory")
    parser.add_argument("--server-pid", type=int, default=0, help="the SSH servers' process, for their CPU")
    args = parser.parse_args()
    fleet = json.loads(Path(args.fleet).read_text())
    print(json.dumps(measure(args, fleet, Path(args.dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
