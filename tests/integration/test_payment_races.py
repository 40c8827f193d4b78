"""Payments under real concurrency on PostgreSQL (threads, one transaction each): two
payments racing for the last amount due never make an invoice paid twice, and a void
racing a payment leaves exactly one of them, recorded. What serializes them is the row
lock ``persistence.payments.lock_invoice`` takes: without it both read the same amount
paid and both are recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from domain.periods import bill_run_instant
from persistence.db import unit_of_work
from persistence.tables import InvoiceEventRow, InvoiceRow, PaymentRow
from services import catalog as catalog_service
from services import invoicing, payments, subscriptions
from services.commands import Outcome

pytestmark = pytest.mark.postgres

N = 24  # invoices, each raced for by two threads
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def invoices() -> list[int]:
    """N sent invoices of USD 100.00, each with 40.00 paid already."""
    start = datetime(2026, 2, 20, tzinfo=UTC)
    catalog_service.apply_document({
        "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E"}],
        "meters": [],
        "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "100.00"}]}],
        "customers": [{"id": f"c{i}", "entity": "e"} for i in range(N)]}, start)
    with unit_of_work() as session:
        for i in range(N):
            subscriptions.do_subscribe(session, start, {"id": f"s{i}", "customer": f"c{i}",
                                                        "plan": "p", "start": "2026-03-01"})
    invoicing.run_bill_run_now("e", date(2026, 3, 1), bill_run_instant(date(2026, 3, 1), "UTC"))
    with unit_of_work() as session:
        ids = list(session.scalars(select(InvoiceRow.id).order_by(InvoiceRow.id)))
    assert len(ids) == N
    for invoice_id in ids:
        assert run(lambda s, i=invoice_id: payments.do_pay(s, NOW, i, payment("40.00"))).status \
            == "applied"
    return [int(i) for i in ids]


def payment(amount: str) -> dict[str, Any]:
    return {"amount": amount, "currency": "USD", "date": "2026-03-09", "method": "card"}


def run(change: Callable[[Any], Outcome]) -> Outcome:
    with unit_of_work() as session:
        return change(session)


def race(pairs: list[tuple[Callable[[Any], Outcome], Callable[[Any], Outcome]]]
         ) -> list[tuple[Outcome, Outcome]]:
    """Each pair's two changes started together, on threads of their own; all pairs at
    once."""
    results: dict[tuple[int, int], Outcome] = {}
    barrier = threading.Barrier(2 * len(pairs))

    def one(i: int, j: int, change: Callable[[Any], Outcome]) -> None:
        barrier.wait()
        results[(i, j)] = run(change)

    threads = [threading.Thread(target=one, args=(i, j, change))
               for i, pair in enumerate(pairs) for j, change in enumerate(pair)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return [(results[(i, 0)], results[(i, 1)]) for i in range(len(pairs))]


def state(invoice_id: int) -> tuple[str | None, list[Decimal], list[str]]:
    with unit_of_work() as session:
        row = session.get(InvoiceRow, invoice_id)
        assert row is not None
        paid = list(session.scalars(select(PaymentRow.amount).where(
            PaymentRow.invoice_id == invoice_id).order_by(PaymentRow.id)))
        events = list(session.scalars(select(InvoiceEventRow.type).where(
            InvoiceEventRow.invoice_id == invoice_id).order_by(InvoiceEventRow.id)))
        return row.payment_status, paid, events


def test_two_payments_for_the_last_amount_due(pg_store: str) -> None:
    ids = invoices()
    outcomes = race([(lambda s, i=i: payments.do_pay(s, NOW, i, payment("60.00")),
                      lambda s, i=i: payments.do_pay(s, NOW, i, payment("60.00")))
                     for i in ids])
    wrong = []
    for invoice_id, pair in zip(ids, outcomes, strict=True):
        statuses = sorted(o.status for o in pair)
        status, paid, events = state(invoice_id)
        if statuses != ["applied", "refused"] or status != "paid" or \
                paid != [Decimal("40.00"), Decimal("60.00")] or \
                events != ["invoice.partially_paid", "invoice.paid"]:
            wrong.append((invoice_id, statuses, status, paid, events))
    assert not wrong, f"{len(wrong)} of {N} invoices wrong: {wrong[:3]}"


def test_a_void_racing_a_payment(pg_store: str) -> None:
    """The 40.00 paid first would refuse a void; so these invoices are fresh ones."""
    ids = invoices()
    with unit_of_work() as session:  # start over: no payment yet
        session.execute(PaymentRow.__table__.delete())  # type: ignore[attr-defined]
        session.execute(InvoiceEventRow.__table__.delete())  # type: ignore[attr-defined]
        for row in session.scalars(select(InvoiceRow)):
            row.payment_status = "open"
    outcomes = race([(lambda s, i=i: payments.do_void(s, NOW, i),
                      lambda s, i=i: payments.do_pay(s, NOW, i, payment("100.00")))
                     for i in ids])
    wrong = []
    for invoice_id, (voided, paid_outcome) in zip(ids, outcomes, strict=True):
        status, paid, events = state(invoice_id)
        if voided.status == "applied":
            ok = paid_outcome.status == "refused" and status == "void" and paid == [] \
                and events == ["invoice.voided"]
        else:
            ok = paid_outcome.status == "applied" and status == "paid" and \
                paid == [Decimal("100.00")] and events == ["invoice.paid"]
        if not ok:
            wrong.append((invoice_id, voided.status, paid_outcome.status, status, paid, events))
    assert not wrong, f"{len(wrong)} of {N} invoices wrong: {wrong[:3]}"
