"""Plan changes under real concurrency (two workers × eight threads, PostgreSQL + Redis),
SPEC §14: a change racing a bill run, a cancel or another change never leaves a period
billed on two plans for the same days, nor a fee prorated twice. The check is the books:
each subscription's fees for a period — in advance on one invoice, prorated on the next —
add up to the fees of the plans in force on those days, by its plan history."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import select

from persistence import plan_changes as plan_changes_repo
from persistence import subscriptions as subs_repo
from persistence.db import unit_of_work
from persistence.tables import InvoiceLineRow, InvoiceRow
from services import catalog as catalog_service
from tests.conftest import Pool
from workers import actors

pytestmark = pytest.mark.postgres

N = 24
FEES = {"starter": Decimal("20.00"), "pro": Decimal("100.00"), "team": Decimal("45.00")}


def setup(pool: Pool) -> None:
    catalog: dict[str, Any] = {
        "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E"}],
        "meters": [],
        "plans": [{"id": p, "currency": "EUR", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": str(fee)}]}
            for p, fee in FEES.items()],
        "customers": [{"id": f"c-{i}", "entity": "e"} for i in range(N)],
    }
    catalog_service.apply_document(catalog, datetime(2000, 1, 1, tzinfo=UTC))
    pool.at("2025-12-20T10:00:00Z")
    for i in range(N):
        actors.subscribe.send(f"s-{i:02d}", f"c-{i}", "starter", "2026-01-01")
    pool.drain()
    pool.at("2026-01-01T08:15:00Z")
    actors.bill_run.send("e", "2026-01-01")
    pool.drain()


def fee_for_january_and_february() -> dict[str, tuple[Decimal, Decimal]]:
    """Per subscription: the fees billed for January and for February, in advance and by
    proration."""
    billed: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with unit_of_work() as session:
        rows = session.execute(select(InvoiceRow.subscription_id, InvoiceLineRow.type,
                                      InvoiceLineRow.period_start, InvoiceLineRow.amount)
                               .join(InvoiceRow, InvoiceRow.id == InvoiceLineRow.invoice_id))
        for sub, kind, start, amount in rows:
            if kind in ("recurring", "proration"):
                billed[sub][start.month] += amount
    return {sub: (months[1], months[2]) for sub, months in billed.items()}


def expected_fee(sub: str, month: int) -> Decimal:
    """The month's fee by the plan history: each day on the plan in force that day, each
    proration line rounded (a month is whole on one plan or cut in two)."""
    with unit_of_work() as session:
        row = subs_repo.get(session, sub)
        assert row is not None
        history = plan_changes_repo.histories(session, [row])[row.id]
    start, end = date(2026, month, 1), date(2026, month + 1, 1)
    segments = history.segments(start, end)
    first = history.in_force(start).plan.id
    total = FEES[first]
    days = (end - start).days
    for s in segments:
        if s.plan.id != first:
            n = (s.end - s.start).days
            for plan, sign in ((first, -1), (s.plan.id, 1)):
                part = Fraction(FEES[plan]) * n / days
                total += sign * Decimal(round(part * 100)) / 100  # no half-cent here
    return total


def test_changes_racing_a_bill_run_cancels_and_each_other(pool: Pool) -> None:
    setup(pool)
    pool.at("2026-01-20T10:00:00Z")
    for i in range(N):  # a change, a cancel and another change of the same date, at once
        sub = f"s-{i:02d}"
        actors.change_plan.send(sub, "pro", "2026-01-25")
        if i % 3 == 0:
            actors.cancel.send(sub)
        if i % 3 == 1:
            actors.change_plan.send(sub, "team", "2026-01-25")
    pool.drain()
    pool.at("2026-02-01T08:15:00Z")
    # the bill run, and changes from inside January sent before it: some processed with
    # it, the others after it (they must not touch the days it invoiced)
    sent_before = {"sent_at": datetime(2026, 1, 31, 23, tzinfo=UTC).isoformat()}
    actors.bill_run.send("e", "2026-02-01")
    for i in range(0, N, 2):
        actors.change_plan.send_with_options(args=(f"s-{i:02d}", "team", "2026-01-28"),
                                             **sent_before)
    pool.drain()
    for i in range(1, N, 2):
        actors.change_plan.send_with_options(args=(f"s-{i:02d}", "team", "2026-01-28"),
                                             **sent_before)
    pool.drain()
    pool.at("2026-03-01T08:15:00Z")
    actors.bill_run.send("e", "2026-03-01")
    pool.drain()
    books = fee_for_january_and_february()
    assert len(books) == N
    wrong = {sub: fees for sub, fees in books.items()
             if fees[0] != expected_fee(sub, 1)
             or (fees[1] and fees[1] != expected_fee(sub, 2))}
    assert not wrong, wrong
