"""Property-based invariants of SPEC §2, §4, §5, §6, §9 (hypothesis)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from domain.aggregation import aggregate
from domain.catalog import (
    Aggregation,
    Meter,
    Model,
    Plan,
    RecurringCharge,
    Tier,
    UsageCharge,
    parse_plan,
    plan_to_dict,
)
from domain.invoices import Terms, compose_invoice, due_boundaries
from domain.money import format_quantity, minor_units, round_money
from domain.periods import (
    Interval,
    bill_run_instant,
    boundary,
    cancellation_end,
    latest_run_date,
    midnight,
)
from domain.pricing import model_amount, price_usage
from domain.subscriptions import Discount
from domain.usage import UsageEvent

pytestmark = pytest.mark.unit

D = Decimal
# applied per test so that the session's global hypothesis profile is left alone
common = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

CURRENCIES = ["USD", "JPY", "KWD", "EUR", "CLF"]
ZONES = ["UTC", "Europe/Oslo", "America/Santiago", "America/Havana", "America/New_York",
         "Pacific/Kiritimati", "Pacific/Pago_Pago", "Australia/Lord_Howe", "Asia/Kolkata"]


def decimals(max_value: int = 1_000_000, places: int = 4) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=0, max_value=max_value, places=places,
                       allow_nan=False, allow_infinity=False)


prices = decimals(1000, 6)
quantities = decimals(1_000_000, 4)


@st.composite
def tier_lists(draw: st.DrawFn, *, bands: bool = False) -> tuple[Tier, ...]:
    bounds = sorted(draw(st.sets(decimals(100_000, 2).filter(lambda d: d > 0), max_size=5)))
    ups: list[Decimal | None] = [*bounds, None]
    if bands:
        return tuple(Tier(up, flat_price=draw(prices)) for up in ups)
    return tuple(Tier(up, unit_price=draw(prices), flat_price=draw(prices)) for up in ups)


@st.composite
def usage_charges(draw: st.DrawFn, charge_id: str = "u") -> UsageCharge:
    model = draw(st.sampled_from(list(Model)))
    common: dict[str, Any] = {
        "included": draw(st.one_of(st.just(D(0)), quantities)),
        "minimum": draw(st.one_of(st.none(), prices)),
        "cap": draw(st.one_of(st.none(), decimals(100_000, 2))),
    }
    if model is Model.UNIT:
        return UsageCharge(charge_id, "m", model, unit_price=draw(prices), **common)
    if model is Model.PACKAGE:
        size = draw(decimals(10_000, 2).filter(lambda d: d > 0))
        return UsageCharge(charge_id, "m", model, package_size=size,
                           package_price=draw(prices), **common)
    tiers = draw(tier_lists(bands=model is Model.BANDS))
    return UsageCharge(charge_id, "m", model, tiers=tiers, **common)


# --- pricing -----------------------------------------------------------------------------------


@common
@given(tier_lists(), quantities, quantities)
def test_graduated_is_non_negative_and_non_decreasing(
    tiers: tuple[Tier, ...], q1: Decimal, q2: Decimal
) -> None:
    charge = UsageCharge("g", "m", Model.GRADUATED, tiers=tiers)
    lo, hi = sorted((q1, q2))
    a_lo, a_hi = model_amount(charge, lo), model_amount(charge, hi)
    assert a_lo >= 0
    assert a_lo <= a_hi
    assert price_usage(charge, lo, "USD") <= price_usage(charge, hi, "USD")


@common
@given(tier_lists(), quantities)
def test_graduated_equals_the_sum_over_tiers(tiers: tuple[Tier, ...], q: Decimal) -> None:
    charge = UsageCharge("g", "m", Model.GRADUATED, tiers=tiers)
    expected = D(0)
    lower = D(0)
    for tier in tiers:
        upper = q if tier.up_to is None else min(q, tier.up_to)
        if upper > lower:
            expected += (upper - lower) * tier.unit_price + tier.flat_price
        if tier.up_to is not None:
            lower = max(lower, tier.up_to)
    assert model_amount(charge, q) == expected


@common
@given(tier_lists(), quantities)
def test_volume_prices_all_units_at_one_tier(tiers: tuple[Tier, ...], q: Decimal) -> None:
    charge = UsageCharge("v", "m", Model.VOLUME, tiers=tiers)
    amount = model_amount(charge, q)
    assert amount >= 0
    lower = D(0)
    for tier in tiers:
        if tier.up_to is None or q <= tier.up_to:
            assert q == 0 or q > lower
            assert amount == q * tier.unit_price + (tier.flat_price if q > 0 else 0)
            break
        lower = tier.up_to


@common
@given(tier_lists(bands=True), quantities)
def test_bands_amount_is_one_band_price(tiers: tuple[Tier, ...], q: Decimal) -> None:
    charge = UsageCharge("b", "m", Model.BANDS, tiers=tiers)
    amount = model_amount(charge, q)
    assert amount >= 0
    if q == 0:
        assert amount == 0
    else:
        assert amount in {t.flat_price for t in tiers}


@common
@given(prices, quantities)
def test_unit_is_non_negative_and_exact(price: Decimal, q: Decimal) -> None:
    amount = model_amount(UsageCharge("u", "m", Model.UNIT, unit_price=price), q)
    assert amount >= 0
    assert amount == q * price


@common
@given(decimals(10_000, 2).filter(lambda d: d > 0), prices, quantities)
def test_package_is_non_negative_and_covers_the_quantity(
    size: Decimal, price: Decimal, q: Decimal
) -> None:
    charge = UsageCharge("p", "m", Model.PACKAGE, package_size=size, package_price=price)
    amount = model_amount(charge, q)
    assert amount >= 0
    if price > 0:
        packages = amount / price
        assert packages == packages.to_integral_value()
        assert packages * size >= q
        assert (packages - 1) * size < q or packages == 0


@common
@given(usage_charges(), quantities, st.sampled_from(CURRENCIES))
def test_price_usage_is_rounded_non_negative_and_respects_minimum_and_cap(
    charge: UsageCharge, q: Decimal, currency: str
) -> None:
    amount = price_usage(charge, q, currency)
    assert amount >= 0
    assert amount.as_tuple().exponent == -minor_units(currency)
    raw = model_amount(charge, max(D(0), q - charge.included))
    if charge.minimum is not None:
        raw = max(raw, charge.minimum)
    if charge.cap is not None:
        raw = min(raw, charge.cap)
        assert amount <= round_money(charge.cap, currency)
    assert amount == round_money(raw, currency)


@common
@given(usage_charges(), quantities)
def test_included_quantity_is_free(charge: UsageCharge, q: Decimal) -> None:
    assume(q <= charge.included)
    assert price_usage(charge, q, "USD") == price_usage(charge, D(0), "USD")


# --- money -------------------------------------------------------------------------------------


@common
@given(st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False,
                   allow_infinity=False), st.sampled_from(CURRENCIES))
def test_round_money_is_half_up(amount: Decimal, currency: str) -> None:
    digits = minor_units(currency)
    scaled = amount.scaleb(digits)
    whole = int(scaled)
    expected = whole + (1 if scaled - whole >= D("0.5") else 0)
    assert round_money(amount, currency) == D(expected).scaleb(-digits)


@common
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_format_quantity_is_plain_and_exact(q: Decimal) -> None:
    text = format_quantity(q)
    assert "E" not in text.upper()
    assert D(text) == q
    if "." in text:
        assert not text.endswith("0") and not text.endswith(".")
    assert text != "-0"


# --- invoices ----------------------------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    recurring = [RecurringCharge(f"r{i}", draw(prices)) for i in range(draw(st.integers(0, 2)))]
    usage = [draw(usage_charges(f"u{i}")) for i in range(draw(st.integers(0, 3)))]
    assume(recurring or usage)
    charges = draw(st.permutations([*recurring, *usage]))
    return Plan("p", draw(st.sampled_from(CURRENCIES)), draw(st.sampled_from(list(Interval))),
                tuple(charges))


discounts = st.one_of(
    st.none(),
    st.builds(Discount, percent=st.decimals(min_value=D("0.001"), max_value=100, places=3),
              cycles=st.one_of(st.none(), st.integers(1, 5))),
    st.builds(Discount, amount=decimals(1000, 3).filter(lambda d: d > 0),
              cycles=st.one_of(st.none(), st.integers(1, 5))),
)


@common
@given(plans(), discounts, st.integers(0, 6), st.lists(quantities, min_size=3, max_size=3),
       st.booleans())
def test_invoice_total_is_sum_of_rounded_lines_minus_discount(
    plan: Plan, discount: Discount | None, k: int, qs: list[Decimal], final: bool
) -> None:
    start = date(2026, 1, 31)
    end = boundary(start, plan.interval, k) if final and k >= 1 else None
    closing = boundary(start, plan.interval, k - 1) if k >= 1 else start
    usage = {(closing, f"u{i}", None): q for i, q in enumerate(qs)}
    inv = compose_invoice(Terms(start, end, plan, discount), k, usage)
    if (k == 0 and not plan.recurring_charges) or (end is not None and not plan.usage_charges):
        assert inv is None  # an invoice without a line is not issued
        return
    assert inv is not None
    exponent = -minor_units(plan.currency)
    for line in inv.lines:
        assert line.amount == round_money(line.amount, plan.currency)
        assert line.amount >= 0
    assert inv.subtotal == sum((line.amount for line in inv.lines), D(0))
    assert inv.total == inv.subtotal - inv.discount
    assert 0 <= inv.discount <= inv.subtotal
    assert inv.total >= 0
    for value in (inv.subtotal, inv.discount, inv.total):
        assert value.as_tuple().exponent == exponent
    if discount is None or not discount.applies_to(k):
        assert inv.discount == 0
    elif discount.percent is not None:
        assert inv.discount == round_money(inv.subtotal * discount.percent / 100, plan.currency)
    else:
        assert discount.amount is not None
        assert inv.discount == min(round_money(discount.amount, plan.currency), inv.subtotal)
    assert [(ln.type, ln.charge) for ln in inv.lines] == sorted(
        (ln.type, ln.charge) for ln in inv.lines
    )
    n_recurring = sum(1 for ln in inv.lines if ln.type == "recurring")
    n_usage = sum(1 for ln in inv.lines if ln.type == "usage")
    assert n_recurring == (0 if inv.final else len(plan.recurring_charges))
    assert n_usage == (len(plan.usage_charges) if k >= 1 else 0)
    assert inv.final == (end is not None)


@common
@given(plans())
def test_plan_to_dict_round_trips(plan: Plan) -> None:
    assert parse_plan(plan_to_dict(plan), "plan") == plan


# --- aggregation -------------------------------------------------------------------------------


users = st.sampled_from(["a", "b", 1, None])


@st.composite
def event_lists(draw: st.DrawFn, min_size: int = 0) -> list[UsageEvent]:
    n = draw(st.integers(min_size, 12))
    keys = draw(st.lists(st.text("abcXYZ019-", min_size=1, max_size=4), min_size=n,
                         max_size=n, unique=True))
    base = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        UsageEvent(
            key, "c", "m", draw(quantities),
            base + timedelta(seconds=draw(st.integers(0, 5))),  # many timestamp ties
            draw(st.fixed_dictionaries({}, optional={"user": users})),
        )
        for key in keys
    ]


def meter_for(aggregation: Aggregation) -> Meter:
    return Meter("m", aggregation, "user" if aggregation is Aggregation.UNIQUE_COUNT else None)


@common
@given(event_lists(), st.data())
def test_every_aggregation_is_order_independent(events: list[UsageEvent], data: Any) -> None:
    shuffled = data.draw(st.permutations(events))
    for aggregation in Aggregation:
        m = meter_for(aggregation)
        assert aggregate(m, shuffled) == aggregate(m, events), aggregation


@common
@given(event_lists(), st.data())
def test_aggregating_two_batches_combines(events: list[UsageEvent], data: Any) -> None:
    cut = data.draw(st.integers(0, len(events)))
    first, second = events[:cut], events[cut:]

    def agg(aggregation: Aggregation, items: list[UsageEvent]) -> Decimal:
        return aggregate(meter_for(aggregation), items)

    assert agg(Aggregation.SUM, events) == agg(Aggregation.SUM, first) + agg(Aggregation.SUM,
                                                                              second)
    assert agg(Aggregation.COUNT, events) == agg(Aggregation.COUNT, first) + agg(
        Aggregation.COUNT, second)
    if first and second:
        assert agg(Aggregation.MAX, events) == max(agg(Aggregation.MAX, first),
                                                   agg(Aggregation.MAX, second))
        assert agg(Aggregation.MIN, events) == min(agg(Aggregation.MIN, first),
                                                   agg(Aggregation.MIN, second))
        last_first = max(first, key=lambda e: (e.timestamp, e.key))
        last_second = max(second, key=lambda e: (e.timestamp, e.key))
        assert agg(Aggregation.LAST, events) == agg(Aggregation.LAST, [last_first, last_second])


@common
@given(event_lists(min_size=1))
def test_aggregation_reference_values(events: list[UsageEvent]) -> None:
    qs = [e.quantity for e in events]
    assert aggregate(meter_for(Aggregation.SUM), events) == sum(qs, D(0))
    assert aggregate(meter_for(Aggregation.COUNT), events) == len(events)
    assert aggregate(meter_for(Aggregation.MAX), events) == max(qs)
    assert aggregate(meter_for(Aggregation.MIN), events) == min(qs)
    latest = max(e.timestamp for e in events)
    winner = max(e.key for e in events if e.timestamp == latest)
    assert aggregate(meter_for(Aggregation.LAST), events) == next(
        e.quantity for e in events if e.key == winner
    )
    assert aggregate(meter_for(Aggregation.AVERAGE), events) == sum(qs, D(0)) / len(qs)
    values = {repr(e.properties["user"]) for e in events if e.properties.get("user") is not None}
    assert aggregate(meter_for(Aggregation.UNIQUE_COUNT), events) == len(values)


# --- periods -----------------------------------------------------------------------------------


starts = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                        timezones=st.just(UTC))


@common
@given(starts, st.sampled_from([Interval.MONTH, Interval.QUARTER, Interval.YEAR]),
       st.integers(0, 120))
def test_month_boundaries_clamp_from_the_start(start: date, interval: Interval, k: int) -> None:
    months = {Interval.MONTH: 1, Interval.QUARTER: 3, Interval.YEAR: 12}[interval] * k
    year, month = divmod(start.month - 1 + months, 12)
    year += start.year
    month += 1
    last_day = calendar.monthrange(year, month)[1]
    assert boundary(start, interval, k) == date(year, month, min(start.day, last_day))
    assert boundary(start, interval, k) < boundary(start, interval, k + 1)


@common
@given(starts, st.integers(0, 500))
def test_week_boundaries(start: date, k: int) -> None:
    assert boundary(start, Interval.WEEK, k) == start + timedelta(weeks=k)


@common
@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)), st.sampled_from(ZONES))
def test_local_midnight_is_on_that_local_date_or_just_after_a_gap(day: date, tz: str) -> None:
    from zoneinfo import ZoneInfo

    instant = midnight(day, tz)
    local = instant.astimezone(ZoneInfo(tz))
    assert local.date() == day
    assert local.hour <= 1  # 00:00, or 01:00 when midnight was skipped
    assert midnight(day - timedelta(days=1), tz) < instant < midnight(day + timedelta(days=1), tz)
    run = bill_run_instant(day, tz)
    assert run.astimezone(ZoneInfo(tz)).date() == day
    assert run > instant


@common
@given(starts.filter(lambda d: d.year < 2034), st.sampled_from(list(Interval)),
       st.sampled_from(ZONES), instants)
def test_cancellation_end_is_the_first_later_boundary(
    start: date, interval: Interval, tz: str, at: datetime
) -> None:
    end = cancellation_end(start, interval, tz, at)
    k = 1
    while boundary(start, interval, k) != end:
        # every earlier boundary with k ≥ 1 is at or before the cancel instant
        assert midnight(boundary(start, interval, k), tz) <= at
        k += 1
    assert midnight(end, tz) > at


@common
@given(instants, st.sampled_from(ZONES))
def test_latest_run_date_brackets_now(now: datetime, tz: str) -> None:
    day = latest_run_date(now, tz)
    assert bill_run_instant(day, tz) <= now < bill_run_instant(day + timedelta(days=1), tz)


@common
@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
       st.sampled_from(list(Interval)), st.sampled_from(ZONES),
       st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2029, 12, 31),
                    timezones=st.just(UTC)),
       st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2029, 12, 31),
                    timezones=st.just(UTC)))
def test_due_boundaries_grow_with_time_and_are_all_due(
    start: date, interval: Interval, tz: str, r1: datetime, r2: datetime
) -> None:
    plan = Plan("p", "USD", interval, (RecurringCharge("base", D(1)),))
    terms = Terms(start, None, plan)
    early, late = sorted((r1, r2))
    due_early, due_late = due_boundaries(terms, tz, early), due_boundaries(terms, tz, late)
    assert due_late[: len(due_early)] == due_early  # a later run only adds invoices
    assert [k for k, _ in due_late] == list(range(len(due_late)))
    for k, b in due_late:
        assert b == boundary(start, interval, k)
        assert midnight(b, tz) <= late
    nxt = boundary(start, interval, len(due_late))
    assert midnight(nxt, tz) > late
