"""The Events tab: the event journal (every start, stop, refused or forced stop, automatic
stop, budget level and snooze) newest first, one line per event, the selected one whole
beneath the list.

The journal lives in the ledger (`Ledger.events`). The console's 1 s tick calls `draw`
only while the tab shows, and `draw` reads the list again only when something changed:
it first asks for the events since the newest one it holds (an indexed query that
returns one row when nothing happened) and compares that row and their number with
what it read last time. `r` reads again whatever the probe says.

Reasons and VM names are untrusted (a reason can quote a server's answer): each passes
the sanitiser, and every line is a `Content` built from plain strings, never markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Protocol

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from aiconsole.domain.events import Event, EventKind
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.ui.bindings import binding
from aiconsole.ui.widgets.selectable_lines import Item, SelectableLines

MUTED = "$foreground-muted"
LIMIT = 500
"""The newest events shown (the CLI's `aiconsole events -n N` reads further back)."""
EMPTY = "No events yet: every start, stop and budget level will be listed here."
EMPTY_DETAILS = (
    "Stops by hand or automatic (idle, budget), stops refused while a run goes and forced "
    "anyway, and snoozes too, newest first, each with its reason and what it cost."
)
_KIND_STYLE = {
    EventKind.START: "$success",
    EventKind.STOP: MUTED,
    EventKind.AUTO_STOP: "$warning bold",
    EventKind.FORCED_STOP: "$error bold",
    EventKind.STOP_REFUSED: "$warning",
    EventKind.BUDGET: "$warning",
    EventKind.SNOOZE: "$accent",
    EventKind.GUARD: "$accent",
}
_KIND_WIDTH = 12  # "stop-refused"
_VM_WIDTH = 14
_ACTOR_WIDTH = 8  # "operator"
_MIN_REASON = 12
WIDE_REASON = 40
_VM_LIMIT = 60


class EventSource(Protocol):
    """What the pane reads: the fleet monitor (its ledger, and its VMs for the filter)."""

    @property
    def ledger(self): ...

    @property
    def names(self) -> Mapping[str, object]: ...


def kind_style(kind: str) -> str:
    return _KIND_STYLE.get(kind, "")  # type: ignore[call-overload]


def money(event: Event, *, hourly: bool = True) -> str:
    """ "$1.23 today · $0.35/h" (without the $/h unless `hourly`), what is known of it, or ""."""
    parts = []
    if event.cost_today_usd is not None:
        parts.append(f"${event.cost_today_usd:.2f} today")
    if hourly and event.hourly_usd:
        parts.append(f"${event.hourly_usd:.2f}/h")
    return " · ".join(parts)


def event_lines(events: Sequence[Event], tz: tzinfo, width: int) -> tuple[list[Content], list[Item]]:
    """A muted heading per local day, then one line per event, laid out for `width` columns.

    The reason gets what the other columns leave; the $/h joins the cost only where the
    reason keeps `WIDE_REASON` columns with it (the details box always has both)."""
    vm_width = min(_VM_WIDTH, max((len(_vm(e)) for e in events), default=0))
    fixed = 9 + _KIND_WIDTH + 1 + vm_width + 1 + _ACTOR_WIDTH + 1
    hourly = width - fixed - max((len(money(e)) + 1 for e in events), default=0) >= WIDE_REASON
    money_width = max((len(money(e, hourly=hourly)) for e in events), default=0)
    lines: list[Content] = []
    items: list[Item] = []
    day = None
    for index, event in enumerate(events):
        local = event.at.astimezone(tz)
        if local.date() != day:
            day = local.date()
            lines.append(Content.styled(local.strftime("%A %d %b %Y"), f"{MUTED} bold"))
        items.append(Item(index, len(lines), len(lines) + 1))
        lines.append(_event_line(event, local, width, vm_width, money(event, hourly=hourly), money_width))
    return lines, items


def _vm(event: Event) -> str:
    return sanitize_line(event.vm, _VM_LIMIT) or "fleet"


def _event_line(event: Event, local: datetime, width: int, vm_width: int, cost: str, money_width: int) -> Content:
    kind = sanitize_line(event.kind, 40)
    head = Content.assemble(
        (local.strftime("%H:%M:%S") + " ", MUTED),
        (f"{kind:<{_KIND_WIDTH}} ", kind_style(kind)),
        Content(_vm(event)).truncate(vm_width, ellipsis=True, pad=True),
        " ",
        (f"{sanitize_line(event.actor, 20):<{_ACTOR_WIDTH}} ", MUTED),
    )
    cost_width = money_width + 1 if money_width else 0
    reason_width = max(_MIN_REASON, width - head.cell_length - cost_width)
    reason = Content(event.reason).truncate(reason_width, ellipsis=True, pad=True)
    tail = Content.styled(f" {cost:>{money_width}}", MUTED) if money_width else Content("")
    return head + reason + tail


def event_details(event: Event | None, tz: tzinfo, *, empty: bool = False) -> Content:
    """The selected event whole: what, where, who and when; its full reason; the money then."""
    if event is None:
        return Content.styled(EMPTY_DETAILS if empty else "Select an event (up/down) to read it whole.", MUTED)
    local = event.at.astimezone(tz)
    kind = sanitize_line(event.kind, 40)
    cost = money(event)
    return Content.assemble(
        (kind, f"{kind_style(kind)} bold".strip()),
        " ",
        (sanitize_line(event.vm, _VM_LIMIT) or "the fleet", "bold"),
        (f" by {sanitize_line(event.actor, 20)} · " + local.strftime("%Y-%m-%d %H:%M:%S %Z").strip(), MUTED),
        "\n",
        event.reason,
        (f"\nthen: {cost}" if cost else "", MUTED),
    )


class EventList(SelectableLines):
    """The journal's lines, with the Events tab's own keys to move."""

    DEFAULT_CSS = "EventList { width: 100%; height: 1fr; }"
    BINDINGS = [binding("event-next", "move(1)", show=False), binding("event-previous", "move(-1)", show=False)]


class EventsPane(Vertical):
    """The event journal of `monitor.ledger`, newest first, in the operator's zone `tz`."""

    DEFAULT_CSS = """
    EventsPane { height: 1fr; }
    EventsPane > #events-status { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    EventsPane > #event-details {
        height: auto; max-height: 9; padding: 0 1; border-top: solid $panel-lighten-2;
    }
    """

    BINDINGS = [
        binding("events-vm", "vm_filter", label="VM"),
        binding("events-refresh", "refresh", label="Refresh"),
    ]

    def __init__(self, monitor: EventSource, tz: tzinfo, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.monitor = monitor
        self.tz = tz
        self.vm: str | None = None
        """The VM filter; None: every VM (and the fleet's own events)."""
        self.events: list[Event] = []
        self.reads = 0
        """Full reads of the journal since mount: what the ticks cost."""
        self._probe: tuple | None = None  # what the last read saw at its newest time
        self._error = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="events-status", markup=False)
        yield EventList(Content.styled(EMPTY, MUTED), id="events-list")
        yield Static("", id="event-details", markup=False)

    def on_mount(self) -> None:
        self._say_status()
        self._show_details()

    @property
    def focus_target(self) -> EventList:
        return self.query_one(EventList)

    @property
    def selected(self) -> Event | None:
        key = self.query_one(EventList).selected
        return self.events[key] if isinstance(key, int) and key < len(self.events) else None

    # -- reading -------------------------------------------------------------------------

    def draw(self, *, force: bool = False) -> None:
        """The console's tick: read the journal again if it changed (or `force`), and show it."""
        try:
            probe = self._read_probe()
            if force or probe != self._probe:
                self.events = self.monitor.ledger.events(vm=self.vm, limit=LIMIT)
                self._probe = self._read_probe()
                self.reads += 1
                self._error = ""
                self._lay_out()
        except Exception as error:  # a locked or broken ledger file: said on the pane, tried next tick
            self._error = sanitize_line(f"cannot read the journal: {error}", 300)
            self._probe = None
        self._say_status()

    def _read_probe(self) -> tuple:
        """The events at or after the newest one held: (how many, the newest's at, kind, vm)."""
        since = self.events[0].at if self.events else None
        fresh = self.monitor.ledger.events(since=since, vm=self.vm, limit=LIMIT)
        if not fresh:
            return (0,)
        return (len(fresh), fresh[0].at, fresh[0].kind, fresh[0].vm)

    def _lay_out(self) -> None:
        event_list = self.query_one(EventList)
        lines, items = event_lines(self.events, self.tz, event_list.line_width or self.size.width)
        event_list.show(lines, items)
        self._show_details()

    # -- showing -------------------------------------------------------------------------

    def _say_status(self) -> None:
        if not self.is_mounted:
            return
        status = self.query_one("#events-status", Static)
        if self._error:
            status.update(Content.styled(self._error, "$warning"))
            return
        count = len(self.events)
        many = f"the newest {LIMIT} events" if count >= LIMIT else f"{count} event{'s' * (count != 1)}"
        which = "all VMs" if self.vm is None else sanitize_line(self.vm, _VM_LIMIT)
        status.update(
            Content.assemble((many, "bold"), (" · VM: ", MUTED), which, ("  (v: next VM, r: read again)", MUTED))
        )

    def _show_details(self) -> None:
        self.query_one("#event-details", Static).update(event_details(self.selected, self.tz, empty=not self.events))

    def on_selectable_lines_selected(self, event: SelectableLines.Selected) -> None:
        event.stop()
        self._show_details()

    def on_selectable_lines_resized(self, event: SelectableLines.Resized) -> None:
        event.stop()
        self._lay_out()

    # -- keys ----------------------------------------------------------------------------

    def action_vm_filter(self) -> None:
        """All VMs -> each VM of the config -> all VMs."""
        names: list[str | None] = [None, *self.monitor.names]
        index = names.index(self.vm) if self.vm in names else 0
        self.vm = names[(index + 1) % len(names)]
        self.events = []
        self.draw(force=True)

    def action_refresh(self) -> None:
        self.draw(force=True)

    def commands(self) -> list[tuple[str, str, object]]:
        """(title, help, callback) for the palette."""
        return [
            ("Events: next VM", "Show the events of one VM, the next one (then all)", self.action_vm_filter),
            ("Events: read again", "Read the event journal again now", self.action_refresh),
        ]
