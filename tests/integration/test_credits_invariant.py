"""SPEC §12's promises, for random grants, voids, drafts, releases and late usage: money
never appears or disappears. Every grant's ``used + voided + expired + remaining`` is its
amount and nothing is negative; each sent invoice's ``credits + amount_due`` is
``max(total, 0)`` and its credits are what its ledger rows say; a draft has none; a grant
paid only invoices sent while it was usable; and every sent negative total became a grant
of the same amount."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from domain.periods import bill_run_instant
from persistence import db
from persistence.db import unit_of_work
from persistence.tables import CreditApplicationRow, CreditGrantRow, InvoiceRow
from services import catalog as catalog_service
from services import credits, invoicing, subscriptions, usage

CATALOG: dict[str, Any] = {
    "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E"}],
    "meters": [{"id": "disk", "aggregation": "last"}],
    "plans": [
        {"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "10.00"},
            {"id": "disk", "type": "usage", "meter": "disk", "model": "unit",
             "unit_price": "3.00"}]},
        {"id": "q", "currency": "EUR", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "7.00"}]},
    ],
    "customers": [{"id": "c", "entity": "e"}],
}

money = st.decimals(min_value="0.01", max_value="40.00", places=2)
actions = st.lists(st.one_of(
    st.tuples(st.just("days"), st.integers(1, 20)),
    st.tuples(st.just("grant"), money, st.sampled_from(["USD", "EUR"]), st.integers(0, 100),
              st.one_of(st.none(), st.integers(0, 60))),
    st.tuples(st.just("void"), st.integers(0, 9)),
    st.tuples(st.just("drafts"), st.booleans()),
    st.tuples(st.just("release"), st.integers(0, 9)),
    st.tuples(st.just("usage"), st.integers(0, 2), st.integers(0, 20), st.integers(0, 27)),
    st.tuples(st.just("usage"), st.integers(0, 2), st.integers(0, 20), st.integers(0, 27)),
), min_size=6, max_size=22).map(lambda steps: [("days", 33), *steps, ("days", 31)])


def run(steps: list[tuple[Any, ...]], folder: Path) -> datetime:
    db.configure(f"sqlite:///{folder / 'credits.db'}")
    db.create_schema()
    now = datetime(2025, 12, 20, tzinfo=UTC)
    catalog_service.apply_document(CATALOG, now)
    with unit_of_work() as session:
        for sub, plan in (("s1", "p"), ("s2", "q")):
            subscriptions.do_subscribe(session, now, {"id": sub, "customer": "c", "plan": plan,
                                                      "start": "2026-01-01"})
    day, serial, grants = date(2025, 12, 31), 0, []
    for step in steps:
        serial += 1
        if step[0] == "days":
            for _ in range(step[1]):
                day += timedelta(days=1)
                invoicing.run_bill_run_now("e", day, bill_run_instant(day, "UTC"))
            now = bill_run_instant(day, "UTC") + timedelta(hours=1)
            continue
        now += timedelta(minutes=1)
        with unit_of_work() as session:
            if step[0] == "grant":
                _, amount, currency, priority, days = step
                expires = None if days is None else (now + timedelta(days=days, hours=3))
                grants.append(f"g{serial}")
                credits.do_grant(session, now, {
                    "id": f"g{serial}", "customer": "c", "currency": currency,
                    "amount": str(amount), "priority": priority,
                    "expires_at": expires.isoformat() if expires else None})
            elif step[0] == "void" and grants:
                credits.do_void(session, now, grants[step[1] % len(grants)])
            elif step[0] == "drafts":
                subscriptions.do_set_draft_invoices(session, now, "c", step[1], now)
            elif step[0] == "release":
                drafts = list(session.scalars(select(InvoiceRow).where(
                    InvoiceRow.status == "draft").order_by(InvoiceRow.id)))
                if drafts:
                    chosen = drafts[step[1] % len(drafts)]
                    invoicing.do_release(session, now, chosen.subscription_id,
                                         chosen.boundary.isoformat())
        if step[0] == "usage":  # a reading of this month or an earlier one: maybe late
            _, months_back, quantity, day_of_month = step
            month = (day.month - 1 - months_back) % 12 + 1
            year = day.year - (1 if day.month - 1 - months_back < 0 else 0)
            stamp = datetime(year, month, 1 + day_of_month, 12, tzinfo=UTC)
            if stamp <= now:
                usage.ingest_message([{"key": f"u{serial}", "customer": "c", "meter": "disk",
                                       "quantity": quantity, "timestamp": stamp.isoformat()}],
                                     f"m{serial}", now)
    return now


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions)
def test_money_never_appears_or_disappears(tmp_path: Path, steps: list[tuple[Any, ...]]
                                           ) -> None:
    # a folder of its own per example: hypothesis may run the same steps twice
    folder = tmp_path / f"run-{uuid.uuid4().hex}"
    folder.mkdir()
    try:
        now = run(steps, folder)
        with unit_of_work() as session:
            views = credits.grant_views(session, now)
            invoices = list(session.scalars(select(InvoiceRow)))
            applications = list(session.scalars(select(CreditApplicationRow)))
            negative_grants = {g.source_invoice_id: g for g in session.scalars(
                select(CreditGrantRow).where(CreditGrantRow.source_invoice_id.is_not(None)))}
    finally:
        db.engine().dispose()
    grants = {v.grant.id: v.grant for v in views}
    for view in views:
        state = view.ledger
        assert state.used + state.voided + state.expired + state.remaining == view.grant.amount
        assert min(state) >= 0, (view.grant.id, state)
    paid: dict[int, Decimal] = {}
    for a in applications:
        grant = grants[a.grant_id]
        assert grant.granted_at < a.applied_at
        assert grant.expires_at is None or a.applied_at < grant.expires_at
        assert grant.voided_at is None or a.applied_at < grant.voided_at
        paid[a.invoice_id] = paid.get(a.invoice_id, Decimal(0)) + a.amount
    for invoice in invoices:
        assert invoice.id is not None
        assert invoice.credits == paid.get(invoice.id, Decimal(0))
        if invoice.status == "draft":
            assert invoice.credits == 0
            continue
        due = max(invoice.total - invoice.credits, Decimal(0))
        assert invoice.credits + due == max(invoice.total, Decimal(0))
        if invoice.total < 0:
            grant_row = negative_grants[invoice.id]
            assert grant_row.amount == -invoice.total
            assert grant_row.id == f"credit-{invoice.subscription_id}@{invoice.boundary}"
