"""What a pay-per-use VM has cost so far: today, this month, this run.

Cost is billed time times the hourly rate. Billed time comes from power intervals,
the ledger's record of which known state each VM was in and when.

Design note — unknown is not stopped. The ledger records KNOWN states only: an
unknown or error observation (the provider's API failing, a timeout) neither opens
nor closes an interval. A VM whose API is failing therefore keeps accruing at its
last known state. For a budget that is the safe side: a VM we last saw running
probably still costs money, and assuming it stopped would under-report spending
exactly when the operator cannot see the VM.

Time: `now` is always passed in (no clock reads here) and every datetime must be
timezone-aware. "Today" and "this month" end at the operator's midnight, so the
windows are computed in a timezone passed in. Arithmetic is done on UTC epoch
seconds, because subtracting two aware datetimes that share a tzinfo ignores
their offsets in Python and would count a 23-hour DST day as 24 hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from aiconsole.domain.power import PowerState

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class PowerInterval:
    """A VM was in `state` from `start` until `end` (None: still is)."""

    vm: str
    state: PowerState
    start: datetime
    end: datetime | None = None
    # Epoch seconds, computed once: the monitor sums a month of intervals per VM per
    # tick, and aware `.timestamp()` calls would be most of that work.
    start_ts: float = field(init=False, repr=False, compare=False)
    end_ts: float | None = field(init=False, repr=False, compare=False)
    is_billed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_aware(self.start, "start")
        object.__setattr__(self, "is_billed", self.state.is_billed)
        object.__setattr__(self, "start_ts", self.start.timestamp())
        end_ts = None
        if self.end is not None:
            require_aware(self.end, "end")
            end_ts = self.end.timestamp()
            if end_ts < self.start_ts:
                raise ValueError(f"interval for {self.vm!r} ends before it starts")
        object.__setattr__(self, "end_ts", end_ts)

    @property
    def is_open(self) -> bool:
        return self.end is None


def require_aware(moment: datetime, what: str = "datetime") -> None:
    """Refuse naive datetimes: `.timestamp()` would silently read them as local time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")


def billed_seconds(
    intervals: Sequence[PowerInterval],
    window_start: datetime,
    window_end: datetime,
    now: datetime,
) -> float:
    """Seconds of billed state inside [window_start, window_end), never counting past `now`.

    Open intervals run until `now`. Intervals may belong to several VMs; the sum is
    then VM-seconds (multiply by one rate only when the VMs share it).
    """
    for moment, what in ((window_start, "window_start"), (window_end, "window_end"), (now, "now")):
        require_aware(moment, what)
    low = window_start.timestamp()
    high = min(window_end.timestamp(), now.timestamp())
    if high <= low:
        return 0.0
    total = 0.0
    for interval in intervals:
        end = interval.end_ts
        if (end is not None and end <= low) or not interval.is_billed:
            continue
        start = interval.start_ts
        if start >= high:
            continue
        total += (high if end is None or end > high else end) - (low if start < low else start)
    return total


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    """Midnight starting `day` in `tz`, as UTC.

    Where midnight itself is skipped by a DST jump (a few zones change clocks at
    00:00), fold=0 maps the missing wall time onto the jump's instant, which is when
    that day really began.
    """
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def day_window(now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of the operator's day containing `now`, as UTC datetimes.

    Returned in UTC so that `end - start` is the true length (23 or 25 hours on DST days).
    """
    require_aware(now, "now")
    today = now.astimezone(tz).date()
    return _local_midnight(today, tz), _local_midnight(today + timedelta(days=1), tz)


def month_window(now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of the operator's calendar month containing `now`, as UTC datetimes."""
    require_aware(now, "now")
    local = now.astimezone(tz)
    first = date(local.year, local.month, 1)
    if local.month == 12:
        following = date(local.year + 1, 1, 1)
    else:
        following = date(local.year, local.month + 1, 1)
    return _local_midnight(first, tz), _local_midnight(following, tz)


def cost_today(intervals: Sequence[PowerInterval], hourly_usd: float, now: datetime, tz: tzinfo) -> float:
    """Dollars billed since the operator's last midnight (one VM's intervals)."""
    start, end = day_window(now, tz)
    return billed_seconds(intervals, start, end, now) / SECONDS_PER_HOUR * hourly_usd


def cost_month(intervals: Sequence[PowerInterval], hourly_usd: float, now: datetime, tz: tzinfo) -> float:
    """Dollars billed since the first of the operator's month (one VM's intervals)."""
    start, end = month_window(now, tz)
    return billed_seconds(intervals, start, end, now) / SECONDS_PER_HOUR * hourly_usd


def last_run(intervals: Sequence[PowerInterval]) -> Sequence[PowerInterval]:
    """The latest stretch of billed intervals with no unbilled one between them.

    starting -> running -> stopping is one run. Intervals must be one VM's, in start
    order (the ledger's order). Walking back from the end keeps this cheap: it only
    looks at the last run and the stretch of unbilled intervals after it.
    """
    end = len(intervals)
    while end > 0 and not intervals[end - 1].is_billed:
        end -= 1
    begin = end
    while begin > 0 and intervals[begin - 1].is_billed:
        begin -= 1
    return intervals[begin:end]


def cost_this_run(
    intervals: Sequence[PowerInterval], hourly_usd: float, now: datetime, tz: tzinfo
) -> float:
    """Dollars billed by the current run, or by the last run if it ended today, else 0.

    "Today" is the operator's day in `tz`: a VM stopped this morning still shows what
    its last run cost until midnight, then 0. A run that ended today counts whole,
    including any part before midnight: the figure is about the run, not the day.
    A run that began before the oldest interval passed in is counted from there.
    """
    run = last_run(intervals)
    if not run:
        return 0.0
    run_end = run[-1].end_ts
    if run_end is not None and run_end < now.timestamp():
        today_start, _ = day_window(now, tz)
        if run_end <= today_start.timestamp():
            return 0.0
    start = run[0].start
    return billed_seconds(run, start, max(now, start), now) / SECONDS_PER_HOUR * hourly_usd
