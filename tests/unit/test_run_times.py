"""The scheduler's pendulum calendar (scheduler/run_times.py) gives SPEC §2's answers —
``domain.periods``, on the standard library's zoneinfo — for every IANA zone from 2000 to
2040: local midnights and 08:15 runs on every day a zone changes its offset (and the day
after), the wall clock just around every change (skipped times move forward by the gap,
repeated ones take the earlier instant), the latest due run, and month-end clamping."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import periods
from scheduler import run_times

pytestmark = pytest.mark.unit

ZONES = sorted(zoneinfo.available_timezones())
FIRST, LAST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2041, 1, 1, tzinfo=UTC)


@cache
def transitions() -> list[tuple[str, datetime]]:
    """Every (zone, instant) where a zone's offset changes, 2000–2040, to the minute: a
    scan every 28 days, then bisection (a zone that changes and changes back within 28 days
    is caught when the scan lands between the two)."""
    found: list[tuple[str, datetime]] = []
    step = timedelta(days=28)
    for name in ZONES:
        tz = zoneinfo.ZoneInfo(name)

        def offset(at: datetime, tz: zoneinfo.ZoneInfo = tz) -> timedelta | None:
            return at.astimezone(tz).utcoffset()

        at = FIRST
        while at < LAST:
            nxt = at + step
            if offset(at) != offset(nxt):
                lo, hi = at, nxt  # offset(lo) != offset(hi): bisect to the minute
                while hi - lo > timedelta(minutes=1):
                    mid = lo + (hi - lo) / 2
                    lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
                found.append((name, hi.replace(second=0, microsecond=0)))
            at = nxt
    return found


def test_the_scan_finds_the_changes_everyone_knows() -> None:
    assert ("America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)) in transitions()
    assert ("Europe/Oslo", datetime(2026, 10, 25, 1, 0, tzinfo=UTC)) in transitions()
    assert len({name for name, _ in transitions()}) > 300


def test_midnights_and_runs_on_every_change_in_every_zone() -> None:
    """Exhaustive: every zone, every offset change 2000–2040, its local date and the next."""
    checked = 0
    for name, at in transitions():
        day = at.astimezone(zoneinfo.ZoneInfo(name)).date()
        for d in (day, day + timedelta(days=1)):
            assert run_times.local_midnight(d, name) == periods.midnight(d, name), (name, d)
            run = run_times.run_instant(d, name)
            assert run == periods.bill_run_instant(d, name), (name, d)
            for now in (run - timedelta(seconds=1), run):
                assert run_times.latest_due(now, name) == periods.latest_run_date(now, name)
            checked += 1
    assert checked > 30_000


@settings(max_examples=3000, deadline=None)
@given(index=st.integers(0, 10**9), minutes=st.integers(-150, 150))
def test_the_wall_clock_around_any_change(index: int, minutes: int) -> None:
    """Wall-clock times near an offset change, read in both the offset before and after it:
    skipped times, repeated times, and the ordinary ones next to them."""
    name, at = transitions()[index % len(transitions())]
    tz = zoneinfo.ZoneInfo(name)
    for reading in (at - timedelta(minutes=1), at):
        wall = (reading.astimezone(tz) + timedelta(minutes=minutes)).replace(tzinfo=None)
        mine = run_times.local_instant(wall.date(), wall.hour, wall.minute, name)
        assert mine == periods.local_instant(wall.date(), time(wall.hour, wall.minute), name), \
            (name, wall)


@given(start=st.dates(date(2000, 1, 1), date(2040, 12, 31)), k=st.integers(0, 500))
def test_month_boundaries_clamp_from_the_start_date(start: date, k: int) -> None:
    assert run_times.month_boundary(start, k) == periods.add_months(start, k)


@pytest.mark.parametrize(("day", "hour", "minute", "name", "utc"), [
    # skipped: 02:30 does not exist on 8 March 2026 in New York; forward by the gap
    (date(2026, 3, 8), 2, 30, "America/New_York", datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    # repeated: 01:30 happens twice on 1 November 2026; the earlier (EDT) instant
    (date(2026, 11, 1), 1, 30, "America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    # Santiago skips midnight: the period begins at 01:00 local
    (date(2026, 9, 6), 0, 0, "America/Santiago", datetime(2026, 9, 6, 4, 0, tzinfo=UTC)),
    # Samoa skipped 30 December 2011 entirely: its 08:15 is a day's gap later
    (date(2011, 12, 30), 8, 15, "Pacific/Apia", datetime(2011, 12, 30, 18, 15, tzinfo=UTC)),
])
def test_known_changes(day: date, hour: int, minute: int, name: str, utc: datetime) -> None:
    assert run_times.local_instant(day, hour, minute, name) == utc
