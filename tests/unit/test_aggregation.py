"""SPEC §4: the seven aggregations over one period's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from domain.aggregation import aggregate, average, unique_value
from domain.catalog import Aggregation, Meter
from domain.usage import UsageEvent, validate_event

pytestmark = pytest.mark.unit

D = Decimal
T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)


def ev(key: str, quantity: str | int, seconds: int = 0, **properties: Any) -> UsageEvent:
    return UsageEvent(key, "c", "m", D(quantity), T0 + timedelta(seconds=seconds), properties)


def meter(aggregation: Aggregation, prop: str | None = None) -> Meter:
    return Meter("m", aggregation, prop)


EVENTS = [ev("a", 10, 0), ev("b", "2.5", 5), ev("c", 40, 2), ev("d", 0, 1)]


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        (Aggregation.SUM, D("52.5")),
        (Aggregation.COUNT, D(4)),
        (Aggregation.MAX, D(40)),
        (Aggregation.MIN, D(0)),
        (Aggregation.LAST, D("2.5")),
        (Aggregation.AVERAGE, D("13.125")),
    ],
)
def test_each_aggregation(aggregation: Aggregation, expected: Decimal) -> None:
    assert aggregate(meter(aggregation), EVENTS) == expected
    assert aggregate(meter(aggregation), reversed(EVENTS)) == expected


@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_no_events_gives_zero(aggregation: Aggregation) -> None:
    prop = "user" if aggregation is Aggregation.UNIQUE_COUNT else None
    result = aggregate(meter(aggregation, prop), [])
    assert result == 0
    assert isinstance(result, Decimal)


def test_count_ignores_quantity() -> None:
    events = [ev("a", 0), ev("b", 1000), ev("c", "0.5")]
    assert aggregate(meter(Aggregation.COUNT), events) == 3


def test_sum_is_exact() -> None:
    events = [ev(f"k{i}", "0.1") for i in range(10)] + [ev("big", "12345678901234567890.000001")]
    assert aggregate(meter(Aggregation.SUM), events) == D("12345678901234567891.000001")


def test_single_event() -> None:
    for aggregation in (Aggregation.SUM, Aggregation.MAX, Aggregation.MIN, Aggregation.LAST,
                        Aggregation.AVERAGE):
        assert aggregate(meter(aggregation), [ev("a", "7.5")]) == D("7.5")
    assert aggregate(meter(Aggregation.COUNT), [ev("a", "7.5")]) == 1


# --- last ---------------------------------------------------------------------------------------


def test_last_is_the_greatest_timestamp_not_the_last_arrived() -> None:
    events = [ev("z", 1, 60), ev("a", 2, 0), ev("m", 3, 30)]
    assert aggregate(meter(Aggregation.LAST), events) == 1


def test_last_tie_goes_to_the_greatest_key_regardless_of_input_order() -> None:
    tied = [ev("key-b", 5, 10), ev("key-c", 7, 10), ev("key-a", 9, 10), ev("key-z", 1, 9)]
    for order in (tied, tied[::-1], [tied[2], tied[0], tied[3], tied[1]]):
        assert aggregate(meter(Aggregation.LAST), order) == 7


def test_last_tie_is_lexicographic_not_numeric() -> None:
    tied = [ev("k10", 10, 0), ev("k9", 9, 0), ev("K99", 99, 0)]
    assert aggregate(meter(Aggregation.LAST), tied) == 9  # "k9" > "k10" > "K99"


def test_last_compares_instants_not_local_times() -> None:
    # 12:30+02:00 is 10:30Z, earlier than 11:00Z although it reads later
    plus2 = timezone(timedelta(hours=2))
    a = UsageEvent("a", "c", "m", D(1), datetime(2026, 3, 10, 12, 30, tzinfo=plus2), {})
    b = UsageEvent("b", "c", "m", D(2), datetime(2026, 3, 10, 11, tzinfo=UTC), {})
    assert aggregate(meter(Aggregation.LAST), [a, b]) == 2
    assert aggregate(meter(Aggregation.LAST), [b, a]) == 2


# --- average ------------------------------------------------------------------------------------


def test_average_has_28_significant_digits() -> None:
    events = [ev("a", 10), ev("b", 20), ev("c", 20)]
    result = aggregate(meter(Aggregation.AVERAGE), events)
    assert result == D("16.66666666666666666666666667")
    assert str(result) == "16.66666666666666666666666667"


def test_average_of_two_thirds() -> None:
    events = [ev("a", 1), ev("b", 1), ev("c", 0)]
    assert str(aggregate(meter(Aggregation.AVERAGE), events)) == "0.6666666666666666666666666667"


def test_average_exact_when_it_terminates() -> None:
    assert aggregate(meter(Aggregation.AVERAGE), [ev("a", 1), ev("b", 2)]) == D("1.5")


def test_average_rounds_half_even_like_the_default_context() -> None:
    # the exact sum 1.0000000000000000000000000001 (29 digits) / 2 needs 30 digits and is a tie
    # at the 28th: half-even keeps ...0000 where half-up would give ...0001
    events = [ev("a", 1), ev("b", "0.0000000000000000000000000001")]
    result = aggregate(meter(Aggregation.AVERAGE), events)
    assert str(result) == "0.5000000000000000000000000000"
    assert average(D("1.0000000000000000000000000003"), 2) == D("0.5000000000000000000000000002")
    assert average(D("1.000000000000000000000000001"), 2) == D("0.5000000000000000000000000005")


def test_average_sum_is_exact_before_dividing() -> None:
    # 29 events of 1E-28 next to 1: a 28-digit running sum would lose them
    events = [ev("big", 1)] + [ev(f"t{i:02d}", "0.0000000000000000000000000001") for i in range(29)]
    expected = D("1.0000000000000000000000000029") / 30  # default context: 28 digits
    assert aggregate(meter(Aggregation.AVERAGE), events) == expected


def test_average_helper_of_zero_events() -> None:
    assert average(D(0), 0) == 0


# --- unique_count ----------------------------------------------------------------------------


def test_unique_count_counts_distinct_values() -> None:
    events = [
        ev("a", 1, user="u1"), ev("b", 1, user="u2"), ev("c", 5, user="u1"),
        ev("d", 1, other="u3"), ev("e", 1),  # without the property: not counted
    ]
    assert aggregate(meter(Aggregation.UNIQUE_COUNT, "user"), events) == 2


def test_unique_count_without_any_event_having_the_property() -> None:
    events = [ev("a", 1, other="x"), ev("b", 1)]
    assert aggregate(meter(Aggregation.UNIQUE_COUNT, "user"), events) == 0


def test_unique_count_null_value_is_not_counted() -> None:
    events = [ev("a", 1, user=None), ev("b", 1, user="u1")]
    assert aggregate(meter(Aggregation.UNIQUE_COUNT, "user"), events) == 1


def test_unique_count_distinguishes_json_types_but_not_key_order() -> None:
    events = [
        ev("a", 1, user=1), ev("b", 1, user="1"), ev("c", 1, user={"x": 1, "y": 2}),
        ev("d", 1, user={"y": 2, "x": 1}), ev("e", 1, user=[1, 2]), ev("f", 1, user=True),
    ]
    assert aggregate(meter(Aggregation.UNIQUE_COUNT, "user"), events) == 5


def test_unique_count_ignores_quantity() -> None:
    events = [ev("a", 0, user="u"), ev("b", 0, user="v")]
    assert aggregate(meter(Aggregation.UNIQUE_COUNT, "user"), events) == 2


def test_unique_count_of_validated_events_treats_1_and_1_0_alike() -> None:
    now = datetime(2026, 3, 11, tzinfo=UTC)
    raws = [
        {"key": "a", "customer": "c", "meter": "m", "quantity": 1,
         "timestamp": "2026-03-10T00:00:00Z", "properties": {"user": 1}},
        {"key": "b", "customer": "c", "meter": "m", "quantity": 1,
         "timestamp": "2026-03-10T00:00:00Z", "properties": {"user": 1.0}},
    ]
    events = [validate_event(r, now, {"c"}, {"m"}) for r in raws]
    assert all(isinstance(e, UsageEvent) for e in events)
    assert aggregate(meter(Aggregation.UNIQUE_COUNT, "user"), events) == 1  # type: ignore[arg-type]


def test_unique_value() -> None:
    assert unique_value(ev("a", 1, user="u"), "user") == '"u"'
    assert unique_value(ev("a", 1), "user") is None
    assert unique_value(ev("a", 1, user=None), "user") is None
