"""How numbers read on screen and in the CLI: money, durations, ages."""

from __future__ import annotations


def format_usd(amount: float) -> str:
    """Dollars with cents; a cost that has begun but is under a cent reads "<$0.01", not "$0.00"."""
    if 0 < amount < 0.005:
        return "<$0.01"
    return f"${amount:,.2f}"


def format_duration(seconds: float | None) -> str:
    """Compact and stable-width enough for a pane: '45s', '4m 12s', '2h 05m', '3d 04h'."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_age(seconds: float | None) -> str:
    """'12s ago', or 'never' when there was no observation."""
    if seconds is None:
        return "never"
    return f"{format_duration(seconds)} ago"


def format_percent(part: float, whole: float) -> str:
    if whole <= 0:
        return "—"
    return f"{100 * part / whole:.0f}%"
