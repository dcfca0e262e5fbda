"""Reading the config file into plain TOML data, and the errors every config step raises.

Kept apart from the pydantic models (config.py) because the console reads the file
before its first frame and validates it just after: importing pydantic costs more
than the whole start-up budget (see docs/performance.md).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the config, for a message or a UI list."""

    field: str
    """Where, in TOML terms: ``vm[0] (inference).hourly_usd``; empty for the whole file."""
    value: str | None
    """The bad value, repr'd and shortened; None when not shown (tables, secrets, missing keys)."""
    reason: str
    loc: tuple[Any, ...] = ()
    """pydantic's location of the problem, when it has one."""

    def __str__(self) -> str:
        where = f"{self.field} = {self.value}" if self.value is not None else self.field
        return f"{where}: {self.reason}" if where else self.reason


class ConfigError(Exception):
    """The config could not be read or is invalid; the message is ready to show as is."""

    def __init__(self, message: str, *, source: str = "", problems: tuple[ConfigProblem, ...] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.problems = problems


class SecretError(ConfigError):
    """A secret the config names could not be read; the message names the variable or file."""

    def __init__(self, message: str, *, env_name: str) -> None:
        super().__init__(message, source=env_name)
        self.env_name = env_name


def read_config_data(path: Path) -> dict[str, Any]:
    """The config file at `path` as TOML data; `ConfigError` names the file and what is wrong."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found. Run `aiconsole init` to write a starter config there,"
            " or point --config or AICONSOLE_CONFIG at yours.",
            source=str(path),
        ) from None
    except OSError as exc:
        message = f"{path}: cannot read the config file: {exc.strerror or exc}"
        raise ConfigError(message, source=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"{path}: not UTF-8 text (bad byte at offset {exc.start})"
        raise ConfigError(message, source=str(path)) from None
    return parse_config_text(text, str(path))


def parse_config_text(text: str, source_name: str = "<config>") -> dict[str, Any]:
    """TOML text as data; a syntax error names the source, line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_message(exc, source_name), source=source_name) from None


def _syntax_message(exc: tomllib.TOMLDecodeError, source: str) -> str:
    # Python 3.14 adds lineno/colno; before that they only appear in the message text.
    text = str(exc)
    line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    if line is None and (found := re.search(r"\(at line (\d+), column (\d+)\)$", text)):
        line, col = int(found[1]), int(found[2])
    reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)$", "", text)
    at = f"line {line}, column {col}" if line is not None else "the end of the file"
    return f"{source}: TOML syntax error at {at}: {reason}"


def ui_theme_hint(data: dict[str, Any]) -> str | None:
    """`[ui] theme` from unvalidated data, so the first frame is already in the user's theme.

    Validation comes right after the first frame; a bad value here only means the
    default theme is shown until then.
    """
    ui = data.get("ui")
    theme = ui.get("theme") if isinstance(ui, dict) else None
    return theme if isinstance(theme, str) and theme.strip() else None
