"""Billing periods, boundaries and the daily bill-run instant (SPEC §2, §7).

A boundary ``b_k = start + k × interval`` is always computed from the start date,
clamping to the last day of a shorter month. Local dates become instants at local
midnight in the entity's time zone. A local time that a DST change skips moves forward
by the gap; one that occurs twice takes the earlier instant. Both are what PEP 495's
``fold=0`` gives, so we resolve with ``zoneinfo`` and ``fold=0`` explicitly (pendulum's
own default picks the later instant of a repeated hour).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from domain.validation import Invalid

BILL_RUN_TIME = time(8, 15)


class Interval(StrEnum):
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


@cache
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; an unknown name is ``Invalid``."""
    if name not in available_timezones():
        raise Invalid("timezone", f"{name!r} is not an IANA time zone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise Invalid("timezone", f"{name!r} is not an IANA time zone") from None


def add_months(start: date, months: int) -> date:
    years, month_index = divmod(start.month - 1 + months, 12)
    year, month = start.year + years, month_index + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def boundary(start: date, interval: Interval, k: int) -> date:
    """``b_k``: the k-th boundary, computed from the start date."""
    if interval is Interval.WEEK:
        return start + timedelta(days=7 * k)
    months = {Interval.MONTH: 1, Interval.QUARTER: 3, Interval.YEAR: 12}[interval]
    return add_months(start, months * k)


def boundaries(start: date, interval: Interval) -> Iterator[tuple[int, date]]:
    k = 0
    while True:
        yield k, boundary(start, interval, k)
        k += 1


def period_of(start: date, interval: Interval, tz: str, at: datetime) -> int | None:
    """The k of the period ``[b_k 00:00, b_(k+1) 00:00)`` local that contains the instant
    ``at``; None before ``b_0``."""
    if at < midnight(start, tz):
        return None
    local = at.astimezone(zone(tz)).date()
    if interval is Interval.WEEK:
        k = (local - start).days // 7
    else:
        months = {Interval.MONTH: 1, Interval.QUARTER: 3, Interval.YEAR: 12}[interval]
        k = ((local.year - start.year) * 12 + local.month - start.month) // months
    k = max(k, 0)
    while k > 0 and midnight(boundary(start, interval, k), tz) > at:
        k -= 1
    while midnight(boundary(start, interval, k + 1), tz) <= at:
        k += 1
    return k


def boundary_index(start: date, interval: Interval, day: date) -> int | None:
    """k such that ``b_k == day``, or None when ``day`` is not a boundary."""
    for k, b in boundaries(start, interval):
        if b == day:
            return k
        if b > day:
            return None
    raise AssertionError("unreachable")


def local_instant(day: date, at: time, tz: str) -> datetime:
    """The UTC instant of local ``day`` ``at`` in ``tz``: gaps move forward, folds take the
    earlier instant."""
    local = datetime.combine(day, at).replace(tzinfo=zone(tz), fold=0)
    return local.astimezone(UTC)


def local_date(at: datetime, tz: str) -> date:
    """The local date of an instant in the zone ``tz``."""
    return at.astimezone(zone(tz)).date()


def midnight(day: date, tz: str) -> datetime:
    """``day 00:00`` local as a UTC instant: where a period begins or ends."""
    return local_instant(day, time(0, 0), tz)


def bill_run_instant(day: date, tz: str) -> datetime:
    """The instant of the entity's bill run on local ``day``: 08:15 local."""
    return local_instant(day, BILL_RUN_TIME, tz)


def latest_run_date(now: datetime, tz: str) -> date:
    """The most recent local date whose 08:15 bill run is due at ``now``."""
    today = now.astimezone(zone(tz)).date()
    return today if bill_run_instant(today, tz) <= now else today - timedelta(days=1)


def cancellation_end(start: date, interval: Interval, tz: str, at: datetime) -> date:
    """SPEC §7: the first boundary ``b_k`` with k ≥ 1 whose instant is later than ``at``."""
    for k, b in boundaries(start, interval):
        if k >= 1 and midnight(b, tz) > at:
            return b
    raise AssertionError("unreachable")


def next_run_at(tz: str, not_before: datetime) -> datetime:
    """The first daily bill run (08:15 local) at or after ``not_before``."""
    day = not_before.astimezone(zone(tz)).date()
    while bill_run_instant(day, tz) < not_before:
        day += timedelta(days=1)
    return bill_run_instant(day, tz)
