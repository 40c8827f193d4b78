"""SPEC §1/§6 (discounts) and §7 (which invoices exist and what lines they hold)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.catalog import Model, Plan, RecurringCharge, Tier, UsageCharge
from domain.invoices import (
    RECURRING,
    USAGE,
    ComposedInvoice,
    Line,
    Terms,
    compose_invoice,
    due_boundaries,
    next_boundary_after,
)
from domain.money import format_money
from domain.periods import Interval, bill_run_instant, cancellation_end, midnight
from domain.subscriptions import (
    Discount,
    lifetimes_overlap,
    parse_discount,
    parse_subscribe,
)
from domain.validation import Invalid

pytestmark = pytest.mark.unit

D = Decimal
NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- parse_discount -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"percent": "10"}, Discount(percent=D(10))),
        ({"percent": "100"}, Discount(percent=D(100))),
        ({"percent": "0.001"}, Discount(percent=D("0.001"))),
        ({"percent": 12.5}, Discount(percent=D("12.5"))),
        ({"percent": 10, "cycles": 3}, Discount(percent=D(10), cycles=3)),
        ({"amount": "5.00"}, Discount(amount=D("5.00"))),
        ({"amount": "0.01", "cycles": 1}, Discount(amount=D("0.01"), cycles=1)),
    ],
)
def test_parse_discount_accepts(data: dict[str, Any], expected: Discount) -> None:
    assert parse_discount(data, "discount") == expected


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"percent": "0"}, "discount.percent"),
        ({"percent": "-0"}, "discount.percent"),
        ({"percent": "-10"}, "discount.percent"),
        ({"percent": "100.0001"}, "discount.percent"),
        ({"percent": "150"}, "discount.percent"),
        ({"percent": "NaN"}, "discount.percent"),
        ({"percent": "Infinity"}, "discount.percent"),
        ({"percent": "ten"}, "discount.percent"),
        ({"amount": "0"}, "discount.amount"),
        ({"amount": "0.00"}, "discount.amount"),
        ({"amount": "-5"}, "discount.amount"),
        ({"amount": True}, "discount.amount"),
        ({"percent": "10", "amount": "5"}, "discount"),
        ({}, "discount"),
        ({"cycles": 2}, "discount"),
        ({"percent": "10", "cycles": -1}, "discount.cycles"),
        ({"percent": "10", "cycles": 1.5}, "discount.cycles"),
        ({"percent": "10", "cycles": "2"}, "discount.cycles"),
        ({"percent": "10", "cycles": True}, "discount.cycles"),
        ({"percent": "10", "forever": True}, "discount.forever"),
    ],
)
def test_parse_discount_refuses(data: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_discount(data, "discount")
    assert err.value.field == field


def test_parse_discount_refuses_a_non_object() -> None:
    with pytest.raises(Invalid) as err:
        parse_discount("10%", "subscribe.discount")
    assert err.value.field == "subscribe.discount"


def test_discount_to_dict_round_trips() -> None:
    for d in (Discount(percent=D("12.5"), cycles=2), Discount(amount=D("5.00"))):
        assert parse_discount(d.to_dict(), "discount") == d


def test_parse_subscribe() -> None:
    req = parse_subscribe({"id": "s", "customer": "c", "plan": "p", "start": "2026-01-31",
                           "discount": {"percent": "10", "cycles": 2}})
    assert req.start == date(2026, 1, 31)
    assert req.discount == Discount(percent=D(10), cycles=2)
    assert parse_subscribe({"id": "s", "customer": "c", "plan": "p",
                            "start": date(2026, 1, 1)}).discount is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"customer": "c", "plan": "p", "start": "2026-01-01"}, "subscribe.id"),
        ({"id": "s", "customer": "c", "plan": "p", "start": "2026-02-30"}, "subscribe.start"),
        ({"id": "s", "customer": "c", "plan": "p", "start": "2026-01-01T00:00:00Z"},
         "subscribe.start"),
        ({"id": "s", "customer": "c", "plan": "p", "start": "2026-01-01",
          "discount": {"percent": "0"}}, "subscribe.discount.percent"),
        ({"id": "s", "customer": "c", "plan": "p", "start": "2026-01-01",
          "discount": {"amount": "-1"}}, "subscribe.discount.amount"),
        ({"id": "s", "customer": "c", "plan": "p", "start": "2026-01-01", "end": "x"},
         "subscribe.end"),
    ],
)
def test_parse_subscribe_refuses(data: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_subscribe(data)
    assert err.value.field == field


# --- Discount.of and applies_to ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("discount", "subtotal", "currency", "expected"),
    [
        (Discount(percent=D(10)), "100.00", "USD", "10.00"),
        (Discount(percent=D(10)), "10.05", "USD", "1.01"),  # 1.005 half-up
        (Discount(percent=D(10)), "10.04", "USD", "1.00"),  # 1.004
        (Discount(percent=D("12.5")), "0.04", "USD", "0.01"),  # 0.005 half-up
        (Discount(percent=D(100)), "242.76", "USD", "242.76"),
        (Discount(percent=D(10)), "1005", "JPY", "101"),  # 100.5 half-up
        (Discount(percent=D("33.333")), "1.000", "KWD", "0.333"),
        (Discount(percent=D(10)), "0.00", "USD", "0.00"),
        (Discount(amount=D("5.00")), "100.00", "USD", "5.00"),
        (Discount(amount=D("5.00")), "3.00", "USD", "3.00"),  # min(amount, subtotal)
        (Discount(amount=D("5.00")), "5.00", "USD", "5.00"),
        (Discount(amount=D("5.00")), "0.00", "USD", "0.00"),
        (Discount(amount=D(500)), "55", "JPY", "55"),
    ],
)
def test_discount_of(discount: Discount, subtotal: str, currency: str, expected: str) -> None:
    assert format_money(discount.of(D(subtotal), currency), currency) == expected


def test_discount_cycles() -> None:
    assert [Discount(percent=D(10), cycles=2).applies_to(k) for k in range(4)] == [
        True, True, False, False,
    ]
    assert all(Discount(percent=D(10)).applies_to(k) for k in range(50))


# --- lifetimes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ((date(2026, 1, 1), date(2026, 2, 1)), (date(2026, 2, 1), None), False),  # adjacent
        ((date(2026, 2, 1), None), (date(2026, 1, 1), date(2026, 2, 1)), False),
        ((date(2026, 1, 1), date(2026, 2, 2)), (date(2026, 2, 1), None), True),
        ((date(2026, 1, 1), None), (date(2030, 1, 1), None), True),
        ((date(2026, 1, 1), date(2026, 3, 1)), (date(2026, 1, 15), date(2026, 1, 20)), True),
        ((date(2026, 1, 1), date(2026, 1, 10)), (date(2026, 1, 15), date(2026, 1, 20)), False),
    ],
)
def test_lifetimes_overlap(a: tuple[date, date | None], b: tuple[date, date | None],
                           overlap: bool) -> None:
    assert lifetimes_overlap(*a, *b) is overlap
    assert lifetimes_overlap(*b, *a) is overlap


# --- compose_invoice ----------------------------------------------------------------------------


BASE = RecurringCharge("base", D("20.00"))
CALLS = UsageCharge("calls", "api", Model.UNIT, unit_price=D("0.01"))
SEATS = UsageCharge("seats", "seats", Model.BANDS, minimum=D("3.00"),
                    tiers=(Tier(D(5), flat_price=D(10)), Tier(None, flat_price=D(50))))
SUPPORT = RecurringCharge("a-support", D("9.995"))

MIXED = Plan("mixed", "USD", Interval.MONTH, (SEATS, BASE, CALLS, SUPPORT))
USAGE_ONLY = Plan("usage", "USD", Interval.MONTH, (CALLS,))
START = date(2026, 1, 31)


def terms(plan: Plan = MIXED, end: date | None = None,
          discount: Discount | None = None, start: date = START) -> Terms:
    return Terms(start, end, plan, discount)


def invoice(t: Terms, k: int, quantities: dict[str, Decimal] | None = None
            ) -> ComposedInvoice | None:
    """``compose_invoice`` with the usage of period k−1 given by charge id (keyed as it
    reads it: by the period's start — its only segment —, charge, no filter group)."""
    usage = {(t.boundary(k - 1), c, None): q for c, q in (quantities or {}).items()}
    return compose_invoice(t, k, usage)


def test_opening_invoice_holds_only_recurring_lines_for_period_0() -> None:
    inv = invoice(terms(), 0, {"calls": D(999)})
    assert inv is not None
    assert (inv.boundary, inv.k, inv.final, inv.currency) == (START, 0, False, "USD")
    assert inv.lines == (
        Line(RECURRING, "a-support", START, date(2026, 2, 28), D(1), D("10.00")),
        Line(RECURRING, "base", START, date(2026, 2, 28), D(1), D("20.00")),
    )
    assert (inv.subtotal, inv.discount, inv.total) == (D("30.00"), D("0.00"), D("30.00"))


def test_no_opening_invoice_for_a_usage_only_plan() -> None:
    assert invoice(terms(USAGE_ONLY), 0) is None
    assert terms(USAGE_ONLY).has_lines(0) is False
    assert terms(USAGE_ONLY).has_lines(1) is True


def test_usage_only_plan_at_k1_bills_period_0_even_at_zero() -> None:
    inv = invoice(terms(USAGE_ONLY), 1)
    assert inv is not None
    assert inv.lines == (Line(USAGE, "calls", START, date(2026, 2, 28), D(0), D("0.00")),)
    assert inv.total == D("0.00")


def test_regular_invoice_usage_in_arrears_recurring_in_advance() -> None:
    inv = invoice(terms(), 2, {"calls": D("1234.5"), "seats": D(6)})
    assert inv is not None
    assert inv.boundary == date(2026, 3, 31)
    by_charge = {line.charge: line for line in inv.lines}
    assert by_charge["base"] == Line(RECURRING, "base", date(2026, 3, 31), date(2026, 4, 30),
                                     D(1), D("20.00"))
    assert by_charge["calls"] == Line(USAGE, "calls", date(2026, 2, 28), date(2026, 3, 31),
                                      D("1234.5"), D("12.35"))  # 12.345 half-up
    assert by_charge["seats"].amount == D("50.00")
    assert inv.subtotal == D("20.00") + D("10.00") + D("12.35") + D("50.00")
    assert inv.total == inv.subtotal


def test_lines_are_sorted_by_type_then_charge() -> None:
    inv = invoice(terms(), 1)
    assert inv is not None
    assert [(line.type, line.charge) for line in inv.lines] == [
        ("recurring", "a-support"), ("recurring", "base"), ("usage", "calls"), ("usage", "seats"),
    ]


def test_usage_line_for_missing_quantity_is_zero_and_minimum_still_charged() -> None:
    inv = invoice(terms(), 1)
    assert inv is not None
    seats = next(line for line in inv.lines if line.charge == "seats")
    assert (seats.quantity, seats.amount) == (D(0), D("3.00"))


def test_recurring_amount_is_rounded_half_up() -> None:
    inv = invoice(terms(), 0)
    assert inv is not None
    assert next(line for line in inv.lines if line.charge == "a-support").amount == D("10.00")


def test_subtotal_is_the_sum_of_rounded_lines() -> None:
    a = UsageCharge("a", "m", Model.UNIT, unit_price=D("0.001"))
    b = UsageCharge("b", "m", Model.UNIT, unit_price=D("0.001"))
    plan = Plan("p", "USD", Interval.MONTH, (a, b))
    inv = invoice(terms(plan), 1, {"a": D(5), "b": D(5)})
    assert inv is not None
    assert [line.amount for line in inv.lines] == [D("0.01"), D("0.01")]
    assert inv.subtotal == D("0.02")  # not round(0.005 + 0.005) = 0.01


def test_final_invoice_is_usage_only() -> None:
    end = date(2026, 3, 31)
    inv = invoice(terms(end=end), 2, {"calls": D(100)})
    assert inv is not None
    assert inv.final is True
    assert {line.type for line in inv.lines} == {USAGE}
    assert all(line.period_end == end for line in inv.lines)
    before = invoice(terms(end=end), 1)
    assert before is not None and before.final is False
    assert {line.type for line in before.lines} == {RECURRING, USAGE}


def test_final_invoice_of_a_usage_only_plan() -> None:
    inv = invoice(terms(USAGE_ONLY, end=date(2026, 2, 28)), 1, {"calls": D(1)})
    assert inv is not None and inv.final
    assert inv.lines[0].amount == D("0.01")


def test_percent_discount_applies_to_the_whole_invoice() -> None:
    inv = invoice(terms(discount=Discount(percent=D(10))), 1, {"calls": D(5)})
    assert inv is not None
    # 10.00 + 20.00 + 0.05 + 3.00 = 33.05; 10 % = 3.305 → 3.31
    assert (inv.subtotal, inv.discount, inv.total) == (D("33.05"), D("3.31"), D("29.74"))


def test_amount_discount_never_exceeds_the_subtotal() -> None:
    inv = invoice(terms(USAGE_ONLY, discount=Discount(amount=D(5))), 1, {"calls": D(100)})
    assert inv is not None
    assert (inv.subtotal, inv.discount, inv.total) == (D("1.00"), D("1.00"), D("0.00"))


def test_discount_cycles_count_boundaries_from_b0() -> None:
    t = terms(discount=Discount(percent=D(50), cycles=2))
    discounts = []
    for k in range(4):
        inv = invoice(t, k)
        assert inv is not None
        discounts.append(inv.discount)
    assert discounts[0] == D("15.00")  # 30.00 / 2
    assert discounts[1] == D("16.50")  # 33.00 / 2
    assert discounts[2:] == [D("0.00"), D("0.00")]


def test_discount_cycles_on_a_usage_only_plan_count_the_unissued_opening_invoice() -> None:
    t = terms(USAGE_ONLY, discount=Discount(amount=D(1), cycles=1))
    inv = invoice(t, 1, {"calls": D(1000)})
    assert inv is not None
    assert inv.discount == D("0.00")  # cycles=1 covers only b_0


def test_jpy_invoice_has_no_minor_digits() -> None:
    plan = Plan("jp", "JPY", Interval.MONTH,
                (RecurringCharge("base", D("1500")),
                 UsageCharge("bytes", "bytes", Model.UNIT, unit_price=D("0.5"))))
    inv = invoice(Terms(date(2026, 9, 1), None, plan, Discount(percent=D(10))), 1,
                  {"bytes": D(111)})
    assert inv is not None
    assert [format_money(line.amount, "JPY") for line in inv.lines] == ["1500", "56"]
    assert (format_money(inv.subtotal, "JPY"), format_money(inv.discount, "JPY"),
            format_money(inv.total, "JPY")) == ("1556", "156", "1400")


# --- due_boundaries and the bill run ---------------------------------------------------------


def test_due_boundaries_catch_up_a_past_start() -> None:
    t = terms(start=date(2026, 1, 1))
    run = bill_run_instant(date(2026, 4, 1), NY)
    assert due_boundaries(t, NY, run) == [
        (0, date(2026, 1, 1)), (1, date(2026, 2, 1)), (2, date(2026, 3, 1)), (3, date(2026, 4, 1)),
    ]


def test_due_boundaries_skip_the_lineless_opening_invoice() -> None:
    t = terms(USAGE_ONLY, start=date(2026, 1, 1))
    assert due_boundaries(t, NY, bill_run_instant(date(2026, 3, 1), NY)) == [
        (1, date(2026, 2, 1)), (2, date(2026, 3, 1)),
    ]
    assert due_boundaries(t, NY, bill_run_instant(date(2026, 1, 1), NY)) == []


def test_due_boundaries_stop_at_the_end() -> None:
    t = terms(start=date(2026, 1, 1), end=date(2026, 3, 1))
    assert due_boundaries(t, NY, utc(2027, 1, 1)) == [
        (0, date(2026, 1, 1)), (1, date(2026, 2, 1)), (2, date(2026, 3, 1)),
    ]


def test_due_boundaries_at_the_boundary_instant() -> None:
    t = terms(start=date(2026, 1, 1))
    b1 = midnight(date(2026, 2, 1), NY)  # 05:00Z
    assert due_boundaries(t, NY, b1)[-1] == (1, date(2026, 2, 1))
    assert due_boundaries(t, NY, b1 - timedelta(microseconds=1))[-1] == (0, date(2026, 1, 1))


def test_due_boundaries_before_the_start() -> None:
    assert due_boundaries(terms(start=date(2026, 5, 1)), NY, utc(2026, 4, 1)) == []


def test_due_boundaries_use_local_midnight_of_the_entity() -> None:
    t = terms(start=date(2026, 1, 1))
    # 2026-02-01T03:00Z is still January 31 in New York but February 1 in Oslo
    assert due_boundaries(t, NY, utc(2026, 2, 1, 3))[-1][0] == 0
    assert due_boundaries(t, "Europe/Oslo", utc(2026, 2, 1, 3))[-1][0] == 1


def test_due_boundaries_with_month_end_clamping() -> None:
    t = terms(start=date(2026, 1, 31))
    assert [b for _, b in due_boundaries(t, "UTC", utc(2026, 4, 30, 8, 15))] == [
        date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30),
    ]


def test_final_invoice_of_a_recurring_only_plan_has_no_line_and_is_not_issued() -> None:
    plan = Plan("flat", "USD", Interval.MONTH, (BASE,))
    assert invoice(terms(plan, end=date(2026, 2, 28)), 1) is None


def test_due_boundaries_skip_the_lineless_final_invoice() -> None:
    plan = Plan("flat", "USD", Interval.MONTH, (BASE,))
    t = terms(plan, start=date(2026, 1, 1), end=date(2026, 3, 1))
    assert due_boundaries(t, NY, utc(2027, 1, 1)) == [(0, date(2026, 1, 1)), (1, date(2026, 2, 1))]


def test_cancel_then_compose_final() -> None:
    start = date(2026, 1, 15)
    end = cancellation_end(start, Interval.MONTH, NY, midnight(date(2026, 2, 15), NY))
    assert end == date(2026, 3, 15)
    t = terms(start=start, end=end)
    due = due_boundaries(t, NY, utc(2026, 6, 1))
    assert [k for k, _ in due] == [0, 1, 2]
    finals = [invoice(t, k) for k, _ in due]
    assert [inv.final for inv in finals if inv is not None] == [False, False, True]


def test_next_boundary_after() -> None:
    t = terms(start=date(2026, 1, 31))
    assert next_boundary_after(t, "UTC", utc(2026, 1, 1)) == (0, date(2026, 1, 31))
    assert next_boundary_after(t, "UTC", utc(2026, 1, 31)) == (1, date(2026, 2, 28))
    assert next_boundary_after(t, "UTC", utc(2026, 2, 27, 23, 59)) == (1, date(2026, 2, 28))
    assert next_boundary_after(t, "UTC", utc(2026, 2, 28)) == (2, date(2026, 3, 31))


def test_zero_cycles_is_a_discount_on_no_invoice() -> None:
    # SPEC §6: it applies to the invoices at b_0 … b_(N−1); with N = 0 that is none
    discount = parse_discount({"percent": "10", "cycles": 0}, "discount")
    assert not discount.applies_to(0) and not discount.applies_to(5)


def test_long_amounts_are_summed_exactly() -> None:
    # 31 significant digits: the 28-digit default context would round the subtotal
    from decimal import Decimal

    from domain.catalog import Plan, RecurringCharge
    from domain.invoices import Terms, compose_invoice
    from domain.periods import Interval

    plan = Plan("big", "USD", Interval.MONTH, (
        RecurringCharge("a", Decimal("1234567890123456789012345678.91")),
        RecurringCharge("b", Decimal("0.01")),
    ))
    terms = Terms(start=__import__("datetime").date(2026, 1, 1), end=None, plan=plan,
                  discount=parse_discount({"amount": "0.03"}, "discount"))
    invoice = compose_invoice(terms, 0, {})
    assert invoice is not None
    assert invoice.subtotal == Decimal("1234567890123456789012345678.92")
    assert invoice.total == Decimal("1234567890123456789012345678.89")
