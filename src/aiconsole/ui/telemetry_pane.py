"""The base of the tabs drawn from telemetry (GPUs, Services): a status line until data comes.

The telemetry hub is built after the first frame, in a thread (asyncssh is slow to
import), and may fail to start. Until a pane gets its first snapshot it says why it has
nothing to show ("starting telemetry…", or the error), instead of an empty view that
would read as "no GPUs" or "no services".
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from aiconsole.domain.sanitize import sanitize_line
from aiconsole.domain.telemetry import TelemetrySnapshot

STARTING = Content.styled("◐ starting telemetry…", "$foreground-muted")
OFF = Content.styled("Telemetry is off.", "$foreground-muted")


def failed(error: object, what: str = "telemetry") -> Content:
    """Why there is no telemetry (or no `what`); the error text is untrusted (it can quote a remote's words)."""
    return Content.assemble((f"✖ {what} is off: ", "$error bold"), (sanitize_line(str(error), 300), "$error"))


class TelemetryPane(Vertical):
    """A tab fed by the console's tick with `draw(snapshot)`; `say(status)` until the first one."""

    DEFAULT_CSS = """
    TelemetryPane { height: 1fr; }
    TelemetryPane > .telemetry-status { padding: 1 2; }
    """

    def __init__(self, status: Content = STARTING, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._status = Static(status, classes="telemetry-status")
        self.body = self.make_body()
        self.body.display = False
        self.live = False
        """True once a snapshot has been drawn (the status line is gone)."""

    def make_body(self) -> Widget:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        yield self._status
        yield self.body

    def say(self, status: Content) -> None:
        """No telemetry to draw (starting, off, failed): say so, and hide what was drawn before."""
        self._status.update(status)
        self._status.display = True
        self.body.display = False
        self.live = False

    def draw(self, telemetry: TelemetrySnapshot | None) -> None:
        """The console's tick: draw `telemetry` (None: none yet, keep the status line)."""
        if telemetry is None:
            return
        self.go_live()
        self.show_snapshot(telemetry)

    def go_live(self) -> None:
        """The status line gives way to the view."""
        if not self.live:
            self.live = True
            self._status.display = False
            self.body.display = True

    def show_snapshot(self, telemetry: TelemetrySnapshot) -> None:
        raise NotImplementedError

    @property
    def focus_target(self) -> Widget | None:
        """What to focus when the tab is shown (None while the status line shows)."""
        return self.body if self.live else None
