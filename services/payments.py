"""Payments and an invoice's payment status: record a payment, void an invoice, mark it
uncollectible, find what became overdue — each status change written with an event of the
invoice's outbox (``invoice_events``) in the same transaction, delivered after the commit
(``services.invoice_events``).

Everything that changes an invoice's payment status locks its row first, so two payments
racing for the last amount due, or a void racing a payment, happen one after the other:
the second sees the first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from domain.documents import detailed_document
from domain.invoices import InvoiceStatus
from domain.money import format_money
from domain.payments import (
    PaymentStatus,
    Settled,
    after_payment,
    parse_payment,
    why_not_pay,
    why_not_uncollectible,
    why_not_void,
)
from domain.periods import local_date
from domain.validation import Invalid
from persistence import catalog as catalog_repo
from persistence import invoices as invoices_repo
from persistence import payments as payments_repo
from persistence.db import unit_of_work
from persistence.tables import InvoiceRow
from services.commands import INVALID, Outcome, applied, invalid, not_found, refused, unchanged

PAID, PARTIALLY_PAID = "invoice.paid", "invoice.partially_paid"
VOIDED, UNCOLLECTIBLE, OVERDUE = "invoice.voided", "invoice.uncollectible", "invoice.overdue"


def _settled(session: Session, row: InvoiceRow) -> Settled:
    assert row.id is not None
    return Settled(PaymentStatus(row.payment_status or "open"),
                   max(row.total - row.credits, Decimal(0)), payments_repo.paid(session, row.id),
                   row.currency)


def _locked(session: Session, invoice_id: int) -> InvoiceRow | Outcome:
    row = payments_repo.lock_invoice(session, invoice_id)
    if row is None:
        return not_found("that invoice does not exist", "invoice")
    return row


def _event(session: Session, row: InvoiceRow, kind: str, dedupe: str, now: datetime,
           **extra: Any) -> tuple[int, ...]:
    """The status change, with the invoice as it is now, for the outbox."""
    assert row.id is not None
    session.flush()
    record = invoices_repo.records(session, ids=[row.id])[0]
    payloads = {"invoice": detailed_document(record), **extra}
    found = payments_repo.add_event(session, row.id, kind, dedupe, payloads, now)
    return () if found is None else (found,)


def do_pay(session: Session, now: datetime, invoice_id: int, data: Any) -> Outcome:
    """Record a payment of a sent invoice (never more than is still due, in its currency);
    its status becomes ``paid`` or ``partially_paid``."""
    try:
        payment = parse_payment(data)
    except Invalid as exc:
        return invalid(exc)
    row = _locked(session, invoice_id)
    if isinstance(row, Outcome):
        return row
    settled = _settled(session, row)
    problem = why_not_pay(settled, row.status == InvoiceStatus.DRAFT, payment)
    if problem is not None:
        field, reason = problem
        code = INVALID if field in ("amount", "currency") else "conflict"
        return refused(f"{_reference(row)}: {reason}", code, field)
    payment_id = payments_repo.add_payment(session, invoice_id, payment.amount,
                                           payment.currency, payment.paid_on, payment.method,
                                           payment.reference, now)
    status = after_payment(settled, payment.amount)
    payments_repo.set_status(session, invoice_id, status.value)
    shown = {"id": payment_id, "amount": format_money(payment.amount, payment.currency),
             "date": payment.paid_on.isoformat(), "method": payment.method,
             "reference": payment.reference}
    if status is PaymentStatus.PAID:
        events = _event(session, row, PAID, "paid", now, payment=shown)
    else:
        events = _event(session, row, PARTIALLY_PAID, f"payment:{payment_id}", now,
                        payment=shown)
    return applied(f"{row.number}: {format_money(payment.amount, payment.currency)} "
                   f"{payment.currency} recorded, {status.value.replace('_', ' ')}",
                   events=events)


def do_void(session: Session, now: datetime, invoice_id: int) -> Outcome:
    """Void a sent invoice nobody paid: its number stays used and it is shown voided; its
    usage stays billed (late usage does not bill it again)."""
    return _change_status(session, now, invoice_id, PaymentStatus.VOID, why_not_void,
                          VOIDED, "voided")


def do_mark_uncollectible(session: Session, now: datetime, invoice_id: int) -> Outcome:
    """Give up on collecting a sent invoice (a later payment still counts)."""
    return _change_status(session, now, invoice_id, PaymentStatus.UNCOLLECTIBLE,
                          why_not_uncollectible, UNCOLLECTIBLE, "uncollectible")


def _change_status(session: Session, now: datetime, invoice_id: int, to: PaymentStatus,
                   why_not: Callable[[Settled, bool], str | None], kind: str,
                   dedupe: str) -> Outcome:
    """Move a sent invoice to ``to`` (with its event), unless ``why_not`` refuses; already
    there changes nothing."""
    row = _locked(session, invoice_id)
    if isinstance(row, Outcome):
        return row
    settled = _settled(session, row)
    reason = why_not(settled, row.status == InvoiceStatus.DRAFT)
    if reason is not None:
        return refused(f"{_reference(row)}: {reason}")
    word = to.value.replace("_", " ")
    if settled.status is to:
        return unchanged(f"{row.number}: {word} already")
    payments_repo.set_status(session, invoice_id, to.value)
    return applied(f"{row.number}: {word}", events=_event(session, row, kind, dedupe, now))


def flag_overdue(session: Session, entity_id: str, now: datetime) -> list[int]:
    """An ``invoice.overdue`` event, once, for each invoice of the entity that is open (or
    partly paid) past its due date, in the entity's zone: the ids of the events."""
    entity = catalog_repo.entity(session, entity_id)
    if entity is None:
        return []
    candidates = payments_repo.overdue_candidates(session, entity_id,
                                                  local_date(now, entity.timezone))
    told = payments_repo.with_event(session, candidates, "overdue")
    events: list[int] = []
    for invoice_id in [i for i in candidates if i not in told]:
        row = payments_repo.lock_invoice(session, invoice_id)
        if row is not None and row.payment_status in ("open", "partially_paid"):
            events.extend(_event(session, row, OVERDUE, "overdue", now))
    return events


def overdue_now(entity_id: str, now: datetime) -> list[int]:
    """``flag_overdue`` in a transaction of its own (what an entity's daily bill run does
    first)."""
    with unit_of_work() as session:
        return flag_overdue(session, entity_id, now)



def _reference(row: InvoiceRow) -> str:
    """The invoice's public reference (its number, or SUBSCRIPTION@BOUNDARY): never its id."""
    return row.number or f"{row.subscription_id}@{row.boundary.isoformat()}"
