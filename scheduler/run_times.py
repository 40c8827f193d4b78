"""When bill runs are due, in pendulum: each entity's run is at 08:15 on every local date of
its time zone, and a period begins and ends at local midnights (SPEC §2).

Local times that a DST change skips or repeats are resolved explicitly, never by
pendulum's default (``fold=1``, which takes the *later* of two repeated instants): a
skipped time moves forward by the gap (the wall clock read with the offset in force before
the change), a repeated one takes the earlier instant. A property test holds these equal
to ``domain.periods`` — SPEC §2 in the standard library — for every IANA zone from 2000 to
2040 (tests/unit/test_run_times.py).

Instants come back as standard ``datetime`` in UTC: pendulum stays inside the scheduler,
and off the ingest path (adding minutes to a pendulum ``DateTime`` per event once cost 8 %
of a worker's time).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache

import pendulum

RUN_HOUR, RUN_MINUTE = 8, 15


@lru_cache(maxsize=200_000)
def local_instant(day: date, hour: int, minute: int, tz: str) -> datetime:
    """The UTC instant of ``hour:minute`` on local ``day`` in ``tz`` (SPEC §2). Remembered:
    entities share time zones, so 100,000 of them need a few hundred of these a day."""
    earlier = pendulum.datetime(day.year, day.month, day.day, hour, minute, tz=tz, fold=0)
    if (earlier.year, earlier.month, earlier.day, earlier.hour, earlier.minute) \
            != (day.year, day.month, day.day, hour, minute):
        # a skipped time: pendulum's fold=0 reads it with the offset after the change (it
        # would move back); fold=1 reads it with the offset before it — forward by the gap
        chosen = pendulum.datetime(day.year, day.month, day.day, hour, minute, tz=tz, fold=1)
    else:
        chosen = earlier  # the only instant, or the earlier of two repeated ones
    return _utc(chosen)


def run_instant(day: date, tz: str) -> datetime:
    """The instant of the bill run of local ``day``: 08:15 local."""
    return local_instant(day, RUN_HOUR, RUN_MINUTE, tz)


def local_midnight(day: date, tz: str) -> datetime:
    """``day 00:00`` local: where a period begins or ends."""
    return local_instant(day, 0, 0, tz)


def local_date(at: datetime, tz: str) -> date:
    """The date on the wall clock of ``tz`` at the instant ``at``."""
    local = pendulum.instance(at).in_timezone(tz)
    return date(local.year, local.month, local.day)


def latest_due(now: datetime, tz: str) -> date:
    """The most recent local date whose run is due at ``now``."""
    today = local_date(now, tz)
    return today if run_instant(today, tz) <= now else _add_days(today, -1)


@lru_cache(maxsize=4096)
def next_run(after: date) -> date:
    """The local date of the run after the run of ``after``."""
    return _add_days(after, 1)


def month_boundary(start: date, months: int) -> date:
    """``start`` plus ``months`` months, clamped to the month's last day (SPEC §2's b_k of a
    monthly, quarterly or yearly plan: always from the start date, never cumulative)."""
    moved = pendulum.date(start.year, start.month, start.day).add(months=months)
    return date(moved.year, moved.month, moved.day)


def utc_offset_minutes(at: datetime, tz: str) -> int:
    """The offset from UTC of ``tz``'s wall clock at ``at``, in minutes."""
    offset = pendulum.instance(at).in_timezone(tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def _add_days(day: date, days: int) -> date:
    moved = pendulum.date(day.year, day.month, day.day).add(days=days)
    return date(moved.year, moved.month, moved.day)


def _utc(moment: pendulum.DateTime) -> datetime:
    utc = moment.in_timezone("UTC")
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second,
                    utc.microsecond, tzinfo=UTC)
