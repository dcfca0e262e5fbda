"""Bounded histories that hand out immutable views without copying.

A GPU feed appends one point per sample to each of its series and builds a view of
every host once a second; with 800 GPUs x 3 series x 300 points, copying the histories
into tuples for every view cost ~1.5 % of a core (docs/performance.md), while only the
few GPUs on screen are ever drawn. So a `Series` is an append-only list that is replaced
(never edited) when it has grown half again past its length: points already in a list
never move or change, and a `SeriesWindow` over `[start, end)` of one list is therefore
immutable for as long as anyone holds it. Taking a window is O(1); reading it costs
only what is read (a sparkline reads its last few dozen points).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

Point = float | None
"""None is a value the tool could not read: drawn as a gap, never as zero."""


class SeriesWindow(Sequence[Point]):
    """Points `[start, end)` of an append-only list: an immutable sequence, equal to any
    sequence (tuple, list, window) with the same points."""

    __slots__ = ("_end", "_points", "_start")

    def __init__(self, points: list[Point], start: int, end: int) -> None:
        self._points, self._start, self._end = points, start, end

    def __len__(self) -> int:
        return self._end - self._start

    @overload
    def __getitem__(self, index: int) -> Point: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Point, ...]: ...
    def __getitem__(self, index: int | slice) -> Point | tuple[Point, ...]:
        if isinstance(index, slice):
            first, last, step = index.indices(len(self))
            if step != 1:
                return tuple(self)[index]
            start = self._start
            return tuple(self._points[start + first : start + max(first, last)])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("series index out of range")
        return self._points[self._start + index]

    def __iter__(self) -> Iterator[Point]:
        return iter(self._points[self._start : self._end])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SeriesWindow):
            if other._points is self._points and other._start == self._start and other._end == self._end:
                return True
            return len(other) == len(self) and tuple(other) == tuple(self)
        if isinstance(other, tuple | list):
            return len(other) == len(self) and tuple(other) == tuple(self)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"SeriesWindow({list(self)!r})"



class Series:
    """The last `length` points of one metric (mutable, owned by one writer)."""

    __slots__ = ("_limit", "_points", "length")

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        self.length = length
        # Replace the list once it holds half again its length: an amortised copy of one point per append.
        self._limit = length + max(1, length // 2)
        self._points: list[Point] = []

    def append(self, point: Point) -> None:
        points = self._points
        points.append(point)
        if len(points) >= self._limit:
            self._points = points[-self.length :]  # a new list: windows over the old one stay as they were

    def window(self) -> SeriesWindow:
        """The current points, oldest first, as an immutable view (no copy)."""
        return SeriesWindow(*self.bounds())

    def bounds(self) -> tuple[list[Point], int, int]:
        """(list, start, end): what a window holds, for callers that make one only when read."""
        points = self._points
        end = len(points)
        return points, (end - self.length if end > self.length else 0), end
