"""`aiconsole watch` end to end on a real clock: loopback TensorDock (the real client), the demo's
FakeMlflow with lora-r16 RUNNING, and a chat stream held by another process's lease in the
shared ledger. With a 6-second idle stop, the idle VM is stopped through the provider's API
and journaled with its reason; the VM with a chat going and the one with a RUNNING run are
left alone. Also: the CLI's own `watch` on the demo fleet, and a watch yielding to nobody."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path

from aiconsole.cli import main
from aiconsole.commands_watch import run_watch
from aiconsole.demo.mlflow_api import FakeMlflow
from aiconsole.demo.tensordock_api import FakeTensorDock
from aiconsole.domain.enforcement import Role
from aiconsole.services.chat_service import ACTIVITY_EVERY_S, CHAT_ACTIVITY, CHAT_LEASE_S
from aiconsole.services.clock import utc_now
from aiconsole.services.ledger import Ledger
from ui_helpers import config_runtime, demo_env

KEY = "td-watch-test-0123456789abcdef"
IDS = {"idle": "11aa-idle-watch", "chatting": "22bb-chat-watch", "training": "33cc-train-watch"}


def _config(tensordock_url: str, mlflow_url: str) -> str:
    text = '[budget]\ntimezone = "UTC"\nenforce_step_s = 1\n'
    for name, instance in IDS.items():
        text += (
            f'\n[[vm]]\nname = "{name}"\nprovider = "tensordock"\nhourly_usd = 0.35\nidle_stop_minutes = 0.1\n'
            f"poll_seconds = 1\n"
            f'[vm.tensordock]\ninstance_id = "{instance}"\napi_key_env = "TD_KEY"\napi_url = "{tensordock_url}"\n'
        )
        if name == "training":
            text += f'[[vm.service]]\nname = "mlflow"\nkind = "mlflow"\nurl = "{mlflow_url}"\n'
    return text + "\n[training]\nrefresh_s = 2\n"


async def _chat_lease(ledger_path: Path, stop: asyncio.Event) -> None:
    """What a console's chat stream writes to the shared ledger while it streams (the lease
    that services/chat_service.py renews), from a ledger handle of its own."""
    with Ledger.open(ledger_path) as ledger:
        while not stop.is_set():
            now = utc_now()
            ledger.record_activity("chatting", "chat", now, CHAT_ACTIVITY, until=now + timedelta(seconds=CHAT_LEASE_S))
            await asyncio.sleep(ACTIVITY_EVERY_S)


async def test_watch_stops_the_idle_vm_and_leaves_a_chat_and_a_running_run_alone(tmp_path: Path) -> None:
    async with FakeTensorDock(KEY, start_seconds=0.2, stop_seconds=0.2) as tensordock, FakeMlflow() as mlflow:
        for name, instance in IDS.items():
            tensordock.add_instance(instance, name, "Running")
        runtime = config_runtime(_config(tensordock.url, mlflow.url), {"TD_KEY": KEY}, tmp_path, clock=utc_now)
        stop_chat = asyncio.Event()
        chat = asyncio.create_task(_chat_lease(tmp_path / "ledger.sqlite3", stop_chat))
        out = io.StringIO()
        try:
            code = await run_watch(runtime, out, duration_s=14.0, warmup_s=3.0, environ={"TD_KEY": KEY})
        finally:
            stop_chat.set()
            await chat
        assert code == 0
        states = {name: tensordock.instances[instance].status for name, instance in IDS.items()}
        assert states["idle"].startswith("Stopped"), out.getvalue()
        assert states["chatting"] == "Running" and states["training"] == "Running", out.getvalue()
        with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
            events = ledger.events()
        stops = [e for e in events if e.kind == "auto-stop"]
        assert [(e.vm, e.actor) for e in stops] == [("idle", "watch")]
        assert stops[0].reason.startswith("idle for ") and stops[0].reason.endswith("(limit 6s): stopping idle")
        assert stops[0].hourly_usd == 0.35
        assert not any(e.vm in ("chatting", "training") and e.kind in ("auto-stop", "stop") for e in events)
        lines = out.getvalue().splitlines()
        assert any("idle for" in line and "stopping idle" in line for line in lines)
        assert any("money guard: this watch" in line for line in lines)
        assert lines[-1].endswith("stopped; the money guard is released")
        assert Ledger.open(tmp_path / "ledger.sqlite3").enforcer() is None, "the lock is given back"


async def test_a_watch_waits_while_another_watch_enforces(tmp_path: Path) -> None:
    """Equal ranks: the second waits (and says who enforces) until the first is gone."""
    async with FakeTensorDock(KEY) as tensordock, FakeMlflow() as mlflow:
        for name, instance in IDS.items():
            tensordock.add_instance(instance, name, "Running")
        runtime = config_runtime(_config(tensordock.url, mlflow.url), {"TD_KEY": KEY}, tmp_path, clock=utc_now)
        runtime.monitor.ledger.claim_enforcer("watch pid 1 on elsewhere", Role.WATCH, utc_now())
        out = io.StringIO()

        async def keep_renewing() -> None:
            with Ledger.open(tmp_path / "ledger.sqlite3") as other:
                while True:
                    other.claim_enforcer("watch pid 1 on elsewhere", Role.WATCH, utc_now())
                    await asyncio.sleep(1)

        other = asyncio.create_task(keep_renewing())
        try:
            await run_watch(runtime, out, duration_s=9.0, warmup_s=0.0, environ={"TD_KEY": KEY})
        finally:
            other.cancel()
        assert all(s == "Running" for s in (i.status for i in tensordock.instances.values())), out.getvalue()
        assert "money guard: watch pid 1 on elsewhere enforces" in out.getvalue()


def test_watch_on_the_demo_fleet_reports_the_orphan_and_ends_cleanly(tmp_path: Path, capsys) -> None:
    code = main(["watch", "--demo", "--duration", "8", "--warmup", "60"], demo_env(tmp_path))
    output = capsys.readouterr().out
    assert code == 0
    assert "watching 4 VMs from demo fleet as watch pid" in output
    assert "orphan: TensorDock instance sdxl-test" in output and "$0.35/h" in output
    assert output.rstrip().endswith("stopped; the money guard is released")
