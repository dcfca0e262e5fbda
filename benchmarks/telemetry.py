"""GPU telemetry over SSH: what the console pays for a fleet, next to a naive poller (issue 3).

How to run (from the repository root, with the project's virtualenv):

    python benchmarks/telemetry.py                  # 100 VMs x 8 GPUs, 1 s; 60 s windows (~4.5 min)
    python benchmarks/telemetry.py --vms 2          # the small-fleet figure
    python benchmarks/telemetry.py --variants stream,naive --stream-seconds 20 --naive-seconds 10

Exit status 0; 2 when a variant failed or received too few frames (its figures mean nothing).

The fleet. A SEPARATE process (benchmarks/_telemetry_servers.py) runs one asyncssh server
per VM, each on its own 127.0.0.1 port with its own host key, whose shell is the demo's
`GpuHost` (`--gpus` simulated RTX 4090s, real nvidia-smi CSV). One server per VM rather
than one server for all: that is what a fleet is (a handshake per VM against a distinct
host key and port). Its CPU is not the console's; it is shown beside each row because it
shares this machine's cores. Those servers send no SSH_MSG_IGNORE before every packet
(asyncssh does by default, OpenSSH's sshd does not; `--asyncssh-ignore` puts it back):
left in, each round would reach the console as two packets.

The console side. Each variant runs in its own fresh Python process (a "worker",
benchmarks/_telemetry_worker.py), one after another, so windows never overlap and each
peak RSS is its own. The worker is the console side and measures itself, on the console's
own event loop (services/event_loop.py: network wakeups spaced 40 ms apart), whatever
the variant:

Two persistent variants, the second being the first less everything but SSH and parsing:

- feed: the console's path, one `RemoteGpuFeed` per VM (services/gpu_feed.py): one
  pooled connection (`SshPool`), one long-lived `nvidia-smi --query-gpu=... -lms <interval>`
  whose rounds go through one shared `RoundBatcher` (as in the telemetry hub) into
  `GpuStreamParser`, levels, history rings; `--query-compute-apps` when VRAM moves; plus
  `view(now)` of every host once an interval, as `status --json` reads it (the console's
  GPU view reads only the hosts on screen; the drawing is not included). The feeds' history rings are
  pre-filled to full length before the window (what 5 minutes of running gives: a view
  copies them, so an empty history would look cheaper than steady state). Without
  services/gpu_feed.py it falls back to the stream variant's path and says so.
  `--processes-interval` changes its compute-apps period (a large value turns it off).
- stream: the layer below the feed, read as the feed reads it: `SshPool.stream_lines`
  handing each round over in asyncssh's callback, a shared `RoundBatcher`,
  `GpuStreamParser`; latest frame per VM kept; nothing else.
- command: the same pooled connections, a new one-shot `nvidia-smi --query-gpu=...` per
  sample per VM (`SshPool.run`), parsed the same way.
- naive: a NEW connection per sample per VM (`asyncssh.connect`, one-shot command, parse,
  close). Its known_hosts and key are loaded once up front, which flatters it slightly.

Every variant spreads its VMs' phases evenly over the interval, as in a real fleet where
each VM's nvidia-smi prints at its own moment: the streams start one after another over
the first interval, the polled variants tick at their own offsets. (Streams started
together arrive in a few bursts, one wakeup for many rounds, which costs half as much:
measured 2.7 % against 6.2 % for the feed before the batching below.) A polled sample that
overruns its tick skips the ticks it missed rather than piling up.

Per worker: connections opened (pooled variants; timed), feeds/streams/pollers started,
wait until every VM delivered a frame, `--warmup` seconds more, then the window: CPU
time of the worker (getrusage RUSAGE_SELF user+sys, all threads) over the window's wall
time = share of one core; peak RSS (ru_maxrss) and current RSS (/proc/self/statm) at the
window's end; frames received per second (must be ~VMs / interval: a run that silently
got nothing cannot look cheap), frames with fewer GPUs than expected, errors (for the
feed: a VM not live at the end, or a restarted stream).

The whole console (variant `console`, benchmarks/_telemetry_console.py): the real
`aiconsole` program in a pseudo-terminal (`--ui-size`, 80x24 by default) with a config of
`--vms` always-on VMs streaming from the same servers, switched to its GPU tab; its
process's CPU (/proc, all threads) over the window and peak RSS. The terminal output is
run through a terminal emulator (pyte, `pip install -e ".[bench]"`) to prove the view
showed live, moving, non-stale rows; without pyte that check is skipped and said so.

Targets (issue 3), on this 2-core machine: SSH side <= 3 % of one core for 100 VMs and
<= 1 % for 2 VMs; persistent >= 20x cheaper than naive; RSS <= 120 MB; the whole console
(SSH, parsing and the view drawing) <= 5 %. "SSH side" is checked on `stream`, and the
20x on naive/stream (like for like: the naive poller does no feed work); `feed` is checked
against the same CPU limit and, being everything but the drawing, against the 5 %.
Options `--ciphers` (the console's encryption_algs) and `--asyncssh-ignore` are for
experiments; the defaults are what the console and a real sshd do.
Everything is loopback and bounded: the server process exits by itself after its lifetime
or when this script ends (its stdin closes), and is killed on the way out in any case.
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("feed", "stream", "command", "naive", "console")
READY_TIMEOUT_S = 60.0


# --- the orchestrator: server process, one worker per variant, the table ----------------------


def start_servers(args: argparse.Namespace, directory: Path, lifetime: float) -> tuple[subprocess.Popen, dict]:
    command = [sys.executable, str(HERE / "_telemetry_servers.py"), "--vms", str(args.vms),
               "--gpus", str(args.gpus), "--dir", str(directory), "--lifetime", str(lifetime)]
    if args.asyncssh_ignore:
        command.append("--asyncssh-ignore")
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            return proc, json.loads(line)
        if proc.poll() is not None:
            break
    raise RuntimeError(f"the SSH servers did not come up (exit status {proc.poll()})")


def stop_servers(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run_console(args: argparse.Namespace, seconds: float, fleet_file: Path, directory: Path, server_pid: int) -> dict:
    """The whole console: `aiconsole` in a pty on its GPU tab (benchmarks/_telemetry_console.py)."""
    scratch = directory / "console"
    scratch.mkdir(exist_ok=True)
    command = [sys.executable, str(HERE / "_telemetry_console.py"), "--fleet", str(fleet_file),
               "--vms", str(args.vms), "--gpus", str(args.gpus), "--seconds", str(seconds),
               "--size", args.ui_size, "--dir", str(scratch), "--server-pid", str(server_pid)]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=seconds + 180)
    except subprocess.TimeoutExpired:
        return {"variant": "console", "failed": "console run timed out"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"variant": "console", "failed": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def run_worker(args: argparse.Namespace, variant: str, seconds: float, fleet_file: Path, server_pid: int) -> dict:
    command = [sys.executable, str(HERE / "_telemetry_worker.py"), "--variant", variant, "--fleet", str(fleet_file),
               "--vms", str(args.vms), "--gpus", str(args.gpus), "--interval", str(args.interval),
               "--seconds", str(seconds), "--warmup", str(args.warmup), "--server-pid", str(server_pid),
               "--ciphers", args.ciphers, "--processes-interval", str(args.processes_interval)]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=seconds + args.warmup + 120)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "failed": "worker timed out"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"variant": variant, "failed": f"worker exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def print_table(args: argparse.Namespace, results: list[dict]) -> int:
    expected = args.vms / args.interval
    print(f"\nGPU telemetry over loopback SSH: {args.vms} VMs x {args.gpus} GPUs, every {args.interval:g} s "
          f"(expect {expected:g} frames/s); console side measured, servers in their own process")
    server = "asyncssh with its IGNORE before every packet" if args.asyncssh_ignore else \
        "asyncssh sending no IGNORE packets, like sshd"
    ciphers = args.ciphers or "the console's own order (AES-GCM first)"
    loops = sorted({r["loop"] for r in results if "loop" in r})
    print(f"servers: {server}; ciphers: {ciphers}; console-side loop: {', '.join(loops) or '?'}\n")
    head = f"{'variant':<8} {'VMs x GPUs':>10} {'window s':>8} {'frames/s':>9} {'CPU % core':>10} " \
           f"{'RSS peak MB':>11} {'RSS now MB':>10} {'server CPU %':>12} {'errors':>6}"
    print(head)
    print("-" * len(head))
    invalid = 0
    for r in results:
        if "failed" in r:
            print(f"{r['variant']:<8} FAILED: {r['failed']}")
            invalid += 1
            continue
        if r["variant"] == "console":
            continue  # its own block below: it is measured from outside, with no frame count
        size = f"{r['vms']} x {r['gpus']}"
        print(f"{r['variant']:<8} {size:>10} {r['window_s']:>8.1f} {r['frames_per_s']:>9.1f} "
              f"{r['cpu_pct']:>10.2f} {r['rss_peak_mb']:>11.1f} {r['rss_now_mb']:>10.1f} "
              f"{r['server_cpu_pct']:>12.1f} {r['errors']:>6}")
        # A window's edges can cut one round per VM; more missing than that means samples were lost.
        if r["frames_per_s"] * r["window_s"] < 0.95 * expected * r["window_s"] - r["vms"] or r["short_frames"]:
            print(f"  !! {r['variant']}: {r['frames_per_s']:.1f} frames/s of {expected:g} expected, "
                  f"{r['short_frames']} short frames, {r['skipped_ticks']} skipped ticks: figures not comparable")
            invalid += 1
        if r["errors"]:
            print(f"  !! {r['variant']}: last error: {r['last_error']}")
    by = {r["variant"]: r for r in results if "failed" not in r}
    if "console" in by:
        invalid += _print_console(args, by["console"])
    for r in by.values():
        print(f"{r['variant']:<8} = {LEGEND[r['variant']]}")
        if r["variant"] == "feed" and r.get("via") != "RemoteGpuFeed":
            print(f"  !! feed: services/gpu_feed.py missing: measured through {r.get('via')}")
    for r in by.values():
        if "connect_s" in r:
            print(f"{r['variant']}: {r['vms']} connections opened in {r['connect_s']:.2f} s; "
                  f"every VM's first frame after {r['first_frames_s']:.2f} s")
    print()
    _targets(args, by)
    return 2 if invalid else 0


def _print_console(args: argparse.Namespace, r: dict) -> int:
    """The whole console's row and the proof that it drew live data; 1 if that proof fails."""
    print(f"console  {r['vms']} x {r['gpus']} in a {r['size']} pty: window {r['window_s']:.1f} s, "
          f"CPU {r['cpu_pct']:.2f} % of one core, RSS peak {r['rss_peak_mb']:.1f} MB, "
          f"{r['terminal_bytes_per_s']:.0f} bytes/s to the terminal, servers {r['server_cpu_pct']:.1f} %")
    if r["screen"] != "checked":
        print(f"  screen {r['screen']}")
        return 0
    rows, stale, moved = r["gpu_rows_on_screen"], r["stale_rows"], r["values_moved"]
    print(f"  screen at the window's end: {rows} GPU rows, {stale} stale, values moved in the window: {moved}")
    print("  " + "\n  ".join(r["last_screen"].splitlines()))
    if rows < 10 or stale or not moved:
        print("  !! console: the GPU view did not show live rows: figures not comparable")
        return 1
    return 0


LEGEND = {
    "feed": "persistent, the console's path: RemoteGpuFeed per VM (pool, -lms stream, parser, levels, "
            "history, compute-apps when VRAM moves) + every host's view() once an interval; no drawing",
    "stream": "persistent, the layer below, read as the feed reads it: SshPool.stream_lines (callback) + RoundBatcher + GpuStreamParser per VM, nothing else",
    "command": "pooled connection per VM, a new one-shot nvidia-smi per sample (SshPool.run)",
    "naive": "a new SSH connection per sample per VM (asyncssh.connect, one-shot nvidia-smi, close)",
    "console": "the whole console: `aiconsole` in a pty on its GPU tab, every VM streaming (static provider)",
}


def _targets(args: argparse.Namespace, by: dict[str, dict]) -> None:
    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    def cpu(variant: str) -> float | None:
        return by[variant]["cpu_pct"] if variant in by else None

    ssh, feed = cpu("stream"), cpu("feed")
    limit = {100: 3.0, 2: 1.0}.get(args.vms)
    for name, value in (("SSH side (stream: pool + parser)", ssh), ("through the feed (no drawing)", feed)):
        if value is None:
            continue
        if limit is None:
            print(f"{name}, {args.vms} VMs: {value:.2f} % (targets are set for 100 and 2 VMs)")
        else:
            print(f"target: {name} <= {limit:g} % of one core for {args.vms} VMs: {value:.2f} %  "
                  f"{verdict(value <= limit)}")
    if by:
        peak = max(r["rss_peak_mb"] for r in by.values() if r["variant"] in ("feed", "stream")) \
            if {"feed", "stream"} & by.keys() else None
        if peak is not None:
            print(f"target: RSS <= 120 MB (console side without UI, peak): {peak:.1f} MB  {verdict(peak <= 120)}")
    naive = cpu("naive")
    for base, value in (("stream", ssh), ("feed", feed)):
        if value and naive is not None:
            ratio = naive / value
            if base == "feed":
                goal = "  (naive does no feed work)"
            elif args.vms == 100:
                goal = f"  target >= 20x: {verdict(ratio >= 20)}"
            else:
                goal = "  (the 20x target is set for 100 VMs)"
            print(f"ratio naive/{base} CPU: {ratio:.1f}x{goal}")
    if ssh and cpu("command") is not None:
        print(f"ratio command/stream CPU: {cpu('command') / ssh:.1f}x")
    console = by.get("console")
    if console is None:
        print("whole console with the GPU view drawing (target <= 5 %): not measured (variant console)")
        return
    what = f"whole console (SSH, parsing, the GPU view of {args.vms * args.gpus} GPUs drawing in {console['size']})"
    if limit is None:
        print(f"{what}: {console['cpu_pct']:.2f} % (targets are set for 100 and 2 VMs)")
    else:
        goal = 5.0 if args.vms == 100 else limit
        print(f"target: {what} <= {goal:g} %: {console['cpu_pct']:.2f} %  {verdict(console['cpu_pct'] <= goal)}")
    print(f"target: RSS <= 120 MB (whole console, peak): {console['rss_peak_mb']:.1f} MB  "
          f"{verdict(console['rss_peak_mb'] <= 120)}")


def orchestrate(args: argparse.Namespace) -> int:
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        print(f"unknown variant(s): {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 1
    windows = {"feed": args.seconds, "stream": args.stream_seconds, "command": args.command_seconds,
               "naive": args.naive_seconds, "console": args.seconds}
    lifetime = sum(windows[v] + args.warmup + 90 for v in variants) + 60
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aiconsole-telemetry-") as tmp:
        directory = Path(tmp)
        proc = None
        try:
            proc, fleet = start_servers(args, directory, lifetime)
            fleet_file = directory / "fleet.json"
            fleet_file.write_text(json.dumps(fleet))
            print(f"{args.vms} SSH servers up in process {fleet['pid']} "
                  f"({time.perf_counter() - began:.1f} s)", flush=True)
            results = []
            for variant in variants:
                print(f"measuring {variant} ({windows[variant]:g} s window)...", flush=True)
                if variant == "console":
                    results.append(run_console(args, windows[variant], fleet_file, directory, fleet["pid"]))
                else:
                    results.append(run_worker(args, variant, windows[variant], fleet_file, fleet["pid"]))
                time.sleep(1.0)  # let the servers wind down the last worker's channels
        finally:
            if proc is not None:
                stop_servers(proc)
    status = print_table(args, results)
    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window, feed variant")
    parser.add_argument("--stream-seconds", type=float, default=30.0, help="window, stream variant")
    parser.add_argument("--command-seconds", type=float, default=20.0, help="window, new command per sample")
    parser.add_argument("--naive-seconds", type=float, default=20.0, help="window, new connection per sample")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after every VM's first frame")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ",".join(VARIANTS))
    parser.add_argument("--ciphers", default="",
                        help="experiment: comma-separated encryption_algs for the console side (default: the pool's)")
    parser.add_argument("--asyncssh-ignore", action="store_true",
                        help="let the servers send asyncssh's IGNORE packet before every packet (sshd does not)")
    parser.add_argument("--processes-interval", type=float, default=0.0,
                        help="feed variant: its --query-compute-apps period in s (default: the feed's own)")
    parser.add_argument("--ui-size", default="80x24", help="console variant: the terminal, COLUMNSxROWS")
    return orchestrate(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
