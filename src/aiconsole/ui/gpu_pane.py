"""The GPUs tab: every GPU of every host in one table (`GpuTable`, a line-API scroll view)."""

from __future__ import annotations

from aiconsole.domain.telemetry import TelemetrySnapshot
from aiconsole.ui.telemetry_pane import TelemetryPane
from aiconsole.ui.widgets.gpu_table import GpuTable


class GpuPane(TelemetryPane):
    def make_body(self) -> GpuTable:
        return GpuTable(id="gpu-table")

    @property
    def table(self) -> GpuTable:
        return self.body  # type: ignore[return-value]

    def show_snapshot(self, telemetry: TelemetrySnapshot) -> None:
        self.table.update_snapshot(telemetry)
