"""One VM's pane on the Fleet tab: power, money and idle time at a glance."""

from __future__ import annotations

from datetime import datetime

from textual.content import Content
from textual.widget import Widget

from aiconsole.domain.fleet import VmSnapshot
from aiconsole.domain.format import format_age, format_duration, format_usd
from aiconsole.domain.guard import GuardView
from aiconsole.domain.power import PowerState
from aiconsole.domain.telemetry import FeedState, HostTelemetry, TelemetrySnapshot
from aiconsole.ui.widgets.gpu_gauges import PANE_WIDTH, host_gauges_content

# Glyph and theme variable per state: shape and colour both differ, so the state
# reads right in 256 colours, in monochrome and for colour-blind operators.
_POWER_LOOK: dict[PowerState, tuple[str, str]] = {
    PowerState.RUNNING: ("●", "$success"),
    PowerState.STOPPED: ("○", "$foreground-muted"),
    PowerState.STARTING: ("◐", "$warning"),
    PowerState.STOPPING: ("◑", "$warning"),
    PowerState.UNKNOWN: ("?", "$foreground-muted"),
    PowerState.ERROR: ("✖", "$error"),
}


def power_content(vm: VmSnapshot) -> Content:
    glyph, style = _POWER_LOOK[vm.power]
    word = vm.power.value
    if vm.pending_action and not vm.power.is_transition:
        word = f"{word} ({vm.pending_action} sent)"  # short: line one must fit 80 columns
    return Content.assemble((f"{glyph} {word}", f"{style} bold"))


def money_content(vm: VmSnapshot) -> Content:
    rate = "free" if vm.hourly_usd == 0 else f"{format_usd(vm.hourly_usd)}/h"
    return Content.assemble(
        (rate, "$text-accent"),
        ("  today ", "$foreground-muted"),
        format_usd(vm.cost_today_usd),
        ("  month ", "$foreground-muted"),
        format_usd(vm.cost_month_usd),
        ("  run ", "$foreground-muted"),
        format_usd(vm.cost_run_usd),
    )


def idle_content(vm: VmSnapshot) -> Content:
    """Idle time and what happens next, or why the VM is busy."""
    idle = vm.idle
    if not vm.can_power:
        # Nothing to stop: an idle timer would only count from when the console first saw it.
        return Content.styled("always on: no start, stop or idle stop", "$foreground-muted")
    if vm.power is not PowerState.RUNNING or idle.idle_seconds is None:
        if vm.power is PowerState.STOPPED:
            return Content.styled("stopped: not billed", "$foreground-muted")
        return Content.styled("idle: not counted until running", "$foreground-muted")
    if idle.busy_reasons:
        return busy_content(idle.busy_reasons, idle.unknown_reasons)
    parts: list[str | tuple[str, str]] = [
        ("idle ", "$foreground-muted"),
        format_duration(idle.idle_seconds),
    ]
    if vm.idle_stop_minutes is None:
        parts.append(("   no idle stop", "$foreground-muted"))
    elif idle.remaining_seconds is not None:
        soon = idle.remaining_seconds <= 300
        lead = "   snoozed, stops in " if idle.snoozed else "   stops in "
        parts += [(lead, "$foreground-muted"), (format_duration(idle.remaining_seconds), "$warning bold" if soon else "")]
    if idle.last_activity:
        parts += [("   last: ", "$foreground-muted"), idle.last_activity]
    return Content.assemble(*parts)


def busy_content(reasons: tuple[str, ...], unknown: tuple[str, ...]) -> Content:
    """Why the idle stop is held: "busy: chat stream, 2 SSH sessions", and apart from them
    what could not be read, which holds it for lack of evidence rather than because of use."""
    known = [reason for reason in reasons if reason not in unknown]
    parts: list[str | tuple[str, str]] = []
    if known:
        parts += [("busy: ", "$foreground-muted"), ", ".join(known)]
    if unknown:
        parts += [(" · " if known else "", ""), ("unknown: ", "$warning"), ", ".join(unknown)]
    return Content.assemble(*parts)


def guard_content(guard: GuardView | None, now: datetime) -> Content:
    """The dead-man's switch, short, ahead of the status: said only when installed or failing
    (a VM without it needs no word on every pane)."""
    if guard is None or guard.installed is not True:  # not installed, or not known yet
        return Content("")
    if guard.failing:
        return Content.styled("guard: heartbeat failing · ", "$error")
    if guard.armed:
        return Content.styled("guard armed · ", "$success")
    return Content.styled("guard not armed · ", "$warning")


def status_content(vm: VmSnapshot, now: datetime) -> Content:
    """The freshness of what is shown, and the provider's last error if any.

    While a provider fails, the power shown is its last answer: once that is past its
    freshness window the line says so, with its age, ahead of the error (which may be
    cut off at the pane's edge; the staleness must not be).
    """
    if vm.error:
        stale = []
        if vm.stale and vm.checked_at is not None:
            age_seconds = (now - vm.checked_at).total_seconds()
            stale = [(f"stale {format_duration(age_seconds)} · ", "$warning bold")]
        return Content.assemble(("⚠ ", "$error bold"), *stale, (vm.error, "$error"))
    if vm.checked_at is None:
        return Content.styled("checking…", "$foreground-muted")
    age = format_age((now - vm.checked_at).total_seconds())
    if vm.stale:
        return Content.styled(f"stale: last answer {age}", "$warning")
    detail = f"{vm.raw_state} · " if vm.raw_state else ""
    return Content.styled(f"{detail}checked {age}", "$foreground-muted")


class VmCard(Widget, can_focus=True):
    """A focusable pane for one VM; the Fleet pane's keys act on the focused one."""

    DEFAULT_CSS = """
    VmCard {
        height: auto;
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        padding: 0 1;
    }
    VmCard:light {
        /* $panel-lighten-2 is white on a light theme: the pane's outline would vanish. */
        border: round $panel-darken-2;
    }
    VmCard:focus {
        border: round $primary;
        border-title-style: bold;
        background-tint: $primary 6%;
    }
    """

    def __init__(self, vm: VmSnapshot, now: datetime, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.vm = vm
        self.now = now
        self._telemetry: TelemetrySnapshot | None = None
        self._built_gauges: tuple[HostTelemetry, int, Content] | None = None
        self._title_of: tuple[str, str, str | None] | None = None
        self.behind = False
        """True while what it shows is older than what `show` gave (it was out of view)."""
        self.guard: GuardView | None = None
        """Its VM's dead-man's switch as the last heartbeat found it (None: none sent)."""
        self._apply_titles()

    @property
    def vm_name(self) -> str:
        return self.vm.name

    def show(
        self, vm: VmSnapshot, now: datetime, telemetry: TelemetrySnapshot | None = None, *, in_view: bool = True,
        guard: GuardView | None = None,
    ) -> None:  # fmt: skip
        """Take the VM's latest state; repaint if `in_view`, else only remember it (`behind`)
        and repaint when `paint()` is called, unless its height changes (the layout must know).

        `telemetry` is the fleet's: the card reads its VM's outline to count its lines, and
        its VM's GPU views only when it paints, so a card out of view builds none."""
        lines_before = self._gauge_lines()
        self.vm, self.now, self._telemetry, self.guard = vm, now, telemetry, guard
        resized = self._gauge_lines() != lines_before
        if in_view or resized:
            self.paint(layout=resized)
        else:
            self.behind = True

    def paint(self, *, layout: bool = False) -> None:
        """Repaint from what `show` gave last."""
        self.behind = False
        self._apply_titles()
        self.refresh(layout=layout)

    @property
    def telemetry(self) -> HostTelemetry | None:
        """Its VM's telemetry from the snapshot `show` gave last (built on first read)."""
        return self._telemetry.host(self.vm.name) if self._telemetry is not None else None

    def _gauges(self) -> Content | None:
        """The GPU block, built once per new telemetry (the hub hands out the same object
        until something shown changes) and width: a fleet of 100 VMs repaints every second."""
        host = self.telemetry
        if host is None or host.state is FeedState.OFF:  # not running, or no ssh: no GPU block
            return None
        width = self._inner_width()
        built = self._built_gauges
        if built is None or built[0] is not host or built[1] != width:
            built = self._built_gauges = (host, width, host_gauges_content(host, width=width))
        return built[2]

    def _gauge_lines(self) -> int:
        """How many lines the GPU block takes: a change of count needs a new layout."""
        outline = self._telemetry.outline(self.vm.name) if self._telemetry is not None else None
        if outline is not None and outline.gpu_indices and outline.state in (FeedState.LIVE, FeedState.STALE):
            return len(outline.gpu_indices)  # one gauge line per GPU: no need to build them to count
        gauges = self._gauges()
        return 0 if gauges is None else gauges.plain.count("\n") + 1

    def _inner_width(self) -> int:
        return max(20, self.content_size.width or PANE_WIDTH)

    def _apply_titles(self) -> None:
        # Content, not str: a str title would be parsed as markup, and labels come from providers.
        title_of = (self.vm.name, self.vm.provider, self.vm.label)
        if title_of != self._title_of:  # set only when it changes: each set repaints the card
            self._title_of = title_of
            title = [(self.vm.name, "bold"), ("  ", ""), (self.vm.provider, "$foreground-muted")]
            if self.vm.label and self.vm.label != self.vm.name:
                title += [("  ", ""), (self.vm.label, "$foreground-muted italic")]
            self.border_title = Content.assemble(*title)
        self.border_subtitle = Content.assemble(guard_content(self.guard, self.now), status_content(self.vm, self.now))

    def render(self) -> Content:
        text = Content.assemble(power_content(self.vm), "  ", money_content(self.vm), "\n", idle_content(self.vm))
        gauges = self._gauges()
        return text if gauges is None else Content.assemble(text, "\n", gauges)
