"""`Series` and `SeriesWindow`: histories that hand out views without copying, and never change them."""

from __future__ import annotations

import random

import pytest

from aiconsole.domain.series import Series, SeriesWindow


def test_a_window_keeps_its_points_while_the_series_grows_and_is_compacted() -> None:
    series = Series(4)
    for value in (1.0, 2.0, None):
        series.append(value)
    early = series.window()
    assert early == (1.0, 2.0, None) and len(early) == 3
    for value in range(3, 20):  # past the 1.5x limit several times: the list is replaced, not edited
        series.append(float(value))
    assert early == (1.0, 2.0, None), "an old window must not see later points"
    assert series.window() == (16.0, 17.0, 18.0, 19.0) and len(series.window()) == 4


def test_windows_read_like_tuples() -> None:
    series = Series(5)
    for value in range(8):
        series.append(float(value))
    window = series.window()
    expected = (3.0, 4.0, 5.0, 6.0, 7.0)
    assert tuple(window) == expected and list(window) == list(expected)
    assert window[0] == 3.0 and window[-1] == 7.0
    assert window[-3:] == expected[-3:] and window[-99:] == expected and window[1:3] == (4.0, 5.0)
    assert window[::-1] == expected[::-1] and window[4:1] == ()
    with pytest.raises(IndexError):
        window[5]
    with pytest.raises(IndexError):
        window[-6]
    assert window == list(expected) and expected == window and window != (3.0, 4.0)
    assert hash(window) == hash(expected) and set(window) == set(expected)
    assert SeriesWindow([], 0, 0) == () and len(SeriesWindow([], 0, 0)) == 0


def test_against_a_plain_bounded_list_under_random_appends() -> None:
    rng = random.Random(5)
    for length in (1, 2, 3, 10, 300):
        series, model, kept = Series(length), [], []
        for _ in range(2000):
            point = None if rng.random() < 0.1 else float(rng.randrange(100))
            series.append(point)
            model = [*model, point][-length:]
            if rng.random() < 0.05:
                kept.append((series.window(), tuple(model)))
        assert series.window() == tuple(model)
        assert all(window == frozen for window, frozen in kept), "a window changed after it was taken"


def test_a_series_needs_a_length() -> None:
    with pytest.raises(ValueError, match="positive"):
        Series(0)
    assert SeriesWindow([1.0, 2.0], 1, 2) == (2.0,)
