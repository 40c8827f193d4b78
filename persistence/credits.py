"""Prepaid credit grants and their ledger (SPEC §12): what a grant paid is the sum of its
applications, never a stored counter."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.credits import Grant
from persistence.sql import decimal_aggregate, insert_ignore, is_postgres, rowcount
from persistence.tables import CreditApplicationRow, CreditGrantRow, InvoiceRow

G = CreditGrantRow
A = CreditApplicationRow
CHUNK = 500


def _grant(row: CreditGrantRow) -> Grant:
    return Grant(row.id, row.customer_id, row.currency, row.amount, row.granted_at,
                 row.expires_at, row.priority, row.voided_at)


def add(session: Session, grant: Grant, source_invoice_id: int | None = None) -> bool:
    """Store a grant; False when its id is taken (nothing changes then)."""
    stmt = insert_ignore(session, G, "id").values(
        id=grant.id, customer_id=grant.customer, currency=grant.currency,
        amount=grant.amount, priority=grant.priority, granted_at=grant.granted_at,
        expires_at=grant.expires_at, voided_at=grant.voided_at,
        source_invoice_id=source_invoice_id).returning(col(G.id))
    return session.execute(stmt).first() is not None


def add_many(session: Session, grants: Sequence[tuple[Grant, int]]) -> None:
    """Store the grants made from sent invoices' negative totals, ``(grant, invoice id)``;
    one that exists already (a redelivery) is left as it is."""
    if not grants:
        return
    session.execute(insert_ignore(session, G, "id"), [
        {"id": g.id, "customer_id": g.customer, "currency": g.currency, "amount": g.amount,
         "priority": g.priority, "granted_at": g.granted_at, "expires_at": g.expires_at,
         "voided_at": None, "source_invoice_id": invoice_id}
        for g, invoice_id in grants])


def get(session: Session, grant_id: str, *, lock: bool = False) -> Grant | None:
    stmt = select(G).where(col(G.id) == grant_id)
    if lock and is_postgres(session):
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    return None if row is None else _grant(row)


def of_customers(session: Session, customers: Collection[str]) -> list[Grant]:
    """Every grant of these customers, in id order."""
    found: list[Grant] = []
    wanted = sorted(set(customers))
    for start in range(0, len(wanted), CHUNK):
        stmt = select(G).where(col(G.customer_id).in_(wanted[start:start + CHUNK]))
        found.extend(_grant(r) for r in session.scalars(stmt))
    return sorted(found, key=lambda g: g.id)


def usable(session: Session, customers: Collection[str], at: datetime, *,
           lock: bool = False) -> list[Grant]:
    """The grants of these customers that may pay an invoice sent at ``at``: granted
    before it, not expired at it, not voided (a void recorded already counts, whatever
    its instant: a voided grant pays nothing more). With ``lock``, locked in id order, so
    that two transactions sending invoices of one customer take its credits one after
    the other and never wait for each other in a circle; a void waiting for the lock is
    seen once it commits."""
    found: list[Grant] = []
    wanted = sorted(set(customers))
    for start in range(0, len(wanted), CHUNK):
        stmt = (select(G).where(col(G.customer_id).in_(wanted[start:start + CHUNK]),
                                col(G.granted_at) < at, col(G.voided_at).is_(None),
                                or_(col(G.expires_at).is_(None), col(G.expires_at) > at))
                .order_by(col(G.id)))
        if lock and is_postgres(session):
            stmt = stmt.with_for_update()
        found.extend(_grant(r) for r in session.scalars(stmt))
    return found


def used(session: Session, grant_ids: Collection[str]) -> dict[str, Decimal]:
    """What each grant has paid so far (grants that paid nothing are left out)."""
    result: dict[str, Decimal] = {}
    wanted = sorted(set(grant_ids))
    total = decimal_aggregate(session, "sum", col(A.amount))
    for start in range(0, len(wanted), CHUNK):
        stmt = (select(col(A.grant_id), total)
                .where(col(A.grant_id).in_(wanted[start:start + CHUNK]))
                .group_by(col(A.grant_id)))
        result.update((g, Decimal(amount)) for g, amount in session.execute(stmt))
    return result


def applications(session: Session, grant_ids: Collection[str]
                 ) -> dict[str, list[tuple[datetime, Decimal]]]:
    """Each grant's applications, ``(sent at, amount)``, in the order they were made."""
    result: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
    wanted = sorted(set(grant_ids))
    for start in range(0, len(wanted), CHUNK):
        stmt = (select(col(A.grant_id), col(A.applied_at), col(A.amount))
                .where(col(A.grant_id).in_(wanted[start:start + CHUNK]))
                .order_by(col(A.id)))
        for grant_id, at, amount in session.execute(stmt):
            result[grant_id].append((at, amount))
    return result


@dataclass(frozen=True)
class Application:
    grant: str
    invoice_id: int
    amount: Decimal
    at: datetime


def apply(session: Session, applications: Sequence[Application],
          credits: dict[int, Decimal]) -> None:
    """Record what grants paid and each invoice's ``credits``, in the transaction that
    sends the invoices. A second application of a grant to an invoice violates the
    ledger's unique key: the transaction rolls back."""
    if applications:
        session.execute(insert(A), [
            {"grant_id": a.grant, "invoice_id": a.invoice_id, "amount": a.amount,
             "applied_at": a.at} for a in applications])
    if credits:
        session.connection().execute(
            update(InvoiceRow).where(col(InvoiceRow.id) == bindparam("invoice_id"))
            .values(credits=bindparam("paid")),
            [{"invoice_id": i, "paid": amount} for i, amount in credits.items()])


def of_invoices(session: Session, invoice_ids: Collection[int]
                ) -> dict[int, list[tuple[str, Decimal]]]:
    """The grants that paid each invoice, ``(grant id, amount)`` in the order applied."""
    result: dict[int, list[tuple[str, Decimal]]] = defaultdict(list)
    wanted = sorted(set(invoice_ids))
    for start in range(0, len(wanted), CHUNK):
        stmt = (select(col(A.invoice_id), col(A.grant_id), col(A.amount))
                .where(col(A.invoice_id).in_(wanted[start:start + CHUNK]))
                .order_by(col(A.id)))
        for invoice_id, grant_id, amount in session.execute(stmt):
            result[invoice_id].append((grant_id, amount))
    return result


def void(session: Session, grant_id: str, at: datetime) -> bool:
    """Void a grant that is not voided yet; False when it was."""
    stmt = update(G).where(col(G.id) == grant_id, col(G.voided_at).is_(None)).values(
        voided_at=at)
    return rowcount(session.execute(stmt)) == 1


def all_grants(session: Session) -> list[Grant]:
    return [_grant(r) for r in session.scalars(select(G).order_by(col(G.id)))]
