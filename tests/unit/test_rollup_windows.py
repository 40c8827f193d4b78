"""Which parts of a window the rollups cannot hold: the hours an edge cuts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from domain.periods import midnight
from persistence.rollups import Totals, floor_hour, split_hours


def test_windows_on_the_hour_have_no_split_hour() -> None:
    bounds = [midnight(date(2026, 3, d), "Europe/Oslo") for d in range(27, 31)]  # DST
    assert split_hours(bounds) == []


def test_a_zone_half_an_hour_off_splits_the_hour_of_each_midnight() -> None:
    bounds = [midnight(date(2026, 3, d), "Asia/Kolkata") for d in (1, 2, 3)]
    first = datetime(2026, 2, 28, 18, 30, tzinfo=UTC)
    assert bounds[0] == first
    assert split_hours(bounds) == [
        (first, datetime(2026, 2, 28, 19, tzinfo=UTC)),  # cut at the outer bound
        (datetime(2026, 3, 1, 18, tzinfo=UTC), datetime(2026, 3, 1, 19, tzinfo=UTC)),
        (datetime(2026, 3, 2, 18, tzinfo=UTC), datetime(2026, 3, 2, 18, 30, tzinfo=UTC)),
    ]


def test_a_window_inside_one_hour_is_read_from_the_events_alone() -> None:
    start = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    assert split_hours([start, start + timedelta(minutes=30)]) == [
        (start, start + timedelta(minutes=30))]
    assert floor_hour(start) == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_totals_add_up_and_nothing_adds_nothing() -> None:
    a = Totals(Decimal("1.5"), 2, Decimal(1), Decimal("0.5"))
    b = Totals(Decimal(4), 1, Decimal(4), Decimal(4))
    assert a + b == Totals(Decimal("5.5"), 3, Decimal(4), Decimal("0.5"))
    assert a + Totals() == a == Totals() + a
