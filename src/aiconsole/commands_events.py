"""`aiconsole events [--json] [VM] [--days N] [-n N]`: the event journal, oldest first.

Every start and stop (by hand, from the CLI, or automatic), refused and forced stops,
budget levels and snoozes, from the ledger's database. Untrusted text (VM names, reasons
quoting a server) is sanitised on the way in (`Event`) and again on the way out.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TextIO

from aiconsole.assembly import Runtime, local_timezone
from aiconsole.domain.events import Event
from aiconsole.domain.sanitize import sanitize_line

EXIT_OK, EXIT_USAGE = 0, 2


def events_command(
    runtime: Runtime, *, vm: str | None, days: float | None, limit: int, as_json: bool, out: TextIO, err: TextIO
) -> int:
    monitor = runtime.monitor
    if vm is not None and vm not in monitor.names:
        print(f"aiconsole: no VM named {vm!r} in the config", file=err)
        return EXIT_USAGE
    since = None if days is None else monitor.snapshot().at - timedelta(days=days)
    events = list(reversed(monitor.ledger.events(since=since, vm=vm, limit=limit)))  # oldest first
    if as_json:
        out.write(json.dumps([event_json(event) for event in events], indent=2) + "\n")
        return EXIT_OK
    if not events:
        print("No events yet." if since is None and vm is None else "No events match.", file=out)
        return EXIT_OK
    tz = local_timezone(runtime.settings.budget.timezone)
    for event in events:
        print(sanitize_line(event.line(tz), 1000), file=out)
    return EXIT_OK


def event_json(event: Event) -> dict:
    return {
        "at": event.at.isoformat(),
        "kind": event.kind,
        "vm": event.vm,
        "actor": event.actor,
        "reason": event.reason,
        "hourly_usd": event.hourly_usd,
        "cost_today_usd": None if event.cost_today_usd is None else round(event.cost_today_usd, 4),
    }
