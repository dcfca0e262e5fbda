"""`aiconsole orphans [--json]`: instances TensorDock and Proxmox run that the config does not know.

Every account the config uses is listed once (`services.orphans.OrphanScan`) and each
instance no ``[[vm]]`` names is printed with its state and $/h, those that may be billed
first, then one summary line. An account that cannot be listed is named on stderr with
the reason (never the secret). Exit status, so that a script notices money leaking:

- 0: nothing unknown is running (stopped unknown instances are still listed);
- 1: an instance the config does not know is running (or starting, stopping, unreadable);
- 2: an account could not be listed and nothing unknown was found running on the others,
  or bad usage or a bad config (as every command).
"""

from __future__ import annotations

import asyncio
import json
from typing import TextIO

from aiconsole.assembly import Runtime
from aiconsole.domain.orphans import AccountScan, Orphan, OrphanReport
from aiconsole.domain.sanitize import sanitize_line

EXIT_OK, EXIT_ORPHANS, EXIT_UNCHECKED = 0, 1, 2


def orphans_command(runtime: Runtime, *, as_json: bool, out: TextIO, err: TextIO) -> int:
    report = asyncio.run(scan(runtime))
    if as_json:
        out.write(json.dumps(report_json(report), indent=2) + "\n")
    else:
        out.write(report_text(report))
    for account in report.errors:
        print(f"aiconsole: {error_line(account)}", file=err)
    out.flush()
    return exit_status(report)


async def scan(runtime: Runtime) -> OrphanReport:
    """One scan. The monitor is opened only for its resources (the demo's servers)."""
    monitor = runtime.monitor
    try:
        await monitor.open()
        return await runtime.build_orphan_scan().scan()
    finally:
        await monitor.close()


def exit_status(report: OrphanReport) -> int:
    if report.running:
        return EXIT_ORPHANS
    return EXIT_UNCHECKED if report.errors else EXIT_OK


def report_text(report: OrphanReport) -> str:
    lines = [sanitize_line(orphan.text, 1000) for orphan in report.orphans]
    lines.append(sanitize_line(report.summary, 1000))
    return "\n".join(lines) + "\n"


def error_line(account: AccountScan) -> str:
    vms = ", ".join(account.vms)
    return sanitize_line(f"could not list {account.account} (VMs {vms}): {account.error}", 1000)


def report_json(report: OrphanReport) -> dict:
    return {
        "at": report.at.isoformat(),
        "running_hourly_usd": round(report.hourly_usd, 4),
        "summary": report.summary,
        "accounts": [
            {
                "provider": account.provider,
                "account": account.account,
                "vms": list(account.vms),
                "listed": account.listed if account.error is None else None,
                "error": account.error,
            }
            for account in report.accounts
        ],
        "orphans": [orphan_json(orphan) for orphan in report.orphans],
    }


def orphan_json(orphan: Orphan) -> dict:
    item = orphan.instance
    return {
        "provider": item.provider,
        "endpoint": item.endpoint,
        "instance_id": item.instance_id,
        "name": item.name,
        "power": item.power.value,
        "raw_state": item.raw_state,
        "running": orphan.running,
        "hourly_usd": item.hourly_usd,
        "host": item.host or None,
        "guest": item.guest or None,
        "text": orphan.text,
    }
