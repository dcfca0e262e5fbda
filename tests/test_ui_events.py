"""The Events tab (issue 7): the event journal on screen, newest first.

The pane reads a real ledger in the test's folder (tests/events_helpers.py), ticked by
the test as the console's 1 s tick would; the last tests run the whole console on the
demo fleet. The picture is in test_ui_events_snapshots.py.
"""

from __future__ import annotations

from pathlib import Path

from aiconsole.domain.events import Actor, Event, EventKind
from aiconsole.ui.events_pane import EventList
from events_helpers import EventsApp, at, filled_ledger
from ui_helpers import demo_app, fleet_ready, has_control_chars, screen_shows, screen_text

SIZE = (80, 24)
LONG_REASON = (
    "stop refused: MLflow run lora-r16 is RUNNING on training (step 1840 of 3000, last metric 12s ago); "
    "MLflow run qlora-r8 is RUNNING on training (step 220 of 600, last metric 3s ago); "
    "the stop would end both runs and lose what they learned since their last checkpoint"
)


def list_lines(app: EventsApp) -> list[str]:
    return [line.plain.rstrip() for line in app.pane.query_one(EventList).lines]


def details(app: EventsApp) -> str:
    return str(app.pane.query_one("#event-details").render())


async def test_events_are_listed_newest_first_under_a_heading_per_day(tmp_path: Path) -> None:
    app = EventsApp(filled_ledger(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = list_lines(app)
        assert lines[0] == "Sunday 22 Nov 2026" and lines[-2] == "Saturday 21 Nov 2026"
        assert lines[1].startswith("14:01:00 stop         inference console  stopped from the console")
        assert lines[1].endswith("$1.82 today")
        assert lines[2].startswith("14:00:00 budget       fleet     watch    daily budget 80 % reached")
        assert lines[-1].startswith("18:00:00 stop         desk")
        times = [line[:8] for line in lines if line[:2].isdigit()]
        assert times == sorted(times[:-1], reverse=True) + times[-1:]  # newest first within each day
        text = screen_text(app)
        assert "8 events · VM: all VMs" in text
        # The first (newest) event is selected and shown whole beneath the list.
        assert "stop inference by console · 2026-11-22 14:01:00 UTC" in details(app)
        assert "then: $1.82 today · $0.42/h" in details(app)


async def test_the_details_show_a_long_reason_whole(tmp_path: Path) -> None:
    long = Event(at(400), EventKind.STOP_REFUSED, "training", LONG_REASON, Actor.CONSOLE, 0.35, 2.0)
    app = EventsApp(filled_ledger(tmp_path, [*_few(), long]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "…" in list_lines(app)[1]  # cut short in the list
        text = " ".join(line.strip() for line in screen_text(app).splitlines())
        assert LONG_REASON in text  # whole in the details, wrapped
        await pilot.press("j")  # the next event's reason replaces it
        await pilot.pause()
        assert LONG_REASON not in details(app) and "a fleet-wide event" in details(app)
        await pilot.press("k")
        assert LONG_REASON in details(app)


def _few() -> list[Event]:
    return [
        Event(at(0), EventKind.START, "inference", "start asked", Actor.OPERATOR, 0.42, 0.0),
        Event(at(1), EventKind.START, "training", "started from the console", Actor.CONSOLE, 0.35, 0.0),
        Event(at(2), EventKind.STOP, "", "a fleet-wide event", Actor.WATCH, 0.0, None),
    ]


async def test_v_cycles_the_vm_filter_through_every_vm_and_back(tmp_path: Path) -> None:
    app = EventsApp(filled_ledger(tmp_path), vms=("inference", "training", "desk"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        seen = []
        for _ in range(4):
            await pilot.press("v")
            await pilot.pause()
            vms = {line.split()[2] for line in list_lines(app) if line[:2].isdigit()}
            seen.append((app.pane.vm, vms, screen_text(app).splitlines()[0].strip()))
        assert seen[0][:2] == ("inference", {"inference"})
        assert seen[0][2].startswith("3 events · VM: inference")
        assert seen[1][:2] == ("training", {"training"})
        assert seen[2][:2] == ("desk", {"desk"}) and seen[2][2].startswith("1 event · VM: desk")
        assert seen[3][:2] == (None, {"inference", "training", "desk", "fleet"})
        assert seen[3][2].startswith("8 events · VM: all VMs")


async def test_a_new_event_appears_on_the_next_tick_and_an_unchanged_journal_is_not_read_again(
    tmp_path: Path,
) -> None:
    ledger = filled_ledger(tmp_path)
    app = EventsApp(ledger)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        reads = app.pane.reads
        for _ in range(3):
            app.tick()
        assert app.pane.reads == reads, "nothing new: the list is not read again"
        ledger.record_event(Event(at(400), EventKind.START, "desk", "started from the console", Actor.CONSOLE))
        app.tick()
        assert app.pane.reads == reads + 1
        await screen_shows(pilot, "9 events", "15:40:00 start")
        assert list_lines(app)[1].startswith("15:40:00 start        desk")
        # Another event at the very same time (a stopped clock): still seen.
        ledger.record_event(Event(at(400), EventKind.START, "desk", "again", Actor.CONSOLE))
        app.tick()
        await screen_shows(pilot, "10 events")
        await pilot.press("r")  # read again whatever the probe says
        assert app.pane.reads == reads + 3


async def test_an_empty_journal_says_what_will_appear(tmp_path: Path) -> None:
    app = EventsApp(filled_ledger(tmp_path, []))
    async with app.run_test(size=SIZE) as pilot:
        text = await screen_shows(pilot, "0 events")
        assert "No events yet: every start, stop and budget level will be listed here." in text
        assert "stops refused while a run goes" in text


async def test_hostile_reasons_and_vm_names_are_inert(tmp_path: Path) -> None:
    hostile_vm = "\x1b[31mvm\u202e\x1b]0;title\x07"
    reason = "\x1b]52;c;ZXZpbA==\x07\x1b[2J[b]markup[/b] \u202eevil\u2066 \x9b31m\x07done"
    events = [Event(at(0), EventKind.AUTO_STOP, hostile_vm, reason, Actor.WATCH, 0.4, 1.0)]
    app = EventsApp(filled_ledger(tmp_path, events), vms=(hostile_vm,))
    async with app.run_test(size=SIZE) as pilot:
        text = await screen_shows(pilot, "[b]markup[/b]")
        assert not has_control_chars(text)
        assert not any(ch in text for ch in "\u202e\u2066")
        assert "]52;" not in text and "ZXZpbA" not in text and "title" not in text
        assert "[b]markup[/b] evil done" in details(app)
        await pilot.press("v")
        text = await screen_shows(pilot, "1 event · VM: vm")
        assert not has_control_chars(text) and "\u202e" not in text


# -- in the console -------------------------------------------------------------------------


async def test_7_shows_the_events_tab_and_a_stop_through_the_monitor_is_listed(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await fleet_ready(pilot)
        console = app.console_tabs
        assert console is not None
        await pilot.press("7")
        assert console.active == "events"
        assert app.screen.focused is console.events.focus_target
        await screen_shows(pilot, "VM: all VMs", "1 2 3 4 5 6 7 Tabs")
        assert app.runtime is not None
        await app.runtime.monitor.stop_vm("inference", reason="stopped by the test", actor="console")
        text = await screen_shows(pilot, "stopped by the test")  # on the next tick
        assert "stop         inference console" in text
        await pilot.press("r", "v")
        await screen_shows(pilot, "VM: inference")
        await pilot.press("1")
        assert console.active == "fleet"
        reads = console.events.reads
        app.runtime.monitor.record_event("inference", EventKind.SNOOZE, "idle stop snoozed for 1h", Actor.CONSOLE)
        await pilot.pause(1.3)
        assert console.events.reads == reads, "the hidden tab reads nothing"
        await pilot.press("7")
        assert console.events.reads == reads + 1  # drawn from a fresh tick before it shows
        await screen_shows(pilot, "idle stop snoozed for 1h")
