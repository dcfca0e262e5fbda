"""The simulated fleet for benchmarks/telemetry.py: N loopback SSH servers in their own process.

One `LoopbackSshServer` per VM, each on its own port of 127.0.0.1 with its own host key, as a
real fleet has one sshd per VM; they share one client key so that the console side offers
one key, as it would with one identity file. Each VM has `--gpus` simulated RTX 4090s,
and its shell is the demo's `aiconsole.demo.gpu_host.GpuHost` (readings from gpu_sim):

- `nvidia-smi --query-gpu=... -lms N`: a round of all its GPUs every N ms, on a fixed
  schedule, until the client closes the channel;
- `nvidia-smi --query-gpu=...` (no -lms): one round, then exit 0;
- `nvidia-smi --query-compute-apps=...`: one process per busy GPU;
- anything else: "command not found", exit 127.

This process runs apart from the console so that the servers' CPU is not counted as the
console's. When every server listens it prints ONE JSON line on stdout:
`{"pid", "known_hosts", "client_key", "targets": ["user@127.0.0.1:PORT", ...]}`.

Bounded: it exits by itself after `--lifetime` seconds, or as soon as its stdin reaches EOF
(the benchmark that started it ended, however it ended), or on SIGTERM/SIGINT.

    python benchmarks/_telemetry_servers.py --vms 100 --gpus 8 --dir /tmp/x --lifetime 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import asyncssh

from aiconsole.demo.gpu_host import GpuHost
from aiconsole.demo.gpu_sim import INFERENCE_LOAD, TRAINING_LOAD
from aiconsole.demo.ssh_server import LoopbackSshServer


def send_no_ignore_packets() -> None:
    """Make these servers send what OpenSSH's sshd sends: no SSH_MSG_IGNORE before each packet.

    asyncssh puts an empty IGNORE packet in front of every packet it sends once encryption is
    on (a CBC-era countermeasure, RFC 4251 9.3.1, applied whatever the cipher); sshd does not.
    Left in, every telemetry round would reach the console as two packets to decrypt, a cost
    a real fleet does not impose. Patched in this server process only, never in the console's.
    """
    from asyncssh.connection import SSHConnection
    from asyncssh.constants import MSG_IGNORE
    from asyncssh.packet import String

    original = SSHConnection.send_packet
    chaff = (String(b""),)

    def send_packet(self: SSHConnection, pkttype: int, *args: bytes, **kwargs: object) -> None:
        if pkttype == MSG_IGNORE and args == chaff and not kwargs:
            return None
        return original(self, pkttype, *args, **kwargs)

    SSHConnection.send_packet = send_packet


async def serve(vms: int, gpu_count: int, directory: Path, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _stop_on_stdin_eof(loop, stop)

    client_key = asyncssh.generate_private_key("ssh-ed25519")
    servers = []
    for index in range(vms):
        load = TRAINING_LOAD if index % 2 else INFERENCE_LOAD
        host = GpuHost(seed=1000 + index, load=load, count=gpu_count)
        server = LoopbackSshServer(directory / f"vm{index:03d}", host)
        server.client_key = client_key  # one identity for the whole fleet, set before start()
        servers.append(await server.start())

    known_hosts = directory / "known_hosts"
    known_hosts.write_text("".join(server.known_hosts_line for server in servers))
    key_path = directory / "id_ed25519"
    client_key.write_private_key(key_path)
    key_path.chmod(0o600)
    ready = {
        "pid": os.getpid(),
        "known_hosts": str(known_hosts),
        "client_key": str(key_path),
        "targets": [server.target for server in servers],
    }
    print(json.dumps(ready), flush=True)
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        print(f"servers: lifetime of {lifetime:g} s reached, exiting", file=sys.stderr, flush=True)
    stop.set()
    for server in servers:
        await server.close()


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError, NotImplementedError):
        pass  # stdin is not a pipe (run by hand): the lifetime and signals still bound it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--dir", type=Path, required=True, help="where keys and known_hosts go")
    parser.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
    parser.add_argument("--asyncssh-ignore", action="store_true",
                        help="keep asyncssh's IGNORE packet before every packet (sshd sends none)")
    args = parser.parse_args()
    if not args.asyncssh_ignore:
        send_no_ignore_packets()
    asyncio.run(serve(args.vms, args.gpus, args.dir, args.lifetime))


if __name__ == "__main__":
    main()
