"""aiconsole: a terminal console for running a personal AI fleet."""

__version__ = "0.1.0.dev0"
