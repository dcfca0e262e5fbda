"""`aiconsole watch`, the headless money guard: its CPU and memory with 2 and with 100 VMs (issue 7).

How to run (from the repository root, with the project's virtualenv):

    python benchmarks/watch.py                          # baseline, 2 VMs, 100 VMs: 60 s windows (~5 min)
    python benchmarks/watch.py --seconds 20             # shorter windows while developing
    python benchmarks/watch.py --cases 100 --profile    # + a cProfile of the watch's loop over the window

Exit status 0; 1 when a target is missed; 2 when a case failed or the fleet saw no work (its
figures would mean nothing).

The watch. The real program, `python -m aiconsole watch --config FILE --duration S`, started as
a child process with a scratch HOME and `AICONSOLE_DATA_DIR` (its ledger and guard lock never
mix with the operator's), no SSH agent and no proxy variables. Its config is written here:
N TensorDock VMs (`hourly_usd = 0.35`, `idle_stop_minutes = 30`, the default `poll_seconds`),
each with an `ssh` target; even VMs are "inference" VMs with an Ollama service, odd ones
"training" VMs with an MLflow service, both `via_ssh` (the demo fleet's two paid VMs, repeated).
`[gpu] local = false` (no NVML on the box the watch runs on); a budget large enough that no
budget stop can fire; everything else at its default (GPU samples every 1 s, provider polls
every 15 s, MLflow runs read every 15 s, the SSH/Ollama probe every 20 s, guard heartbeats every
60 s, the money guard's step every 5 s, an orphan scan at start). So it runs every source the
watch has: the fleet monitor, one long-running nvidia-smi per VM over SSH, the MLflow watch,
the probe, the heartbeats, the orphan scan and the money guard.

The fleet. Loopback fakes in a SEPARATE process (this script with `--serve`), so that their
CPU is not the watch's: one `FakeTensorDock` holding the N instances, all running; one
`LoopbackSshServer` per VM (its own port and host key, one client key for all, as one identity
file), whose shell is the demo's `GpuHost` (`--gpus` simulated RTX 4090s, real nvidia-smi CSV),
which also answers `who` (no session) and the guard heartbeat's exec (as a VM with the guard
installed does); one `FakeOllama` (two models loaded) and one `FakeMlflow` (a running LoRA run),
reached by every VM's SSH forward. TensorDock's fake takes any number of requests a minute: the
watch keeps itself under TensorDock's documented 100 a minute (its own rate limiter), and what
it sent is counted. These servers send no SSH_MSG_IGNORE before each packet (asyncssh does by
default, OpenSSH's sshd does not; see benchmarks/telemetry.py).

The baseline, same run: the same watch with a config of 0 VMs (the program, its imports, its
event loop, the money guard's step, no fleet). Ratios are against it.

Measured, for the watch's process alone (all its threads), from /proc, once a second from its
spawn: CPU time (utime + stime of /proc/PID/stat). Start-up is the first `--startup` seconds
(default 30: imports, config, ledger, N SSH handshakes, and the first round of every periodic
source: the first provider polls, the first MLflow read at ~15 s and the first probe of the
running VMs at ~20 s, which imports the `ollama` client and builds an HTTP client per Ollama and
MLflow server); its CPU seconds are printed, and those of the first 10 s. The steady state is
the window of `--seconds` that follows: CPU time over wall time = share of one core, also per
`--slice` seconds so a start-up that bleeds into the window shows, and, for comparison, the same
length of window from t = 10 s (which holds the first probe round). The main thread's share (/proc/PID/task/PID/stat); VmRSS at the window's end and VmHWM
(peak RSS since spawn, start-up included). Child processes: the watch starts none (SSH is
asyncssh in the process); the script checks it. Proof of work over the window, counted by the
fakes: nvidia-smi rounds sent (≈ VMs x 1/s), streams open, TensorDock requests, `who` and
heartbeat execs, Ollama and MLflow requests; and the watch's own lines (errors among them).

Targets (issue 7), for 2 VMs: CPU under 1 % of one core, RSS under 100 MB (peak). 100 VMs has no
target; it is printed with its ratio to the 2-VM case.

`--profile`: one more run of the largest case with the watch under cProfile, enabled on the
watch's event loop at the window's start and disabled at its end (so start-up is left out);
the main thread only, and cProfile's own overhead inflates small calls (and counts each resumption
of a coroutine as a call). Its CPU is not reported.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _proc import CLK_TCK, process_cpu_s, stop_session  # benchmarks/ is on sys.path: this runs as a script

READY_TIMEOUT_S = 90.0
API_KEY_ENV = "BENCH_TENSORDOCK_API_KEY"
TARGET_CPU_PCT, TARGET_RSS_MB = 1.0, 100.0
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


# --- the fleet's side (this script with --serve, in its own process) ------------------------------


class BenchHost:
    """A VM's shell: the demo's `GpuHost`, plus the guard heartbeat's exec; counts what it runs."""

    HEARTBEAT_ANSWER = b"heartbeat=sent\ninstalled=yes\ntimer=active\nsilence_s=1800\ndry_run=no\n"

    def __init__(self, gpu_host, counts: Counter) -> None:
        self.gpu_host, self.counts = gpu_host, counts

    async def __call__(self, command: str, process) -> int | None:
        words = command.split()
        if command.startswith("if [ -d "):  # domain/guard.py heartbeat_status_command
            self.counts["heartbeat"] += 1
            process.stdout.write(self.HEARTBEAT_ANSWER)
            return 0
        if words[:1] == ["who"]:
            self.counts["who"] += 1
        elif any(word == "-lms" or word.startswith("--loop-ms") for word in words):
            self.counts["streams_started"] += 1
            self.counts["streams_open"] += 1
            try:
                return await self.gpu_host(command, process)
            finally:
                self.counts["streams_open"] -= 1
        elif any(word.startswith("--query-compute-apps") for word in words):
            self.counts["compute_apps"] += 1
        else:
            self.counts["other_exec"] += 1
        return await self.gpu_host(command, process)


async def serve(vms: int, gpus: int, directory: Path) -> None:
    import asyncssh

    from _telemetry_servers import send_no_ignore_packets  # the IGNORE packets sshd does not send
    from aiconsole.demo.gpu_host import GpuHost
    from aiconsole.demo.gpu_sim import INFERENCE_LOAD, TRAINING_LOAD
    from aiconsole.demo.mlflow_api import FakeMlflow
    from aiconsole.demo.ollama_api import FakeOllama
    from aiconsole.demo.ssh_server import LoopbackSshServer
    from aiconsole.demo.tensordock_api import FakeTensorDock

    send_no_ignore_packets()
    counts: Counter = Counter()

    def clock() -> float:  # GpuHost reads it once per nvidia-smi round (and per compute-apps answer)
        counts["smi_readings"] += 1
        return time.time()

    api_key = os.urandom(12).hex()
    tensordock = FakeTensorDock(api_key, rate_limit=10**9)
    ollama = FakeOllama(loaded={"deepseek-coder-v2:16b": -1, "llama3.1:8b": "1h"})
    mlflow = FakeMlflow()
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    servers, instances = [], []
    for index in range(vms):
        instance_id = f"{index:08x}-bench-4090"
        tensordock.add_instance(instance_id, f"vm{index:03d}", "Running")
        instances.append(instance_id)
        load = TRAINING_LOAD if index % 2 else INFERENCE_LOAD
        host = GpuHost(seed=1000 + index, load=load, count=gpus, clock=clock)
        server = LoopbackSshServer(directory / f"vm{index:03d}", BenchHost(host, counts))
        server.client_key = client_key  # one identity for the whole fleet, set before start()
        servers.append(await server.start())
    await tensordock.start()
    await ollama.start()
    await mlflow.start()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text("".join(server.known_hosts_line for server in servers))
    key_path = directory / "id_ed25519"
    client_key.write_private_key(key_path)
    key_path.chmod(0o600)

    def stats() -> dict[str, Any]:
        paths = Counter("list" if path.endswith("/instances") else method for method, path in tensordock.requests)
        return dict(counts) | {
            "tensordock_get": paths["GET"], "tensordock_list": paths["list"], "tensordock_post": paths["POST"],
            "ollama_requests": len(ollama.requests), "mlflow_requests": len(mlflow.requests),
            "ssh_connections": sum(server.connections_made for server in servers),
        }  # fmt: skip

    ready = {
        "pid": os.getpid(), "known_hosts": str(known_hosts), "client_key": str(key_path), "api_key": api_key,
        "tensordock_url": tensordock.url, "ollama_url": ollama.url, "mlflow_url": mlflow.url,
        "targets": [server.target for server in servers], "instances": instances,
    }  # fmt: skip
    print(json.dumps(ready), flush=True)
    await _answer_stdin(stats)
    for server in servers:
        await server.close()
    for fake in (mlflow, ollama, tensordock):
        await fake.close()


async def _answer_stdin(stats) -> None:
    """Until stdin's EOF (the benchmark ended, however it ended): each line read gets a stats line."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    fd, pending = sys.stdin.fileno(), b""

    def readable() -> None:
        nonlocal pending
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            done.set()
            return
        pending += data
        while b"\n" in pending:
            _, pending = pending.split(b"\n", 1)
            print(json.dumps(stats()), flush=True)

    loop.add_reader(fd, readable)
    await done.wait()


class Fleet:
    """The fakes' process, seen from the benchmark."""

    def __init__(self, vms: int, gpus: int, directory: Path) -> None:
        command = [sys.executable, __file__, "--serve", "--vms", str(vms), "--gpus", str(gpus), "--dir", str(directory)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._line(READY_TIMEOUT_S)

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the fakes did not answer (exit status {self.proc.poll()})")
        return json.loads(line)

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self._line(10.0)

    def cpu_s(self) -> float:
        return process_cpu_s(self.proc.pid)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF: the fakes close their servers and exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --- the watch's side --------------------------------------------------------------------------------


def write_config(ready: dict[str, Any] | None, vms: int, directory: Path) -> Path:
    """A config of `vms` TensorDock VMs on the fakes (see the module's docstring); 0 VMs: the baseline."""
    lines = [
        "[budget]", "daily_usd = 100000.0", "monthly_usd = 1000000.0", 'timezone = "UTC"', "",
        "[gpu]", "local = false", "",
    ]  # fmt: skip
    if ready is not None:
        ssh_config = directory / "ssh_config"
        ssh_config.write_text(f"Host *\n  IdentityFile {ready['client_key']}\n  IdentitiesOnly yes\n")
        lines += ["[ssh]", f'known_hosts = "{ready["known_hosts"]}"', f'config_file = "{ssh_config}"', ""]
        for index, (target, instance) in enumerate(zip(ready["targets"][:vms], ready["instances"], strict=True)):
            kind, url = ("mlflow", ready["mlflow_url"]) if index % 2 else ("ollama", ready["ollama_url"])
            lines += [
                "[[vm]]", f'name = "vm{index:03d}"', 'provider = "tensordock"', "hourly_usd = 0.35",
                "idle_stop_minutes = 30", f'ssh = "{target}"',
                "[vm.tensordock]", f'instance_id = "{instance}"', f'api_key_env = "{API_KEY_ENV}"',
                f'api_url = "{ready["tensordock_url"]}"',
                "[[vm.service]]", f'name = "{kind}"', f'kind = "{kind}"', f'url = "{url}"', "via_ssh = true", "",
            ]  # fmt: skip
    config = directory / "config.toml"
    config.write_text("\n".join(lines))
    return config


def watch_env(directory: Path, ready: dict[str, Any] | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key.lower() not in _PROXY_VARS}
    env.pop("SSH_AUTH_SOCK", None)  # the key in the ssh config, no agent
    env |= {
        "HOME": str(directory), "AICONSOLE_DATA_DIR": str(directory / "data"),
        "XDG_DATA_HOME": str(directory / "xdg-data"), "XDG_CONFIG_HOME": str(directory / "xdg-config"),
        "NO_PROXY": "127.0.0.1,localhost",
    }  # fmt: skip
    if ready is not None:
        env[API_KEY_ENV] = ready["api_key"]
    return env


WRAPPER = """\
import asyncio, cProfile, sys, time
import aiconsole.commands_watch as watch
from aiconsole.cli import main

started, ended, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
run_watch = watch.run_watch

async def wrapped(*args, **kwargs):
    if out:
        profile = cProfile.Profile()
        loop = asyncio.get_running_loop()
        # the window's edges, as wall-clock times: on the loop's thread, so the main thread is profiled
        loop.call_later(max(0.0, started - time.time()), profile.enable)
        loop.call_later(max(0.0, ended - time.time()), profile.disable)
    try:
        return await run_watch(*args, **kwargs)
    finally:
        if out:
            profile.disable()
            profile.dump_stats(out)

watch.run_watch = wrapped
sys.exit(main(sys.argv[4:]))
"""


def _status_kb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _thread_cpu_s(pid: int, tid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children(pid: int) -> list[str]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += (task / "children").read_text().split()
    return found


EARLY_S = 10.0
"""Start-up as the issue frames it: the first 10 s after spawn; a window from there is also printed."""


class Samples:
    """The watch's CPU seconds (process, main thread) at chosen moments after its spawn."""

    def __init__(self, pid: int, spawned: float) -> None:
        self.pid, self.spawned = pid, spawned
        self.at: dict[float, tuple[float, float]] = {}
        self.children: set[str] = set()

    def take_until(self, moments: list[float], on_moment=None) -> None:
        for moment in sorted(set(moments)):
            time.sleep(max(0.0, self.spawned + moment - time.perf_counter()))
            self.at[moment] = (process_cpu_s(self.pid), _thread_cpu_s(self.pid, self.pid))
            self.children |= set(_children(self.pid))
            if on_moment is not None:
                on_moment(moment)

    def pct(self, start: float, end: float, which: int = 0) -> float:
        return 100 * (self.at[end][which] - self.at[start][which]) / (end - start)


def run_case(args: argparse.Namespace, name: str, vms: int, scratch: Path, profile: Path | None = None) -> dict:
    """One watch for `--startup` + `--seconds`, measured from outside; the fakes in their own process."""
    directory = scratch / (name if profile is None else f"{name}-profile")
    directory.mkdir()
    fleet = Fleet(vms, args.gpus, directory / "fleet") if vms else None
    result: dict[str, Any] = {"case": name, "vms": vms, "gpus": args.gpus if vms else 0}
    proc = log = None
    start, end = args.startup, args.startup + args.seconds
    try:
        ready = fleet.ready if fleet else None
        config = write_config(ready, vms, directory)
        duration = end + 30  # a bound: the script ends it after the window
        watch = ["watch", "--config", str(config), "--duration", f"{duration:g}"]
        epoch = time.time()  # ~ the spawn, as wall-clock time for the profiler's window
        if profile is None:
            command = [sys.executable, "-m", "aiconsole", *watch]
        else:
            span = (f"{epoch + start:.3f}", f"{epoch + end:.3f}", str(profile))
            command = [sys.executable, "-c", WRAPPER, *span, *watch]
        log = (directory / "watch.log").open("w")
        spawned = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=watch_env(directory, ready),
                                start_new_session=True)  # fmt: skip
        samples = Samples(proc.pid, spawned)
        fleet_at: dict[float, tuple[dict, float]] = {}

        def at_moment(moment: float) -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"the watch exited with status {proc.returncode} at {moment:g} s")
            if moment == start:
                result["rss_start_mb"] = _status_kb(proc.pid, "VmRSS")
            if fleet is not None and moment in (start, end):
                fleet_at[moment] = (fleet.stats(), fleet.cpu_s())

        edges = [start + k * args.slice for k in range(int(args.seconds // args.slice) + 1)]
        moments = [float(second) for second in range(1, int(end) + 1)] + [EARLY_S, start, end, *edges]
        if EARLY_S + args.seconds <= end:
            moments.append(EARLY_S + args.seconds)
        try:
            samples.take_until([moment for moment in moments if 0 < moment <= end], at_moment)
        except RuntimeError as error:
            return result | {"failed": str(error), "log": _tail(directory)}
        fleet0, fleet1 = fleet_at.get(start, ({}, 0.0)), fleet_at.get(end, ({}, 0.0))
        counts0, counts1 = fleet0[0], fleet1[0]
        result |= {
            "window_s": args.seconds, "cpu_pct": samples.pct(start, end), "main_thread_pct": samples.pct(start, end, 1),
            "startup_cpu_s": samples.at[start][0], "early_cpu_s": samples.at[EARLY_S][0] if EARLY_S in samples.at else float("nan"),
            "early_window_pct": samples.pct(EARLY_S, EARLY_S + args.seconds)
            if EARLY_S + args.seconds in samples.at else None,
            "slices_pct": [samples.pct(a, b) for a, b in itertools.pairwise(edges)],
            "threads": len(list(Path(f"/proc/{proc.pid}/task").iterdir())),
            "rss_end_mb": _status_kb(proc.pid, "VmRSS"), "rss_peak_mb": _status_kb(proc.pid, "VmHWM"),
            "children": sorted(samples.children),
            "fleet": {key: counts1.get(key, 0) - counts0.get(key, 0) for key in counts1 if key != "streams_open"}
            | {"streams_open": counts1.get("streams_open", 0)},
            "fleet_cpu_pct": 100 * (fleet1[1] - fleet0[1]) / args.seconds if fleet else 0.0,
        }  # fmt: skip
    finally:
        if proc is not None:
            stop_session(proc, wait_s=15.0)  # SIGTERM: the watch releases the guard and exits 0
            result["exit_status"] = proc.returncode
        if log is not None:
            log.close()
        if fleet is not None:
            fleet.close()
    lines = (directory / "watch.log").read_text(errors="replace").splitlines()
    result["lines"] = len(lines)
    result["error_lines"] = [line for line in lines if " error: " in line or "Traceback" in line]
    result["first_line"] = next((line for line in lines if "watching" in line), lines[0] if lines else "")
    return result


def _tail(directory: Path) -> str:
    return (directory / "watch.log").read_text(errors="replace")[-1500:]


# --- the report --------------------------------------------------------------------------------------


def check_work(r: dict, seconds: float) -> list[str]:
    """Why the case's figures would mean nothing (the fleet saw no work from the watch), if so."""
    if not r["vms"]:
        return []
    fleet, problems = r["fleet"], []
    expected = r["vms"] * r["window_s"]  # one nvidia-smi round a second per VM ([gpu] interval_s = 1)
    if fleet.get("smi_readings", 0) < 0.9 * expected:
        problems.append(f"{fleet.get('smi_readings', 0)} nvidia-smi rounds sent, {expected:.0f} expected")
    if fleet.get("streams_open", 0) != r["vms"]:
        problems.append(f"{fleet.get('streams_open', 0)} nvidia-smi streams open at the end, {r['vms']} expected")
    # A poll is the account's shared `GET /instances` (one a round, 2+ VMs) or a VM's own GET.
    if seconds >= 60 and fleet.get("tensordock_get", 0) + fleet.get("tensordock_list", 0) == 0:
        problems.append("no TensorDock poll in the window")
    if seconds >= 25 and fleet.get("who", 0) == 0:
        problems.append("no `who` probe in the window")
    return problems


def print_report(args: argparse.Namespace, results: list[dict]) -> int:
    early = f"{EARLY_S:g}-{EARLY_S + args.seconds:g} s"
    print(f"\n`aiconsole watch`: CPU over t = {args.startup:g}-{args.startup + args.seconds:g} s after spawn "
          f"(and over t = {early}); {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          "the watch's process alone (all threads)\n")  # fmt: skip
    w = max(9, *(len(r["case"]) for r in results))
    head = (f"{'case':<{w}} {'VMs':>4} {'CPU % core':>10} {'main thr %':>10} {'vs base':>8} {'CPU % ' + early:>15} "
            f"{'CPU s 0-' + format(EARLY_S, 'g') + ' s':>11} {'CPU s 0-' + format(args.startup, 'g') + ' s':>11} "
            f"{'RSS MB at ' + format(args.startup, 'g') + ' s':>13} {'RSS end MB':>10} {'RSS peak MB':>11} "
            f"{'fakes CPU %':>11} {'exit':>4}")  # fmt: skip
    print(head)
    print("-" * len(head))
    by = {r["case"]: r for r in results}
    base = by.get("baseline")
    status = 0
    for r in results:
        if "failed" in r:
            print(f"{r['case']:<{w}} FAILED: {r['failed']}\n{r.get('log', '')}")
            status = 2
            continue
        ratio = f"{r['cpu_pct'] / base['cpu_pct']:.1f}x" if base and base.get("cpu_pct") else "-"
        early_pct = "-" if r["early_window_pct"] is None else f"{r['early_window_pct']:.2f}"
        print(f"{r['case']:<{w}} {r['vms']:>4} {r['cpu_pct']:>10.2f} {r['main_thread_pct']:>10.2f} {ratio:>8} "
              f"{early_pct:>15} {r['early_cpu_s']:>11.2f} {r['startup_cpu_s']:>11.2f} {r['rss_start_mb']:>13.1f} "
              f"{r['rss_end_mb']:>10.1f} {r['rss_peak_mb']:>11.1f} {r['fleet_cpu_pct']:>11.1f} "
              f"{r['exit_status']!s:>4}")  # fmt: skip
    print()
    for r in results:
        if "failed" in r:
            continue
        slices = " ".join(f"{value:.2f}" for value in r["slices_pct"])
        print(f"{r['case']}: CPU % per {args.slice:g} s of the window: {slices}; {r['threads']} threads; "
              f"child processes: {', '.join(r['children']) or 'none'}; {r['lines']} lines written")  # fmt: skip
        print(f"  {r['first_line']}")
        if r["vms"]:
            f, minutes = r["fleet"], r["window_s"] / 60
            print(f"  fleet over the window: {f.get('smi_readings', 0) / r['window_s']:.1f} nvidia-smi rounds/s "
                  f"({f.get('streams_open', 0)} streams open, {f.get('streams_started', 0)} started), "
                  f"TensorDock {f.get('tensordock_get', 0) / minutes:.0f} GET/min + {f.get('tensordock_list', 0)} lists, "
                  f"`who` {f.get('who', 0)}, heartbeats {f.get('heartbeat', 0)}, compute-apps {f.get('compute_apps', 0)}, "
                  f"Ollama {f.get('ollama_requests', 0)} requests, MLflow {f.get('mlflow_requests', 0)}, "
                  f"new SSH connections {f.get('ssh_connections', 0)}")  # fmt: skip
        for line in r["error_lines"][:5]:
            print(f"  !! {line}")
        if problems := check_work(r, args.seconds):
            print(f"  !! {r['case']}: the watch did not do its work ({'; '.join(problems)}): figures not comparable")
            status = 2
    print()
    plain = [r for r in results if "failed" not in r]
    small = next((r for r in plain if r["vms"] == 2), None)
    if small is not None:
        for what, value, limit, unit in (("CPU", small["cpu_pct"], TARGET_CPU_PCT, "% of one core"),
                                         ("RSS peak", small["rss_peak_mb"], TARGET_RSS_MB, "MB")):  # fmt: skip
            ok = value < limit
            print(f"target: 2 VMs, {what} under {limit:g} {unit}: {value:.2f}  {'PASS' if ok else 'FAIL'}")
            status = status or (0 if ok else 1)
    large = next((r for r in plain if r["vms"] >= 50), None)
    if large is not None and small is not None and small["cpu_pct"]:
        print(f"{large['vms']} VMs / 2 VMs: CPU {large['cpu_pct'] / small['cpu_pct']:.1f}x, "
              f"RSS peak {large['rss_peak_mb'] / small['rss_peak_mb']:.2f}x (no target for {large['vms']} VMs)")  # fmt: skip
    return status


IDLE = ("<method 'poll' of 'select.epoll' objects>", "<built-in method time.sleep>")
"""Where the loop waits (wall time, not CPU): left out of the profile's total."""


def print_profile(path: Path, top: int) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    idle = sum(own for (_, _, function), (_, _, own, _, _) in entries.items() if function in IDLE)
    busy = stats.total_tt - idle  # type: ignore[attr-defined]
    print(
        f"\ncProfile of the watch's main thread over the window: {busy:.3f} s in functions, waits in epoll "
        f"left out ({idle:.1f} s); cProfile's own overhead inflates small calls. Top {top} by own time:"
    )
    rows = sorted(((key, value) for key, value in entries.items() if key[2] not in IDLE), key=lambda item: -item[1][2])
    for (filename, line, function), (_, calls, own, cumulative, _) in rows[:top]:
        print(
            f"  {100 * own / busy:5.1f} %  own {own:6.3f} s  cum {cumulative:6.3f} s  {calls:>8} calls  "
            f"{_short(filename)}:{line}({function})"
        )
    by_package: Counter = Counter()
    for (filename, _, function), (_, _, own, _, _) in entries.items():
        if function not in IDLE:
            by_package[_package(filename)] += own
    shares = ", ".join(f"{name} {100 * own / busy:.0f} %" for name, own in by_package.most_common(10))
    print(f"  own time by package: {shares}")
    ours = sorted(
        ((key, value) for key, value in entries.items() if "/aiconsole/" in key[0]), key=lambda item: -item[1][3]
    )
    print(f"  aiconsole's functions by cumulative time (callees included), top {top // 2}:")
    for (filename, line, function), (_, calls, _, cumulative, _) in ours[: top // 2]:
        print(f"    cum {cumulative:6.3f} s  {calls:>8} calls  {_short(filename)}:{line}({function})")


def _short(filename: str) -> str:
    return filename.split("site-packages/")[-1].split("src/")[-1].split("python3.11/")[-1]


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    if "/aiconsole/" in filename:
        return "aiconsole." + filename.split("/aiconsole/")[1].split("/")[0].removesuffix(".py")
    if filename.startswith(("~", "<")):
        return "builtins"
    return "stdlib"


def compile_bytecode() -> None:
    """Write aiconsole's .pyc files, as `pip install` does for an installed wheel (see benchmarks/startup.py)."""
    import compileall

    import aiconsole

    compileall.compile_dir(Path(aiconsole.__file__).parent, quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the measurement window, after start-up")
    parser.add_argument("--startup", type=float, default=30.0, help="seconds from spawn to the window's start")
    parser.add_argument("--slice", type=float, default=10.0, help="the window's CPU is also printed per SLICE s")
    parser.add_argument(
        "--cases", default="baseline,2,100",
        help="comma-separated: baseline (0 VMs) and VM counts",
    )  # fmt: skip
    parser.add_argument("--gpus", type=int, default=1, help="simulated GPUs per VM (the demo's VMs have one)")
    parser.add_argument("--profile", action="store_true", help="then profile the largest case (cProfile)")
    parser.add_argument("--top", type=int, default=25, help="profile rows printed")
    parser.add_argument("--profile-out", type=Path, help="keep the profile (pstats) in this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vms", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        args.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(serve(args.vms, args.gpus, args.dir))
        return 0
    compile_bytecode()
    cases = []
    for case in filter(None, args.cases.split(",")):
        cases.append((case, 0 if case == "baseline" else int(case)))
    began = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="aiconsole-watch-bench-") as tmp:
        for name, vms in cases:
            label = "baseline (0 VMs)" if vms == 0 else f"{vms} VMs"
            print(f"measuring {label}: {args.startup:g} s start-up + {args.seconds:g} s window...", flush=True)
            results.append(run_case(args, name, vms, Path(tmp)))
        status = print_report(args, results)
        if args.profile:
            name, vms = max(cases, key=lambda case: case[1])
            print(f"\nprofiling {name} ({vms} VMs)...", flush=True)
            out = Path(tmp) / "watch.prof"
            profiled = run_case(args, name, vms, Path(tmp), profile=out)
            if "failed" in profiled or not out.exists():
                print(f"profile run failed: {profiled.get('failed', 'no profile written')}")
            else:
                print_profile(out, args.top)
                if args.profile_out:
                    args.profile_out.write_bytes(out.read_bytes())
    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
