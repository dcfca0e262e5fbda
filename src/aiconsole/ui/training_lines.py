"""What the Training tab writes: the runs list's lines, the shown run's header, its params.

Pure functions from domain snapshots to `Content`; every string from MLflow passes the
sanitiser and is a plain `Content` span (never markup). Stale data says so in words, not
only in colour: "stale 45s".
"""

from __future__ import annotations

from datetime import datetime

from textual.content import Content

from aiconsole.domain.format import format_duration
from aiconsole.domain.mlflow import FAILED, FINISHED, KILLED, RUNNING, Run, run_duration
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.training import (
    KILLED_CAVEAT,
    ServerRuns,
    TrainingSnapshot,
    filter_runs,
    is_quiet,
    last_metric_note,
    run_label,
)
from aiconsole.ui.training_state import RunKey, RunPoints, TrainingView
from aiconsole.ui.widgets.selectable_lines import Item

MUTED = "$foreground-muted"
WARNING = "$warning"
_MARK = {RUNNING: ("●", "$success bold"), FINISHED: ("✓", MUTED), FAILED: ("✗", "$error"), KILLED: ("■", "$warning")}
_TEXT_LIMIT = 200


def status_mark(status: str) -> tuple[str, str]:
    return _MARK.get(status, ("·", MUTED))


def run_list_lines(
    snapshot: TrainingSnapshot, view: TrainingView, stale_after_s: float
) -> tuple[list[Content], list[Item], dict[RunKey, ServerRuns]]:
    """The list: per server a heading (with staleness), then its runs that pass the filters."""
    lines: list[Content] = [_filter_line(view)]
    items: list[Item] = []
    servers: dict[RunKey, ServerRuns] = {}
    for server in snapshot.servers:
        lines += _server_heading(server, snapshot.at, stale_after_s)
        runs = filter_runs(server.runs, view.status, view.name)
        if not runs and server.runs:
            lines.append(Content.styled("  (none match the filter)", MUTED))
        for run in runs:
            key = (server.server.vm, server.server.service, run.id)
            servers[key] = server
            items.append(Item(key, len(lines), len(lines) + 1))
            lines.append(_run_line(run, snapshot.at, pinned=key == view.pinned))
    return lines, items, servers


def _filter_line(view: TrainingView) -> Content:
    name = f" · name ~ {sanitize_line(view.name, 40)}" if view.name else ""
    return Content.styled(f"status: {view.status}{name}  (f, /)", MUTED)


def _server_heading(server: ServerRuns, now: datetime, stale_after_s: float) -> list[Content]:
    label = sanitize_line(server.server.label, 60)
    heading = Content.styled(label, "bold")
    if server.fetched_at is None:
        state = "VM stopped" if not server.vm_running else "reading…"
        if server.error:
            state = "unreachable"
        heading = heading + Content.styled(f" · {state}", MUTED)
    elif server.is_stale(now, stale_after_s):
        reason = "VM stopped" if not server.vm_running else "stale"
        heading = heading + Content.styled(f" · {reason} {format_duration(server.age(now))}", f"{WARNING} bold")
    lines = [heading]
    if server.error:  # the narrow list keeps what matters: "runs/search: HTTP 503"
        lines.append(Content.styled("  " + sanitize_line(server.error.removeprefix("MLflow "), _TEXT_LIMIT), WARNING))
    return lines


def _run_line(run: Run, now: datetime, *, pinned: bool) -> Content:
    mark, style = status_mark(run.status)
    duration = format_duration(_seconds(run_duration(run, now)))
    pin = "⊕" if pinned else " "
    name = run_label(run)
    return Content.assemble(
        (mark, style), pin, (f"{name[:19]:<19}", "bold" if run.is_running else ""), (f" {duration:>8}", MUTED)
    )


def _seconds(delta) -> float | None:
    return None if delta is None else delta.total_seconds()


def run_header(run: Run | None, shown: RunPoints, pinned: RunPoints | None, now: datetime, tail_s: float) -> Content:
    """Three lines over the chart: who and what, how fresh, and what it is compared with."""
    if run is None:
        return Content.styled("reading the run…", MUTED)
    mark, style = status_mark(run.status)
    duration = format_duration(_seconds(run_duration(run, now)))
    who = f" · {sanitize_line(run.user, 40)}" if run.user else ""
    first = Content.assemble((run_label(run), "bold"), " ", (f"{mark} {run.status}", style), f" {duration}{who}")
    second = Content.assemble((f"{shown.server.label} · ", MUTED), _freshness(run, shown, now, tail_s))
    lines = [first, second]
    if is_quiet(run, now):  # its own line: at 80 columns it must not be cut off
        lines.append(Content.styled(f"⚠ {KILLED_CAVEAT}", f"{WARNING} bold"))
    return Content("\n").join([*lines, _compared(pinned)])


def _freshness(run: Run, shown: RunPoints, now: datetime, tail_s: float) -> Content:
    if shown.error:
        age = "" if shown.polled_at is None else f" {format_duration((now - shown.polled_at).total_seconds())}"
        error = sanitize_line(shown.error.removeprefix("MLflow "), _TEXT_LIMIT)
        return Content.styled(f"stale{age}: {error}", f"{WARNING} bold")
    if run.is_running:
        return Content.styled(last_metric_note(run, now), WARNING if is_quiet(run, now) else MUTED)
    if run.end_time is not None:
        return Content.styled(f"ended {format_duration((now - run.end_time).total_seconds())} ago", MUTED)
    return Content.styled(f"polled every {tail_s:g} s", MUTED)


def _compared(pinned: RunPoints | None) -> Content:
    if pinned is None:
        return Content.styled("c pins this run to compare others with it", MUTED)
    label = run_label(pinned.run) if pinned.run else pinned.run_id[:12]
    return Content.assemble(("compared with ", MUTED), (label, "bold"), (" (pinned; c on it unpins)", MUTED))


def params_content(run: Run | None) -> Content:
    """The run's params, then its tags (MLflow's own `mlflow.*` tags last), one per line."""
    if run is None:
        return Content.styled("reading the run…", MUTED)
    lines = [Content.styled(f"params ({len(run.params)})", "bold")]
    lines += _pairs(run.params)
    tags = sorted(run.tags.items(), key=lambda kv: (kv[0].startswith("mlflow."), kv[0]))
    lines.append(Content.styled(f"tags ({len(run.tags)})", "bold"))
    lines += _pairs(dict(tags), sort=False)
    return Content("\n").join(lines)


def _pairs(pairs: dict[str, str], *, sort: bool = True) -> list[Content]:
    items = sorted(pairs.items()) if sort else list(pairs.items())
    if not items:
        return [Content.styled("  (none)", MUTED)]
    return [
        Content.assemble(("  " + sanitize_line(key, 60), "bold"), " = ", sanitize_line(value, _TEXT_LIMIT))
        for key, value in items
    ]
