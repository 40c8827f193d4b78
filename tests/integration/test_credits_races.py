"""Prepaid credits under real concurrency (two workers × eight threads, PostgreSQL +
Redis): a customer's invoices sent at once — releases racing each other and a bill run,
voids racing them — never spend the same credit twice (SPEC §12). What serializes them is
the lock ``services.credits.settle`` takes on the customer's usable grants: without it,
two transactions read the same balance and both spend it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from persistence.db import unit_of_work
from persistence.tables import CreditApplicationRow, InvoiceRow
from services import catalog as catalog_service
from services import credits
from tests.conftest import Pool
from workers import actors

pytestmark = pytest.mark.postgres

N = 20  # subscriptions of the one customer


def setup(pool: Pool, grant: str) -> None:
    """Customer ``c`` with N subscriptions whose January invoices are drafts, and a grant
    of ``grant`` USD made on 15 January; its February invoices are sent at once."""
    catalog: dict[str, Any] = {
        "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E"}],
        "meters": [],
        "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "10.00"}]}],
        "customers": [{"id": "c", "entity": "e", "draft_invoices": True}],
    }
    catalog_service.apply_document(catalog, datetime(2000, 1, 1, tzinfo=UTC))
    pool.at("2025-12-20T10:00:00Z")
    for i in range(N):
        actors.subscribe.send(f"s-{i:02d}", "c", "p", "2026-01-01")
    pool.drain()
    pool.at("2026-01-01T08:15:00Z")
    actors.bill_run.send("e", "2026-01-01")
    pool.drain()
    pool.at("2026-01-15T10:00:00Z")
    actors.grant_credits.send("g", "c", "USD", grant)
    actors.set_draft_invoices.send("c", False)
    pool.drain()
    with unit_of_work() as session:
        assert session.scalars(select(InvoiceRow.status)).all() == ["draft"] * N


def release_all_while_the_february_run_sends(pool: Pool, *, void: bool = False) -> None:
    pool.at("2026-02-01T08:15:00Z")
    for i in range(N):
        actors.release_invoice.send(f"s-{i:02d}", "2026-01-01")
        if void and i == N // 2:
            actors.void_credits.send("g")
    actors.bill_run.send("e", "2026-02-01")
    pool.drain()


def check_the_books(amount: Decimal) -> Decimal:
    """Every invoice's credits are its applications, none pays more than its total, and the
    grant's ledger adds up; what the grant paid."""
    with unit_of_work() as session:
        invoices = list(session.scalars(select(InvoiceRow)))
        applications = list(session.scalars(select(CreditApplicationRow)))
        view = credits.grant_views(session, datetime(2030, 1, 1, tzinfo=UTC), grant_id="g")[0]
    assert len(invoices) == 2 * N and {i.status for i in invoices} == {"sent"}
    paid: dict[int, Decimal] = {}
    for a in applications:
        paid[a.invoice_id] = paid.get(a.invoice_id, Decimal(0)) + a.amount
    for invoice in invoices:
        assert invoice.id is not None
        assert invoice.credits == paid.get(invoice.id, Decimal(0))
        assert 0 <= invoice.credits <= invoice.total
    used = sum(paid.values(), Decimal(0))
    state = view.ledger
    assert state.used == used
    assert state.used + state.voided + state.expired + state.remaining == amount
    assert min(state) >= 0
    return used


def test_releases_racing_a_bill_run_never_spend_a_credit_twice(pool: Pool) -> None:
    setup(pool, "150.00")
    release_all_while_the_february_run_sends(pool)
    # 40 invoices of 10.00 wanted 400.00: the grant paid exactly what it had
    assert check_the_books(Decimal("150.00")) == Decimal("150.00")


def test_a_void_racing_releases_leaves_a_ledger_that_adds_up(pool: Pool) -> None:
    setup(pool, "1000.00")
    release_all_while_the_february_run_sends(pool, void=True)
    check_the_books(Decimal("1000.00"))
    pool.at("2026-03-01T08:15:00Z")  # sent after the void: the grant pays nothing more
    actors.bill_run.send("e", "2026-03-01")
    pool.drain()
    with unit_of_work() as session:
        march = session.scalars(select(InvoiceRow.credits).where(
            InvoiceRow.boundary == datetime(2026, 3, 1).date())).all()
    assert march == [Decimal(0)] * N
