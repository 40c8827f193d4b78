"""Invoices, their lines, and gapless per-entity numbering."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.documents import InvoiceRecord
from domain.invoices import (
    ADJUSTMENT,
    USAGE,
    Billed,
    ComposedInvoice,
    InvoiceStatus,
    Line,
    line_order,
)
from domain.money import EXACT
from domain.taxes import TaxAmount
from persistence import credits as credits_repo
from persistence import payments as payments_repo
from persistence.sql import insert_ignore, is_postgres, rowcount, storable
from persistence.tables import (
    InvoiceCounterRow,
    InvoiceFailureRow,
    InvoiceLineRow,
    InvoiceRow,
    InvoiceTaxRow,
    JSONType,
    SubscriptionRow,
)

I = InvoiceRow  # noqa: E741


def existing(session: Session, pairs: Sequence[tuple[str, date]]) -> set[tuple[str, date]]:
    """Which of these (subscription, boundary) pairs have an invoice."""
    found: set[tuple[str, date]] = set()
    wanted = sorted({s for s, _ in pairs})
    days = {d for _, d in pairs}
    for start in range(0, len(wanted), 500):
        sub = col(I.subscription_id)
        stmt = select(sub, col(I.boundary)).where(sub.in_(wanted[start:start + 500]),
                                                  col(I.boundary).in_(sorted(days)))
        found.update((s, d) for s, d in session.execute(stmt))
    return found & set(pairs)


def _line_rows(invoice_id: int, invoice: ComposedInvoice) -> list[dict[str, object]]:
    return [
        {"invoice_id": invoice_id, "type": ln.type, "charge_id": ln.charge,
         "period_start": ln.period_start, "period_end": ln.period_end,
         "quantity": ln.quantity, "amount": ln.amount, "taxes": list(ln.taxes) or None,
         "filter_id": ln.filter, "plan_id": ln.plan}
        for ln in invoice.lines
    ]


def _tax_rows(invoice_id: int, invoice: ComposedInvoice) -> list[dict[str, object]]:
    return [{"invoice_id": invoice_id, "tax_id": t.tax, "rate": t.rate, "base": t.base,
             "amount": t.amount} for t in invoice.taxes]


@dataclass(frozen=True)
class NewInvoice:
    subscription: str
    entity: str
    customer: str
    plan_version: int
    invoice: ComposedInvoice


def add_many(session: Session, new: Sequence[NewInvoice], *, issued_at: datetime,
             computed_at: datetime) -> dict[tuple[str, date], int]:
    """Store the invoices as drafts, skipping any (subscription, boundary) that exists;
    the ids of those inserted, by (subscription, boundary). Lines go in one bulk insert."""
    if not new:
        return {}
    stmt = insert_ignore(session, InvoiceRow, "subscription_id", "boundary").returning(
        col(I.id), col(I.subscription_id), col(I.boundary))
    rows = [
        {"subscription_id": n.subscription, "boundary": n.invoice.boundary,
         "plan_version": n.plan_version,
         "entity_id": n.entity, "customer_id": n.customer, "currency": n.invoice.currency,
         "status": InvoiceStatus.DRAFT, "final": n.invoice.final, "issued_at": issued_at,
         "computed_at": computed_at, "subtotal": n.invoice.subtotal,
         "discount": n.invoice.discount, "tax": n.invoice.tax, "total": n.invoice.total,
         "tax_exempt": n.invoice.tax_exempt,
         "advance_plan_id": n.invoice.advance.plan.id if n.invoice.advance else None,
         "advance_plan_version": n.invoice.advance.version if n.invoice.advance else None}
        for n in new
    ]
    ids = {(sub, day): invoice_id
           for invoice_id, sub, day in session.execute(stmt, rows)}
    stored = [(ids[(n.subscription, n.invoice.boundary)], n.invoice) for n in new
              if (n.subscription, n.invoice.boundary) in ids]
    lines = [line for i, invoice in stored for line in _line_rows(i, invoice)]
    if lines:
        session.execute(insert(InvoiceLineRow), lines)
    taxes = [tax for i, invoice in stored for tax in _tax_rows(i, invoice)]
    if taxes:
        session.execute(insert(InvoiceTaxRow), taxes)
    return ids


def count_issued_at(session: Session, entity_id: str, issued_at: datetime) -> int:
    """The entity's invoices issued by the run at ``issued_at`` (whoever ran it)."""
    return int(session.scalar(select(func.count()).select_from(I).where(
        col(I.entity_id) == entity_id, col(I.issued_at) == issued_at)) or 0)


def replace_draft(session: Session, invoice_id: int, invoice: ComposedInvoice,
                  computed_at: datetime) -> bool:
    """Recompute a draft in place (boundary and issued_at stay); False if not a draft."""
    result = session.execute(
        update(I).where(col(I.id) == invoice_id, col(I.status) == InvoiceStatus.DRAFT)
        .values(final=invoice.final, currency=invoice.currency, subtotal=invoice.subtotal,
                discount=invoice.discount, tax=invoice.tax, total=invoice.total,
                tax_exempt=invoice.tax_exempt, computed_at=computed_at,
                advance_plan_id=invoice.advance.plan.id if invoice.advance else None,
                advance_plan_version=invoice.advance.version if invoice.advance else None)
    )
    if not rowcount(result):
        return False
    session.execute(delete(InvoiceLineRow).where(col(InvoiceLineRow.invoice_id) == invoice_id))
    session.execute(insert(InvoiceLineRow), _line_rows(invoice_id, invoice))
    session.execute(delete(InvoiceTaxRow).where(col(InvoiceTaxRow.invoice_id) == invoice_id))
    if invoice.taxes:
        session.execute(insert(InvoiceTaxRow), _tax_rows(invoice_id, invoice))
    return True


def number(session: Session, entity_id: str, prefix: str, invoice_ids: Sequence[int],
           now: datetime) -> list[str]:
    """Mark drafts sent with the entity's next numbers, in the order given, in this
    transaction: the counter row stays locked until commit, so numbers are gapless and in
    the order of sending. Every id must be a draft (else nothing is numbered)."""
    if not invoice_ids:
        return []
    session.execute(
        insert_ignore(session, InvoiceCounterRow, "entity_id").values(entity_id=entity_id,
                                                                       last_number=0)
    )
    stmt = select(InvoiceCounterRow).where(col(InvoiceCounterRow.entity_id) == entity_id)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    counter = session.scalars(stmt).one()
    first = counter.last_number + 1
    numbers = [f"{prefix}-{first + i:06d}" for i in range(len(invoice_ids))]
    # a Core executemany on the connection (the ORM would want to match primary keys)
    result = session.connection().execute(
        update(I).where(col(I.id) == bindparam("invoice_id"), col(I.status) == InvoiceStatus.DRAFT)
        .values(status=InvoiceStatus.SENT, number=bindparam("invoice_number"), sent_at=now),
        [{"invoice_id": i, "invoice_number": n} for i, n in zip(invoice_ids, numbers,
                                                                 strict=True)],
    )
    if rowcount(result) != len(invoice_ids):
        raise RuntimeError("number: an invoice was not a draft")  # the transaction rolls back
    counter.last_number += len(invoice_ids)
    session.flush()
    return numbers


@dataclass(frozen=True)
class SentTerms:
    """What an invoice gets when it is sent, besides its number."""

    invoice_id: int
    due_date: date
    payment_status: str
    parties: dict[str, Any]


def set_sent_terms(session: Session, terms: Sequence[SentTerms]) -> None:
    if terms:
        session.connection().execute(
            update(I).where(col(I.id) == bindparam("invoice_id"))
            .values(due_date=bindparam("due"), payment_status=bindparam("state"),
                    parties=bindparam("who", type_=JSONType)),
            [{"invoice_id": t.invoice_id, "due": t.due_date, "state": t.payment_status,
              "who": t.parties} for t in terms])


def advance_plans(session: Session, pairs: Collection[tuple[str, date]]
                  ) -> dict[tuple[str, date], tuple[str, int] | None]:
    """SPEC §14: the plan (id, version) whose recurring lines the invoices at these
    (subscription, boundary) pairs carry — None when one carries none; a pair without an
    invoice is left out."""
    found: dict[tuple[str, date], tuple[str, int] | None] = {}
    wanted = sorted({s for s, _ in pairs})
    days = sorted({d for _, d in pairs})
    for start in range(0, len(wanted), 500):
        stmt = select(col(I.subscription_id), col(I.boundary), col(I.advance_plan_id),
                      col(I.advance_plan_version)).where(
            col(I.subscription_id).in_(wanted[start:start + 500]), col(I.boundary).in_(days))
        for sub, day, plan_id, version in session.execute(stmt):
            if (sub, day) in pairs:
                found[(sub, day)] = None if plan_id is None or version is None \
                    else (plan_id, version)
    return found


def find(session: Session, subscription_id: str, boundary: date, *,
         lock: bool = False) -> InvoiceRow | None:
    stmt = select(I).where(col(I.subscription_id) == subscription_id, col(I.boundary) == boundary)
    if lock and is_postgres(session):
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def records(session: Session, *, ids: list[int] | None = None, entity: str | None = None,
            customer: str | None = None, subscription: str | None = None,
            status: str | None = None, number: str | None = None,
            boundary: date | None = None, limit: int | None = None,
            after: int | None = None,
            subscriptions: list[str] | None = None) -> list[InvoiceRecord]:
    """Invoices with their lines, sorted by (subscription, boundary) — or, for pages
    (``limit``, ``after`` an id), by id."""
    if limit is None and after is None:
        stmt = select(I).order_by(col(I.subscription_id), col(I.boundary))
    else:
        stmt = select(I).order_by(col(I.id))
        if after is not None:
            stmt = stmt.where(col(I.id) > after)
        if limit is not None:
            stmt = stmt.limit(limit)
    filters = {"entity_id": entity, "customer_id": customer, "subscription_id": subscription,
               "status": status, "number": number, "boundary": boundary}
    for name, value in filters.items():
        if value is not None:
            stmt = stmt.where(col(getattr(I, name)) == value)
    if ids is not None:
        stmt = stmt.where(col(I.id).in_(ids))
    if subscriptions is not None:
        stmt = stmt.where(col(I.subscription_id).in_(subscriptions))
    rows = list(session.scalars(stmt))
    lines: dict[int, list[Line]] = defaultdict(list)
    taxes: dict[int, list[TaxAmount]] = defaultdict(list)
    wanted = [r.id for r in rows if r.id is not None]
    for start in range(0, len(wanted), 500):
        part = wanted[start:start + 500]
        line_rows = session.scalars(
            select(InvoiceLineRow).where(col(InvoiceLineRow.invoice_id).in_(part))
            .order_by(col(InvoiceLineRow.id)))
        for ln in line_rows:
            lines[ln.invoice_id].append(
                Line(ln.type, ln.charge_id, ln.period_start, ln.period_end, ln.quantity,
                     ln.amount, tuple(ln.taxes or ()), ln.filter_id, ln.plan_id))
        tax_rows = session.scalars(
            select(InvoiceTaxRow).where(col(InvoiceTaxRow.invoice_id).in_(part))
            .order_by(col(InvoiceTaxRow.tax_id)))
        for t in tax_rows:
            taxes[t.invoice_id].append(TaxAmount(t.tax_id, t.rate, t.base, t.amount))
    paid_by = credits_repo.of_invoices(
        session, [r.id for r in rows if r.id is not None and r.credits])
    payments = payments_repo.of_invoices(
        session, [r.id for r in rows if r.id is not None and r.payment_status is not None])
    return [
        InvoiceRecord(
            id=r.id or 0, entity=r.entity_id, customer=r.customer_id,
            subscription=r.subscription_id, boundary=r.boundary, issued_at=r.issued_at,
            status=r.status, number=r.number, final=r.final, currency=r.currency,
            lines=tuple(sorted(lines[r.id or 0], key=line_order)),
            subtotal=r.subtotal, discount=r.discount, total=r.total, credits=r.credits,
            paid_by=tuple(paid_by.get(r.id or 0, ())), taxes=tuple(taxes[r.id or 0]),
            tax_exempt=r.tax_exempt, due_date=r.due_date, payment_status=r.payment_status,
            parties=r.parties, payments=tuple(payments.get(r.id or 0, ())),
        )
        for r in rows
    ]


def record_failure(session: Session, subscription_id: str, boundary: date, run_at: datetime,
                   error: str, now: datetime) -> None:
    """Keep (or count again) the failure to compute an invoice."""
    F = InvoiceFailureRow
    error = storable(error)
    row = session.get(F, (subscription_id, boundary))
    if row is None:
        session.add(F(subscription_id=subscription_id, boundary=boundary, run_at=run_at,
                      error=error, attempts=1, first_failed_at=now, last_failed_at=now))
    else:
        row.run_at, row.error, row.last_failed_at = run_at, error, now
        row.attempts += 1
    session.flush()


def clear_failures(session: Session, pairs: Sequence[tuple[str, date]]) -> None:
    F = InvoiceFailureRow
    wanted = sorted(set(pairs))
    for start in range(0, len(wanted), 500):
        session.execute(delete(F).where(tuple_(col(F.subscription_id), col(F.boundary))
                                        .in_(wanted[start:start + 500])))


def failures(session: Session, entity: str | None = None) -> list[InvoiceFailureRow]:
    F = InvoiceFailureRow
    stmt = select(F).order_by(col(F.subscription_id), col(F.boundary))
    if entity is not None:
        stmt = stmt.where(col(F.subscription_id).in_(
            select(col(SubscriptionRow.id)).where(col(SubscriptionRow.entity_id) == entity)))
    return list(session.scalars(stmt))


def failed_in_run(session: Session, run_at: datetime) -> set[tuple[str, date]]:
    F = InvoiceFailureRow
    stmt = select(col(F.subscription_id), col(F.boundary)).where(col(F.run_at) == run_at)
    return {(s, b) for s, b in session.execute(stmt)}


def statuses(session: Session, pairs: Collection[tuple[str, date]]
             ) -> dict[tuple[str, date], tuple[int, str]]:
    """(id, status) of the invoices at these (subscription, boundary) pairs."""
    found: dict[tuple[str, date], tuple[int, str]] = {}
    wanted = sorted({s for s, _ in pairs})
    days = sorted({d for _, d in pairs})
    for start in range(0, len(wanted), 500):
        stmt = select(col(I.subscription_id), col(I.boundary), col(I.id), col(I.status)).where(
            col(I.subscription_id).in_(wanted[start:start + 500]), col(I.boundary).in_(days))
        for sub, day, invoice_id, status in session.execute(stmt):
            if (sub, day) in pairs and invoice_id is not None:
                found[(sub, day)] = (invoice_id, status)
    return found


@dataclass(frozen=True)
class PeriodLines:
    """What the subscriptions' invoices hold for some periods (SPEC §11), from one query:
    each period's covering invoice (the one whose usage lines count it) with its status,
    its usage lines' quantities, and what every invoice billed per (charge, period)."""

    covering: dict[tuple[str, date], tuple[int, str]]  # (sub, period start) -> (id, status)
    # (covering invoice id, charge, group: None without filters)
    usage_quantity: dict[tuple[int, str, str | None], Decimal]
    # (sub, charge, group, period start), but `exclude`
    billed: dict[tuple[str, str, str | None, date], Billed]


def period_lines(session: Session, subscriptions: Collection[str], periods: Collection[date],
                 exclude: Collection[int] = ()) -> PeriodLines:
    """The usage and adjustment lines of these periods on these subscriptions' invoices
    (``exclude``: invoices being recomputed, left out of ``billed``)."""
    L = InvoiceLineRow
    result = PeriodLines({}, {}, {})
    wanted = sorted(set(subscriptions))
    if not wanted or not periods:
        return result
    left_out = set(exclude)
    for start in range(0, len(wanted), 500):
        stmt = (select(col(I.subscription_id), col(I.id), col(I.status), col(L.type),
                       col(L.charge_id), col(L.filter_id), col(L.period_start),
                       col(L.quantity), col(L.amount))
                .join(I, col(I.id) == col(L.invoice_id))
                .where(col(I.subscription_id).in_(wanted[start:start + 500]),
                       col(L.type).in_([USAGE, ADJUSTMENT]),
                       col(L.period_start).in_(sorted(set(periods)))))
        for sub, invoice_id, status, kind, charge, group, period_start, quantity, amount \
                in session.execute(stmt):
            assert invoice_id is not None
            if kind == USAGE:
                result.covering[(sub, period_start)] = (invoice_id, status)
                result.usage_quantity[(invoice_id, charge, group)] = quantity
            if invoice_id in left_out:
                continue
            key = (sub, charge, group, period_start)
            so_far = result.billed.get(key, Billed(Decimal(0), Decimal(0)))
            with localcontext(EXACT):
                result.billed[key] = Billed(so_far.quantity + quantity, so_far.amount + amount)
    return result


def adjustment_periods(session: Session, invoice_id: int) -> set[tuple[str, date, date]]:
    """(charge, period start, period end) of the adjustment lines of an invoice."""
    L = InvoiceLineRow
    stmt = select(col(L.charge_id), col(L.period_start), col(L.period_end)).where(
        col(L.invoice_id) == invoice_id, col(L.type) == ADJUSTMENT)
    return {(c, s, e) for c, s, e in session.execute(stmt)}
