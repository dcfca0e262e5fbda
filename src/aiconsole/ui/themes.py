"""Themes from TOML files: ours (shipped in the wheel) and the user's own.

A theme file that cannot be read or names a bad colour is reported and skipped;
it never stops the console from starting.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

DEFAULT_THEME = "aiconsole-dark"

_COLOUR_FIELDS = (
    "primary", "secondary", "warning", "error", "success", "accent",
    "foreground", "background", "surface", "panel", "boost",
)  # fmt: skip
_OTHER_FIELDS = {"name": str, "dark": bool, "luminosity_spread": float, "text_alpha": float}


@dataclass(frozen=True, slots=True)
class ThemeProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"theme file {self.path}: {self.message}"


class ThemeFileError(ValueError):
    pass


def bundled_theme_dirs() -> list[Path]:
    """Our themes: inside the installed wheel, or the repo's top-level themes/ in a checkout."""
    here = Path(__file__).resolve().parent.parent  # src/aiconsole
    candidates = (here / "themes", here.parent.parent / "themes")
    return [d for d in candidates if d.is_dir()]


def load_theme_file(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ThemeFileError(f"cannot be read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ThemeFileError(f"is not valid TOML ({error})") from None
    return _theme_from_table(data)


def _theme_from_table(data: dict) -> Theme:
    unknown = set(data) - set(_COLOUR_FIELDS) - set(_OTHER_FIELDS) - {"variables"}
    if unknown:
        raise ThemeFileError(f"unknown field(s) {', '.join(sorted(unknown))}")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ThemeFileError("needs a `name`")
    if "primary" not in data:
        raise ThemeFileError("needs a `primary` colour")
    for key, kind in _OTHER_FIELDS.items():
        accepted = (int, float) if kind is float else kind  # TOML writes 1 for 1.0
        if key in data and not isinstance(data[key], accepted):
            raise ThemeFileError(f"`{key}` must be a {kind.__name__}, got {data[key]!r}")
    colours = {key: data[key] for key in _COLOUR_FIELDS if key in data}
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ThemeFileError("`variables` must be a table")
    for key, value in colours.items():
        _check_colour(key, value)
    for key, value in variables.items():
        if not isinstance(value, str):
            raise ThemeFileError(f"variable `{key}` must be a string, got {value!r}")
        if key.endswith(("-background", "-foreground", "-color")):
            _check_colour(key, value)
    others = {key: data[key] for key in _OTHER_FIELDS if key in data}
    return Theme(**others, **colours, variables={str(k): str(v) for k, v in variables.items()})


def _check_colour(key: str, value: object) -> None:
    if not isinstance(value, str):
        raise ThemeFileError(f"`{key}` must be a colour string, got {value!r}")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeFileError(f"`{key}` = {value!r} is not a colour") from None


def load_themes(dirs: list[Path]) -> tuple[list[Theme], list[ThemeProblem]]:
    """Every `*.toml` theme in `dirs` (later dirs override earlier names), and the problems."""
    themes: dict[str, Theme] = {}
    problems: list[ThemeProblem] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeFileError as error:
                problems.append(ThemeProblem(path, str(error)))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
