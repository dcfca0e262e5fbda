"""GPU threshold levels: hysteresis, one crossing per change, and busyness where unknown is not idle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiconsole.domain.gpu import GpuFrame, GpuSample
from aiconsole.domain.gpu_levels import (
    GpuMetric,
    GpuThresholds,
    Level,
    LevelCrossing,
    LevelKey,
    crossings,
    is_gpu_busy,
    mem_level,
    temp_level,
)

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
T = GpuThresholds()
OK, WARNING, CRITICAL = Level.OK, Level.WARNING, Level.CRITICAL


def sample(
    index: int = 0,
    temp: float | None = 40.0,
    used: float | None = 1000.0,
    total: float | None = 10000.0,
    util: float | None = 0.0,
    at: datetime = AT,
) -> GpuSample:
    return GpuSample(index, f"GPU-{index}", "RTX 4090", temp, used, total, util, 100.0, 450.0, at)


def frame(*gpus: GpuSample) -> GpuFrame:
    return GpuFrame(gpus[0].at if gpus else AT, gpus)


def walk(values: list[float | None], level_of) -> list[Level]:  # type: ignore[no-untyped-def]
    levels, level = [], OK
    for value in values:
        level = level_of(value, level)
        levels.append(level)
    return levels


def test_defaults_come_from_fleet_md() -> None:
    assert (T.temp_warn_c, T.temp_critical_c, T.mem_warn_pct, T.mem_critical_pct) == (75, 85, 80, 95)
    assert (T.hysteresis_c, T.hysteresis_pct) == (3.0, 3.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"temp_warn_c": 90}, {"mem_warn_pct": 99}, {"hysteresis_c": -1}, {"hysteresis_pct": -0.1}],
)
def test_inconsistent_thresholds_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GpuThresholds(**kwargs)


def test_temperature_goes_up_at_the_threshold_and_down_below_threshold_minus_hysteresis() -> None:
    values = [74.9, 75.0, 74.5, 75.2, 73.0, 72.0, 71.9, 74.9, 75.0]
    assert walk(values, lambda v, p: temp_level(v, T, p)) == [
        OK, WARNING, WARNING, WARNING, WARNING, WARNING, OK, OK, WARNING,
    ]  # fmt: skip


def test_critical_is_held_to_its_own_margin_then_falls_to_the_right_level() -> None:
    assert temp_level(85.0, T, WARNING) == CRITICAL
    assert temp_level(82.0, T, CRITICAL) == CRITICAL
    assert temp_level(81.9, T, CRITICAL) == WARNING
    assert temp_level(72.0, T, CRITICAL) == WARNING  # still within warning's margin
    assert temp_level(50.0, T, CRITICAL) == OK
    assert temp_level(90.0, T, OK) == CRITICAL  # straight up, no stop at warning


def test_unknown_values_keep_the_previous_level() -> None:
    for previous in Level:
        assert temp_level(None, T, previous) == previous
        assert mem_level(None, 100, T, previous) == previous
        assert mem_level(50, None, T, previous) == previous
        assert mem_level(50, 0, T, previous) == previous


def test_vram_levels_use_percent_with_hysteresis_in_points() -> None:
    total = 24564.0
    shares = [0.79, 0.80, 0.78, 0.7699, 0.95, 0.93, 0.919]
    got = walk([s * total for s in shares], lambda v, p: mem_level(v, total, T, p))
    assert got == [OK, WARNING, WARNING, OK, CRITICAL, CRITICAL, WARNING]


def run_frames(frames: list[GpuFrame]) -> tuple[dict[LevelKey, Level], list[LevelCrossing]]:
    levels: dict[LevelKey, Level] = {}
    found: list[LevelCrossing] = []
    for f in frames:
        levels, new = crossings(levels, f, T)
        found += new
    return levels, found


def test_a_temperature_hovering_at_the_threshold_notifies_once_each_way() -> None:
    temps = [74.9, 75.0, 74.5, 75.2, 73.0, 71.9]
    frames = [frame(sample(temp=t, at=AT + timedelta(seconds=i))) for i, t in enumerate(temps)]
    levels, found = run_frames(frames)
    assert [(c.from_level, c.to_level, c.value) for c in found] == [(OK, WARNING, 75.0), (WARNING, OK, 71.9)]
    assert found[0].rising and not found[1].rising
    assert found[0].at == AT + timedelta(seconds=1) and found[1].at == AT + timedelta(seconds=5)
    assert (found[0].gpu_uuid, found[0].gpu_index, found[0].metric) == ("GPU-0", 0, GpuMetric.TEMP)
    assert levels[("GPU-0", "temp")] == OK


def test_repeated_samples_at_one_level_give_no_more_crossings() -> None:
    frames = [frame(sample(temp=90.0, used=9700.0)) for _ in range(20)]
    levels, found = run_frames(frames)
    assert [(c.metric, c.to_level) for c in found] == [(GpuMetric.TEMP, CRITICAL), (GpuMetric.VRAM, CRITICAL)]
    assert found[1].value == pytest.approx(97.0)
    assert levels == {("GPU-0", "temp"): CRITICAL, ("GPU-0", "vram"): CRITICAL}


def test_gpus_are_tracked_apart_and_a_missing_gpu_keeps_its_level() -> None:
    hot = frame(sample(0, temp=80.0), sample(1, temp=40.0))
    gone = frame(sample(0, temp=80.0))
    back = frame(sample(0, temp=80.0), sample(1, temp=86.0))
    levels, found = run_frames([hot, gone, hot, back])
    assert [(c.gpu_index, c.to_level) for c in found] == [(0, WARNING), (1, CRITICAL)]
    assert levels[("GPU-1", "temp")] == CRITICAL


def test_unknown_values_raise_no_crossing() -> None:
    frames = [frame(sample(temp=80.0)), frame(sample(temp=None, used=None)), frame(sample(temp=80.0))]
    _, found = run_frames(frames)
    assert len(found) == 1


def test_crossings_do_not_change_the_levels_passed_in() -> None:
    previous = {("GPU-0", "temp"): WARNING}
    levels, found = crossings(previous, frame(sample(temp=50.0)), T)
    assert previous == {("GPU-0", "temp"): WARNING}
    assert levels[("GPU-0", "temp")] == OK and found[0].from_level == WARNING


def test_a_frame_that_changes_no_level_returns_the_levels_passed_in() -> None:
    # Runs for every frame of every host: the common case must not copy the levels.
    previous = {("GPU-0", "temp"): WARNING}
    levels, found = crossings(previous, frame(sample(temp=74.0)), T)  # within the hysteresis: still warning
    assert levels is previous and found == []
    levels, found = crossings(previous, frame(sample(temp=50.0)), T)
    assert levels is not previous and levels[("GPU-0", "temp")] == OK and len(found) == 1


def test_a_gpu_without_uuid_is_keyed_by_index() -> None:
    nameless = GpuSample(3, "", "X", 90.0, None, None, None, None, None, AT)
    levels, found = crossings({}, frame(nameless), T)
    assert ("index:3", "temp") in levels and found[0].gpu_uuid == "index:3"


@pytest.mark.parametrize(
    ("utils", "expected"),
    [
        ([0.0, 0.0], False),
        ([10.0, 3.0], False),  # at the level is not above it
        ([0.0, 10.5], True),
        ([None, 0.0], None),  # unknown: the idle timer treats it as busy
        ([None, 50.0], True),  # one busy GPU decides
        ([], None),
    ],
)
def test_is_gpu_busy_is_tri_state(utils: list[float | None], expected: bool | None) -> None:
    f = GpuFrame(AT, tuple(sample(i, util=u) for i, u in enumerate(utils)))
    assert is_gpu_busy(f) is expected


def test_busy_threshold_is_configurable() -> None:
    f = frame(sample(util=30.0))
    assert is_gpu_busy(f, util_threshold_pct=50.0) is False
    assert is_gpu_busy(f, util_threshold_pct=20.0) is True
