"""The Services tab: each host's services and their health (`HealthBoard`), scrollable."""

from __future__ import annotations

from textual.containers import VerticalScroll

from aiconsole.domain.telemetry import TelemetrySnapshot
from aiconsole.ui.telemetry_pane import TelemetryPane
from aiconsole.ui.widgets.health_board import HealthBoard


class ServicesPane(TelemetryPane):
    DEFAULT_CSS = """
    ServicesPane > #services-scroll { height: 1fr; }
    """

    def make_body(self) -> VerticalScroll:
        self.board = HealthBoard(id="health-board")
        return VerticalScroll(self.board, id="services-scroll")

    def show_snapshot(self, telemetry: TelemetrySnapshot) -> None:
        self.board.update_snapshot(telemetry)
