"""Prepaid credits (SPEC §12) as pure rules: which grants pay, in what order, how much;
a grant's ledger; what a grant request may be; how a bill run is cut into chunks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.credits import (
    Balance,
    Grant,
    allocate,
    balances_by_currency,
    ledger,
    negative_total_grant_id,
    parse_grant,
)
from domain.validation import Invalid
from services.invoicing import BillRun

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def grant(id: str, amount: str = "10.00", *, priority: int = 50, expires: int | None = None,
          granted: int = 0, voided: int | None = None, currency: str = "USD") -> Grant:
    """A grant made ``granted`` hours after T0, expiring / voided so many hours after."""
    hours = timedelta(hours=1)
    return Grant(id, "c", currency, Decimal(amount), T0 + granted * hours,
                 None if expires is None else T0 + expires * hours, priority,
                 None if voided is None else T0 + voided * hours)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def test_order_is_priority_then_expiry_then_grant_time_then_id() -> None:
    grants = [
        grant("z-no-expiry", priority=10),
        grant("b-late-expiry", priority=10, expires=100),
        grant("a-early-expiry", priority=10, expires=50),
        grant("c-same-expiry-later-grant", priority=10, expires=50, granted=1),
        grant("y-low-priority", priority=0),
        grant("d-same-as-a-but-id", priority=10, expires=50),
        grant("x-default", priority=50, expires=5),
    ]
    paid = allocate(Decimal("1000"), [Balance(g, g.amount) for g in grants], at(2))
    assert [g for g, _ in paid] == ["y-low-priority", "a-early-expiry", "d-same-as-a-but-id",
                                    "c-same-expiry-later-grant", "b-late-expiry",
                                    "z-no-expiry", "x-default"]


def test_each_grant_pays_what_it_has_until_nothing_is_due() -> None:
    grants = [Balance(grant("a", priority=1), Decimal("8.00")),
              Balance(grant("b", priority=2), Decimal("30.00")),
              Balance(grant("c", priority=3), Decimal("25.00"))]
    assert allocate(Decimal("37.80"), grants, at(1)) == [("a", Decimal("8.00")),
                                                         ("b", Decimal("29.80"))]


def test_nothing_is_paid_of_a_total_that_is_not_positive() -> None:
    balances = [Balance(grant("a"), Decimal("10.00"))]
    assert allocate(Decimal(0), balances, at(1)) == []
    assert allocate(Decimal("-5.00"), balances, at(1)) == []


@pytest.mark.parametrize(("sent", "usable"), [
    (0, False),  # granted at the very instant: from the next sending on
    (1, True),
    (9, True),
    (10, False),  # expires at that instant: pays nothing then
])
def test_a_grant_is_usable_strictly_after_it_is_granted_and_before_it_expires(
        sent: int, usable: bool) -> None:
    g = grant("g", expires=10)
    assert g.usable_at(at(sent)) is usable
    assert bool(allocate(Decimal("1.00"), [Balance(g, g.amount)], at(sent))) is usable


def test_a_voided_grant_pays_nothing_sent_at_or_after_its_void() -> None:
    g = grant("g", voided=5)
    assert g.usable_at(at(4))
    assert not g.usable_at(at(5))
    assert not g.usable_at(at(6))


def test_a_used_up_grant_is_skipped() -> None:
    paid = allocate(Decimal("5.00"), [Balance(grant("a", priority=1), Decimal(0)),
                                      Balance(grant("b", priority=2), Decimal("9.00"))], at(1))
    assert paid == [("b", Decimal("5.00"))]


def test_the_ledger_of_a_grant() -> None:
    g = grant("g", "30.00", expires=100)
    paid = [(at(10), Decimal("29.80"))]
    assert ledger(g, paid, at(50)) == (Decimal("29.80"), 0, 0, Decimal("0.20"))
    assert ledger(g, paid, at(100)) == (Decimal("29.80"), 0, Decimal("0.20"), 0)
    assert ledger(g, paid, at(5)) == (0, 0, 0, Decimal("30.00"))  # before it paid
    voided = grant("v", "100.00", voided=20, expires=100)
    spent = [(at(10), Decimal("30.00"))]
    assert ledger(voided, spent, at(19)).remaining == Decimal("70.00")
    assert ledger(voided, spent, at(200)) == (Decimal("30.00"), Decimal("70.00"), 0, 0)


def test_balances_by_currency_count_only_usable_grants() -> None:
    grants = [grant("a", "10.00"), grant("b", "5.00", expires=3), grant("y", "3000",
                                                                          currency="JPY"),
              grant("v", "7.00", voided=1), grant("later", "1.00", granted=9)]
    states = [(g, ledger(g, [], at(4))) for g in grants]
    assert balances_by_currency(states, at(4)) == {"JPY": Decimal("3000"),
                                                   "USD": Decimal("10.00")}


def test_the_grant_a_negative_total_becomes() -> None:
    assert negative_total_grant_id("sub-7", date(2026, 3, 1)) == "credit-sub-7@2026-03-01"


@pytest.mark.parametrize(("request_", "field"), [
    ({"id": "credit-x", "customer": "c", "currency": "USD", "amount": "1"}, "id"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "0"}, "amount"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "-1"}, "amount"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "10.005"}, "amount"),
    ({"id": "g", "customer": "c", "currency": "JPY", "amount": "100.5"}, "amount"),
    ({"id": "g", "customer": "c", "currency": "XXX", "amount": "1"}, "currency"),
    ({"id": "g", "customer": "c", "currency": "usd1", "amount": "1"}, "currency"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "1", "priority": 101},
     "priority"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "1", "priority": "high"},
     "priority"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "1", "priority": True},
     "priority"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "1",
      "expires_at": "2026-01-01T00:00:00"}, "expires_at"),
    ({"id": "g", "customer": "c", "currency": "USD", "amount": "1", "colour": "red"},
     "colour"),
    ({"customer": "c", "currency": "USD", "amount": "1"}, "id"),
])
def test_a_bad_grant_request_names_its_field(request_: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as refused:
        parse_grant(request_)
    assert refused.value.field == field


def test_a_grant_request_with_trailing_zeros_and_defaults() -> None:
    parsed = parse_grant({"id": "g", "customer": "c", "currency": "usd", "amount": "10.000"})
    assert (parsed.currency, parsed.amount, parsed.priority, parsed.expires_at) == (
        "USD", Decimal("10.000"), 50, None)
    assert parse_grant({"id": "g", "customer": "c", "currency": "USD", "amount": 5,
                        "priority": "0"}).priority == 0


amounts = st.decimals(min_value=0, max_value=1000, places=2)


@given(st.lists(st.tuples(amounts, amounts, st.integers(0, 100), st.booleans()), max_size=8),
       amounts)
def test_allocation_never_pays_more_than_due_or_than_a_grant_has(
        spec: list[tuple[Decimal, Decimal, int, bool]], due: Decimal) -> None:
    balances = [Balance(Grant(f"g{i}", "c", "USD", max(a, r), T0, None, p,
                              T0 if voided else None), min(a, r))
                for i, (a, r, p, voided) in enumerate(spec)]
    paid = allocate(due, balances, at(1))
    remaining = {b.grant.id: b.remaining for b in balances}
    assert sum((a for _, a in paid), Decimal(0)) <= due
    assert all(0 < a <= remaining[g] for g, a in paid)
    usable = sum((b.remaining for b in balances if b.grant.voided_at is None), Decimal(0))
    assert sum((a for _, a in paid), Decimal(0)) == min(due, usable)
    assert len({g for g, _ in paid}) == len(paid)


def test_a_bill_run_never_splits_a_customers_invoices_across_chunks() -> None:
    day = date(2026, 3, 1)
    due = [(f"s{i:02d}", day) for i in range(10)]
    customers = {f"s{i:02d}": "big" if i in (1, 5, 8) else f"c{i}" for i in range(10)}
    run = BillRun("e", T0, due, (), customers)
    chunks = run.chunks(size=3)
    assert sorted(p for c in chunks for p in c) == due
    assert [[s for s, _ in c] for c in chunks] == [
        ["s00"], ["s01", "s05", "s08"], ["s02", "s03", "s04"], ["s06", "s07", "s09"]]
    assert all(c == sorted(c) for c in chunks)
    one_big = BillRun("e", T0, due, (), dict.fromkeys(customers, "only"))
    assert one_big.chunks(size=3) == [due]
