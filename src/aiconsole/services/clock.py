"""The wall clock, in one place: services take a `clock` argument and default to this."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
