"""SPEC §2 (periods and boundaries) and the bill-run instant of §7."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from domain.periods import (
    Interval,
    add_months,
    bill_run_instant,
    boundaries,
    boundary,
    boundary_index,
    cancellation_end,
    latest_run_date,
    local_instant,
    midnight,
    zone,
)
from domain.validation import Invalid

pytestmark = pytest.mark.unit

D = date


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def first(start: date, interval: Interval, n: int) -> list[date]:
    return [boundary(start, interval, k) for k in range(n)]


# --- boundaries: computed from the start date, clamped to month ends -------------------


def test_month_end_start_clamps_and_recovers_from_the_start_date() -> None:
    assert first(D(2026, 1, 31), Interval.MONTH, 4) == [
        D(2026, 1, 31), D(2026, 2, 28), D(2026, 3, 31), D(2026, 4, 30),
    ]


def test_month_end_start_over_a_whole_year() -> None:
    got = first(D(2026, 1, 31), Interval.MONTH, 13)
    assert got == [
        D(2026, 1, 31), D(2026, 2, 28), D(2026, 3, 31), D(2026, 4, 30), D(2026, 5, 31),
        D(2026, 6, 30), D(2026, 7, 31), D(2026, 8, 31), D(2026, 9, 30), D(2026, 10, 31),
        D(2026, 11, 30), D(2026, 12, 31), D(2027, 1, 31),
    ]


def test_day_30_start_in_a_leap_year_february() -> None:
    assert first(D(2028, 1, 30), Interval.MONTH, 3) == [D(2028, 1, 30), D(2028, 2, 29),
                                                        D(2028, 3, 30)]


def test_never_computed_from_the_previous_boundary() -> None:
    # adding a month to 02-28 would give 03-28; from the start it is 03-31
    b1 = boundary(D(2026, 1, 31), Interval.MONTH, 1)
    assert add_months(b1, 1) == D(2026, 3, 28)
    assert boundary(D(2026, 1, 31), Interval.MONTH, 2) == D(2026, 3, 31)


def test_week_is_seven_days() -> None:
    assert first(D(2026, 2, 25), Interval.WEEK, 4) == [
        D(2026, 2, 25), D(2026, 3, 4), D(2026, 3, 11), D(2026, 3, 18),
    ]


def test_week_crosses_year_end() -> None:
    assert boundary(D(2026, 12, 29), Interval.WEEK, 1) == D(2027, 1, 5)


def test_quarter_is_three_months_with_clamping() -> None:
    assert first(D(2025, 11, 30), Interval.QUARTER, 5) == [
        D(2025, 11, 30), D(2026, 2, 28), D(2026, 5, 30), D(2026, 8, 30), D(2026, 11, 30),
    ]


def test_quarter_from_month_end() -> None:
    assert first(D(2026, 8, 31), Interval.QUARTER, 3) == [D(2026, 8, 31), D(2026, 11, 30),
                                                          D(2027, 2, 28)]


def test_year_from_feb_29() -> None:
    assert first(D(2024, 2, 29), Interval.YEAR, 5) == [
        D(2024, 2, 29), D(2025, 2, 28), D(2026, 2, 28), D(2027, 2, 28), D(2028, 2, 29),
    ]


def test_year_plain() -> None:
    assert first(D(2026, 3, 15), Interval.YEAR, 3) == [D(2026, 3, 15), D(2027, 3, 15),
                                                       D(2028, 3, 15)]


def test_k0_is_the_start() -> None:
    for interval in Interval:
        assert boundary(D(2026, 5, 31), interval, 0) == D(2026, 5, 31)


def test_boundaries_iterator_matches_boundary() -> None:
    it = boundaries(D(2026, 1, 31), Interval.MONTH)
    pairs = [next(it) for _ in range(6)]
    assert pairs == [(k, boundary(D(2026, 1, 31), Interval.MONTH, k)) for k in range(6)]


def test_boundary_index() -> None:
    start = D(2026, 1, 31)
    assert boundary_index(start, Interval.MONTH, D(2026, 1, 31)) == 0
    assert boundary_index(start, Interval.MONTH, D(2026, 2, 28)) == 1
    assert boundary_index(start, Interval.MONTH, D(2026, 3, 31)) == 2
    assert boundary_index(start, Interval.MONTH, D(2026, 3, 28)) is None
    assert boundary_index(start, Interval.MONTH, D(2026, 1, 30)) is None  # before the start


# --- local dates as instants: DST gaps and folds --------------------------------------


def test_midnight_plain() -> None:
    assert midnight(D(2026, 3, 1), "America/New_York") == utc(2026, 3, 1, 5)
    assert midnight(D(2026, 7, 1), "America/New_York") == utc(2026, 7, 1, 4)
    assert midnight(D(2026, 3, 1), "UTC") == utc(2026, 3, 1)


def test_dst_gap_moves_forward_santiago() -> None:
    # 2026-09-06 00:00 does not exist in Santiago: it is 01:00−03:00 = 04:00Z
    assert midnight(D(2026, 9, 6), "America/Santiago") == utc(2026, 9, 6, 4)
    # the days around it are ordinary
    assert midnight(D(2026, 9, 5), "America/Santiago") == utc(2026, 9, 5, 4)
    assert midnight(D(2026, 9, 7), "America/Santiago") == utc(2026, 9, 7, 3)


def test_dst_fold_takes_the_earlier_instant_havana() -> None:
    # 2026-11-01 00:00 occurs twice in Havana (−04 then −05): the earlier one, 04:00Z
    assert midnight(D(2026, 11, 1), "America/Havana") == utc(2026, 11, 1, 4)
    assert midnight(D(2026, 11, 2), "America/Havana") == utc(2026, 11, 2, 5)


def test_local_instant_fold_and_gap_for_other_times() -> None:
    # New York 2026-11-01 01:30 occurs twice: the earlier is EDT (−04)
    assert local_instant(D(2026, 11, 1), datetime.min.time().replace(hour=1, minute=30),
                         "America/New_York") == utc(2026, 11, 1, 5, 30)
    # New York 2026-03-08 02:30 is skipped: moved forward by the gap → 03:30 EDT = 07:30Z
    assert local_instant(D(2026, 3, 8), datetime.min.time().replace(hour=2, minute=30),
                         "America/New_York") == utc(2026, 3, 8, 7, 30)


def test_periods_across_dst_are_23_or_25_hours_shorter_or_longer() -> None:
    # weekly Oslo period containing the spring change is 7 × 24 − 1 hours long
    spring = midnight(D(2026, 3, 30), "Europe/Oslo") - midnight(D(2026, 3, 23), "Europe/Oslo")
    assert spring == timedelta(days=7, hours=-1)
    autumn = midnight(D(2026, 10, 26), "Europe/Oslo") - midnight(D(2026, 10, 19), "Europe/Oslo")
    assert autumn == timedelta(days=7, hours=1)
    day = midnight(D(2026, 9, 7), "America/Santiago") - midnight(D(2026, 9, 6), "America/Santiago")
    assert day == timedelta(hours=23)


def test_midnight_is_strictly_increasing_over_a_year_in_dst_zones() -> None:
    for tz in ["America/Santiago", "America/Havana", "Europe/Oslo", "Australia/Lord_Howe",
               "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/New_York"]:
        day = D(2026, 1, 1)
        previous = midnight(day, tz)
        for _ in range(400):
            day += timedelta(days=1)
            current = midnight(day, tz)
            assert timedelta(hours=22) <= current - previous <= timedelta(hours=26), (tz, day)
            previous = current


# --- the 08:15 bill run -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "tz", "expected"),
    [
        (D(2026, 1, 15), "Europe/Oslo", utc(2026, 1, 15, 7, 15)),  # winter CET
        (D(2026, 7, 15), "Europe/Oslo", utc(2026, 7, 15, 6, 15)),  # summer CEST
        (D(2026, 3, 29), "Europe/Oslo", utc(2026, 3, 29, 6, 15)),  # the day DST starts
        (D(2026, 10, 25), "Europe/Oslo", utc(2026, 10, 25, 7, 15)),  # the day DST ends
        (D(2026, 1, 15), "Pacific/Kiritimati", utc(2026, 1, 14, 18, 15)),  # UTC+14
        (D(2026, 1, 15), "Pacific/Pago_Pago", utc(2026, 1, 15, 19, 15)),  # UTC−11
        (D(2026, 1, 15), "UTC", utc(2026, 1, 15, 8, 15)),
        (D(2026, 4, 1), "America/New_York", utc(2026, 4, 1, 12, 15)),
        (D(2026, 9, 6), "America/Santiago", utc(2026, 9, 6, 11, 15)),  # after the gap: −03
        (D(2026, 11, 1), "America/Havana", utc(2026, 11, 1, 13, 15)),  # after the fold: −05
    ],
)
def test_bill_run_instant(day: date, tz: str, expected: datetime) -> None:
    assert bill_run_instant(day, tz) == expected


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        # Oslo winter: run at 07:15Z
        (utc(2026, 1, 15, 7, 14, 59), "Europe/Oslo", D(2026, 1, 14)),
        (utc(2026, 1, 15, 7, 15), "Europe/Oslo", D(2026, 1, 15)),
        (utc(2026, 1, 15, 7, 15, 0, 1), "Europe/Oslo", D(2026, 1, 15)),
        (utc(2026, 1, 15, 23, 30), "Europe/Oslo", D(2026, 1, 15)),  # 00:30 local on the 16th
        # Oslo summer: run at 06:15Z
        (utc(2026, 7, 15, 6, 14, 59, 999999), "Europe/Oslo", D(2026, 7, 14)),
        (utc(2026, 7, 15, 6, 15), "Europe/Oslo", D(2026, 7, 15)),
        (utc(2026, 7, 15, 7, 0), "Europe/Oslo", D(2026, 7, 15)),
        # Kiritimati (UTC+14): the local 2026-01-15 run is at 2026-01-14T18:15Z
        (utc(2026, 1, 14, 18, 14), "Pacific/Kiritimati", D(2026, 1, 14)),
        (utc(2026, 1, 14, 18, 15), "Pacific/Kiritimati", D(2026, 1, 15)),
        (utc(2026, 1, 13, 18, 14), "Pacific/Kiritimati", D(2026, 1, 13)),  # local 08:14 on 14th
        (utc(2026, 1, 14, 9, 0), "Pacific/Kiritimati", D(2026, 1, 14)),  # local 23:00 on 14th
        # Pago Pago (UTC−11): the local 2026-01-15 run is at 2026-01-15T19:15Z
        (utc(2026, 1, 15, 19, 14), "Pacific/Pago_Pago", D(2026, 1, 14)),
        (utc(2026, 1, 15, 19, 15), "Pacific/Pago_Pago", D(2026, 1, 15)),
        (utc(2026, 1, 16, 10, 0), "Pacific/Pago_Pago", D(2026, 1, 15)),  # local 23:00 on 15th
    ],
)
def test_latest_run_date(now: datetime, tz: str, expected: date) -> None:
    assert latest_run_date(now, tz) == expected


def test_latest_run_date_accepts_non_utc_now() -> None:
    from zoneinfo import ZoneInfo

    now = datetime(2026, 1, 15, 8, 15, tzinfo=ZoneInfo("Europe/Oslo"))
    assert latest_run_date(now, "Europe/Oslo") == D(2026, 1, 15)
    assert latest_run_date(now - timedelta(microseconds=1), "Europe/Oslo") == D(2026, 1, 14)


def test_latest_run_is_never_in_the_future() -> None:
    for tz in ["Europe/Oslo", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/Santiago"]:
        now = utc(2026, 1, 1)
        while now < utc(2026, 1, 4):
            run_day = latest_run_date(now, tz)
            assert bill_run_instant(run_day, tz) <= now
            assert bill_run_instant(run_day + timedelta(days=1), tz) > now
            now += timedelta(minutes=37)


# --- cancellation end ------------------------------------------------------------------


NY = "America/New_York"


def test_cancel_mid_period_ends_at_the_next_boundary() -> None:
    start = D(2026, 1, 15)
    assert cancellation_end(start, Interval.MONTH, NY, utc(2026, 2, 1)) == D(2026, 2, 15)


def test_cancel_exactly_at_a_boundary_instant_ends_at_the_following_boundary() -> None:
    start = D(2026, 1, 15)
    at = midnight(D(2026, 2, 15), NY)  # 2026-02-15T05:00Z
    assert cancellation_end(start, Interval.MONTH, NY, at) == D(2026, 3, 15)
    just_before = at - timedelta(microseconds=1)
    assert cancellation_end(start, Interval.MONTH, NY, just_before) == D(2026, 2, 15)


def test_cancel_at_utc_midnight_before_the_local_boundary() -> None:
    # 2026-02-15T00:00Z is still 2026-02-14 19:00 in New York: the boundary is still ahead
    assert cancellation_end(D(2026, 1, 15), Interval.MONTH, NY, utc(2026, 2, 15)) == D(2026, 2, 15)


def test_cancel_before_start_ends_at_b1() -> None:
    start = D(2026, 3, 1)
    assert cancellation_end(start, Interval.MONTH, NY, utc(2026, 1, 1)) == D(2026, 4, 1)


def test_cancel_exactly_at_start_ends_at_b1() -> None:
    start = D(2026, 3, 1)
    assert cancellation_end(start, Interval.MONTH, NY, midnight(start, NY)) == D(2026, 4, 1)


def test_cancel_at_a_dst_gap_boundary() -> None:
    tz = "America/Santiago"
    start = D(2026, 8, 6)
    b1 = D(2026, 9, 6)
    assert cancellation_end(start, Interval.MONTH, tz, utc(2026, 9, 6, 3, 59)) == b1
    assert cancellation_end(start, Interval.MONTH, tz, utc(2026, 9, 6, 4)) == D(2026, 10, 6)


def test_cancel_at_a_fold_boundary() -> None:
    tz = "America/Havana"
    start = D(2026, 10, 1)
    # the boundary is the earlier 00:00 (04:00Z); 04:30Z is after it although it reads 23:30 local
    assert cancellation_end(start, Interval.MONTH, tz, utc(2026, 11, 1, 3, 59)) == D(2026, 11, 1)
    assert cancellation_end(start, Interval.MONTH, tz, utc(2026, 11, 1, 4)) == D(2026, 12, 1)
    assert cancellation_end(start, Interval.MONTH, tz, utc(2026, 11, 1, 4, 30)) == D(2026, 12, 1)


def test_cancel_with_weekly_and_yearly_plans() -> None:
    weekly = cancellation_end(D(2026, 1, 5), Interval.WEEK, "UTC", utc(2026, 1, 20))
    assert weekly == D(2026, 1, 26)
    yearly = cancellation_end(D(2024, 2, 29), Interval.YEAR, "UTC", utc(2025, 2, 28))
    assert yearly == D(2026, 2, 28)


# --- time zones -------------------------------------------------------------------------


def test_zone_known() -> None:
    assert zone("Europe/Oslo").key == "Europe/Oslo"


@pytest.mark.parametrize("name", ["", "Mars/Base", "europe/oslo", "Europe/Oslo ", "../etc/passwd"])
def test_zone_unknown_is_invalid(name: str) -> None:
    with pytest.raises(Invalid) as err:
        zone(name)
    assert err.value.field == "timezone"


def test_zone_directory_name_is_invalid() -> None:
    with pytest.raises(Invalid):
        zone("America")
