"""The baseline for benchmarks/startup.py: a bare Textual app with one line of text."""

from textual.app import App, ComposeResult
from textual.widgets import Static


class BareApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("bare-app-ready")


if __name__ == "__main__":
    BareApp().run()
