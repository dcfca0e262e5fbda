"""Horizontal bars drawn with one character, for the budget, disk, VRAM and pull progress.

Filled and empty cells differ by colour only, so a bar always comes with its figures
(a share, bytes) in text beside it: they read in 256 colours and in monochrome.
"""

from __future__ import annotations

from collections.abc import Sequence

BAR_CHAR = "━"


def bar_track(dark: bool) -> str:
    """The empty part of a bar: $panel-lighten-2 is white on a light theme, i.e. invisible."""
    return "$panel-lighten-2" if dark else "$panel-darken-2"


def bar_pieces(parts: Sequence[tuple[float, str]], width: int, track: str) -> list[tuple[str, str]]:
    """A bar `width` cells long: each (share of the whole, style) part after the other, then
    the track. Each part's end is rounded from the running total, so the parts never add
    up to more than `width` and a bar full to 100 % is full to the last cell."""
    pieces: list[tuple[str, str]] = []
    done = 0
    total = 0.0
    for share, style in parts:
        total += max(0.0, share)
        end = min(width, round(total * width))
        pieces.append((BAR_CHAR * (end - done), style))
        done = end
    pieces.append((BAR_CHAR * (width - done), track))
    return pieces
