"""The Events tab's picture (snapshots/test_ui_events_snapshots/, 80x24): a day of the fleet
newest first (a start, stops from the console, a stop refused while an MLflow run goes, a
forced stop, an idle auto-stop, a budget level), the stop-refused event selected and shown
whole beneath the list. A real ledger, fixed times, UTC: the same on every run."""

from __future__ import annotations

from pathlib import Path

from events_helpers import EventsApp, filled_ledger

SIZE = (80, 24)


def test_the_journal_with_the_stop_refused_event_selected(snap_compare, tmp_path: Path) -> None:
    app = EventsApp(filled_ledger(tmp_path))

    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.press("j", "j", "j", "j")  # stop, budget, auto-stop, forced-stop, stop-refused
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
