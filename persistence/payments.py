"""Payments of sent invoices, their payment status, and the outbox of an invoice's status
changes (``invoice_events``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.payments import Payment
from persistence.sql import decimal_aggregate, insert_ignore, is_postgres, storable
from persistence.tables import InvoiceEventRow, InvoiceRow, PaymentRow

I, P, V = InvoiceRow, PaymentRow, InvoiceEventRow  # noqa: E741
CHUNK = 500


def lock_invoice(session: Session, invoice_id: int) -> InvoiceRow | None:
    """The invoice, locked until the commit: payments, voids and the status change of one
    invoice happen one after the other."""
    stmt = select(I).where(col(I.id) == invoice_id)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def paid(session: Session, invoice_id: int) -> Decimal:
    total = session.scalar(select(decimal_aggregate(session, "sum", col(P.amount))).where(
        col(P.invoice_id) == invoice_id))
    return Decimal(total) if total is not None else Decimal(0)


def add_payment(session: Session, invoice_id: int, amount: Decimal, currency: str,
                paid_on: date, method: str, reference: str | None, now: datetime) -> int:
    row = P(invoice_id=invoice_id, amount=amount, currency=currency, paid_on=paid_on,
            method=method, reference=None if reference is None else storable(reference),
            recorded_at=now)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def set_status(session: Session, invoice_id: int, status: str) -> None:
    session.execute(update(I).where(col(I.id) == invoice_id).values(payment_status=status))


def of_invoices(session: Session, invoice_ids: Collection[int]) -> dict[int, list[Payment]]:
    found: dict[int, list[Payment]] = defaultdict(list)
    wanted = sorted(set(invoice_ids))
    for start in range(0, len(wanted), CHUNK):
        stmt = select(P).where(col(P.invoice_id).in_(wanted[start:start + CHUNK])).order_by(
            col(P.id))
        for r in session.scalars(stmt):
            assert r.id is not None
            found[r.invoice_id].append(Payment(r.id, r.amount, r.currency, r.paid_on,
                                               r.method, r.reference, r.recorded_at))
    return found


# ---------------------------------------------------------------------------- the outbox


def add_event(session: Session, invoice_id: int, kind: str, dedupe: str,
              payload: dict[str, Any], now: datetime) -> int | None:
    """Record a status change to deliver after the commit; None when it was recorded
    before (the same ``dedupe``)."""
    stmt = insert_ignore(session, V, "invoice_id", "dedupe").values(
        invoice_id=invoice_id, type=kind, dedupe=dedupe, payload=payload, created_at=now,
        status="pending", attempts=0, last_error="", updated_at=now).returning(col(V.id))
    found = session.execute(stmt).first()
    return None if found is None else int(found[0])


def claim_event(session: Session, event_id: int) -> InvoiceEventRow | None:
    """The event, locked for this attempt (PostgreSQL: another worker holding it is
    skipped)."""
    stmt = select(V).where(col(V.id) == event_id)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).first()


def earlier_pending(session: Session, event: InvoiceEventRow) -> bool:
    """Whether an earlier event of the same invoice is not delivered yet (order per
    invoice)."""
    return session.scalar(select(col(V.id)).where(
        col(V.invoice_id) == event.invoice_id, col(V.id) < event.id,
        col(V.status) == "pending").limit(1)) is not None


def stale_events(session: Session, older_than: datetime, limit: int = 1000) -> list[int]:
    """Pending events not attempted since ``older_than``: their message may be lost."""
    stmt = (select(col(V.id)).where(col(V.status) == "pending", col(V.updated_at) < older_than)
            .order_by(col(V.id)).limit(limit))
    return list(session.scalars(stmt))


def events(session: Session, invoice_id: int | None = None,
           limit: int = 200) -> list[InvoiceEventRow]:
    stmt = select(V).order_by(col(V.id).desc()).limit(limit)
    if invoice_id is not None:
        stmt = stmt.where(col(V.invoice_id) == invoice_id)
    return list(session.scalars(stmt))


def overdue_candidates(session: Session, entity_id: str, today: date,
                       limit: int = 5000) -> list[int]:
    """Sent invoices of the entity still open (or partly paid) after their due date."""
    stmt = (select(col(I.id)).where(col(I.entity_id) == entity_id,
                                    col(I.payment_status).in_(["open", "partially_paid"]),
                                    col(I.due_date) < today)
            .order_by(col(I.id)).limit(limit))
    return list(session.scalars(stmt))


def with_event(session: Session, invoice_ids: Sequence[int], dedupe: str) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(invoice_ids), CHUNK):
        found.update(session.scalars(select(col(V.invoice_id)).where(
            col(V.invoice_id).in_(invoice_ids[start:start + CHUNK]), col(V.dedupe) == dedupe)))
    return found
