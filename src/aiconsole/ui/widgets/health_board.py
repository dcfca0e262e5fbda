"""The service health board: each host's services, one line each, with the last error.

    inference  ● 2 up  ✖ 1 down
      ● ollama         ollama  up           12 ms  v0.12.6
      ✖ webui          http    down             —  connection refused
      ◐ vllm           openai  starting    503 ms  HTTP 503: loading model

State reads by glyph and word as well as colour. Every string from outside (names,
versions, errors) passes the sanitiser again here, whatever the producer did, and is
placed as plain `Content`: never parsed as markup. An error too long for its line
moves to the line below, cut to the width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from textual.content import Content
from textual.widget import Widget

from aiconsole.domain.health import HealthState, ServiceHealth
from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import HostOutline, HostTelemetry, TelemetrySnapshot

HostServices: TypeAlias = HostOutline | HostTelemetry
"""What the board reads of a host: its name and services (an outline has both, without GPU views)."""

MUTED = "$foreground-muted"  # not $text-muted: "auto 60%" comes out pure white (black) in a Content span
STATE_LOOK: dict[HealthState, tuple[str, str]] = {
    HealthState.UP: ("●", "$success"),
    HealthState.STARTING: ("◐", "$warning"),
    HealthState.DOWN: ("✖", "$error bold"),
    HealthState.UNKNOWN: ("?", MUTED),
}
_ORDER = (HealthState.UP, HealthState.DOWN, HealthState.STARTING, HealthState.UNKNOWN)
NAME_WIDTH = 14
KIND_WIDTH = 7
STATE_WIDTH = 8
LATENCY_WIDTH = 8
_INDENT = "  "
DETAIL_COLUMN = len(_INDENT) + 2 + NAME_WIDTH + 1 + KIND_WIDTH + 1 + STATE_WIDTH + 1 + LATENCY_WIDTH + 2
ERROR_INDENT = 6


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def format_latency(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1:
        return "<1 ms"
    if ms >= 10_000:
        return f"{ms / 1000:.0f} s"
    return f"{ms:.0f} ms"


def host_summary(host: HostServices) -> Content:
    """ "inference  ● 2 up  ✖ 1 down": the host, and how many services are in each state."""
    counts = {state: 0 for state in _ORDER}
    for service in host.services:
        counts[service.state] += 1
    parts: list[tuple[str, str] | str] = [(sanitize_line(host.host, 60), "bold")]
    for state in _ORDER:
        if counts[state]:
            glyph, style = STATE_LOOK[state]
            parts += ["  ", (f"{glyph} {counts[state]} {state.value}", style)]
    return Content.assemble(*parts)


def _detail(service: ServiceHealth) -> tuple[str, str]:
    """What follows the latency: the version when up, else the last error (or why none)."""
    error = sanitize_line(service.error, 500)
    if service.state is HealthState.UP:
        version = sanitize_line(service.version, 40)
        if version and not version[0].isalpha():
            version = "v" + version
        return version, MUTED
    if error:
        return error, "$error" if service.state is HealthState.DOWN else "$warning"
    if service.state is HealthState.UNKNOWN:
        return "not checked yet", MUTED
    return "", MUTED


def service_lines(service: ServiceHealth, width: int) -> list[Content]:
    """One line for the service; a second one for an error that does not fit the first."""
    glyph, style = STATE_LOOK[service.state]
    name = _fit(sanitize_line(service.name, 200), NAME_WIDTH).ljust(NAME_WIDTH)
    kind = _fit(sanitize_line(service.kind, 40), KIND_WIDTH).ljust(KIND_WIDTH)
    latency = format_latency(service.latency_ms).rjust(LATENCY_WIDTH)
    line = Content.assemble(
        _INDENT,
        (f"{glyph} ", style),
        (name, "bold" if service.state is HealthState.UP else ""),
        " ",
        (kind, MUTED),
        " ",
        (service.state.value.ljust(STATE_WIDTH), style),
        " ",
        (latency, MUTED if service.latency_ms is None else ""),
        "  ",
    )
    detail, detail_style = _detail(service)
    room = width - line.cell_length
    if len(detail) <= room or service.state is HealthState.UP:
        return [Content.assemble(line, (_fit(detail, room), detail_style)).truncate(width)]
    below = Content.assemble(" " * ERROR_INDENT, (_fit(detail, width - ERROR_INDENT), detail_style))
    return [line.rstrip().truncate(width), below.truncate(width)]


def board_lines(hosts: Sequence[HostServices], width: int) -> list[Content]:
    lines: list[Content] = []
    for host in hosts:
        if not host.services:
            continue
        lines.append(host_summary(host).truncate(width, ellipsis=True))
        for service in host.services:
            lines += service_lines(service, width)
    return lines or [Content.styled("No services configured.", MUTED)]


class HealthBoard(Widget):
    """Each host's services; feed it with `update_snapshot(snapshot)` (or `show(hosts)`).

    Height follows the number of lines: put it in a scrolling container when the fleet
    has more services than the screen has lines.
    """

    DEFAULT_CSS = """
    HealthBoard {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(
        self, hosts: Sequence[HostServices] = (), *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._hosts: tuple[HostServices, ...] = tuple(hosts)
        self._shown = self._services_of(self._hosts)

    @staticmethod
    def _services_of(hosts: Sequence[HostServices]) -> tuple:
        return tuple((host.host, host.services) for host in hosts)

    def update_snapshot(self, snapshot: TelemetrySnapshot) -> None:
        self.show(snapshot.outlines)  # the outlines carry the services: no GPU view is built

    def show(self, hosts: Sequence[HostServices]) -> None:
        """Repaint only when some service's health changed (GPU samples alone do not count)."""
        services = self._services_of(hosts)
        self._hosts = tuple(hosts)
        if services != self._shown:
            self._shown = services
            self.refresh(layout=True)

    def render(self) -> Content:
        width = self.content_size.width or 78
        return Content("\n").join(board_lines(self._hosts, width))
