"""Deliveries of sent invoices: recorded with the sending, carried out after commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import is_postgres
from persistence.tables import DeliveryRow

D = DeliveryRow


def add_pending(session: Session, invoice_ids: Sequence[int], now: datetime) -> None:
    if invoice_ids:
        session.execute(insert(D), [{"invoice_id": i, "status": "pending", "attempts": 0,
                                     "last_error": "", "created_at": now, "updated_at": now}
                                    for i in invoice_ids])


def claim(session: Session, invoice_id: int) -> DeliveryRow | None:
    """The delivery, locked for this attempt; None when there is none, or when another
    worker holds it right now (PostgreSQL: SKIP LOCKED)."""
    stmt = select(D).where(col(D.invoice_id) == invoice_id)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).first()


def status_of(session: Session, invoice_id: int) -> str | None:
    """The delivery's status (pending | done | failed), or None without one."""
    return session.scalar(select(col(D.status)).where(col(D.invoice_id) == invoice_id))


def rows(session: Session, status: str | None = None, limit: int = 200) -> list[DeliveryRow]:
    stmt = select(D).order_by(col(D.created_at).desc()).limit(limit)
    if status:
        stmt = stmt.where(col(D.status) == status)
    return list(session.scalars(stmt))


def stale_pending(session: Session, older_than: datetime, limit: int = 1000) -> list[int]:
    """Pending deliveries never attempted and older than ``older_than``: their message may
    have been lost between a commit and its enqueue."""
    stmt = select(col(D.invoice_id)).where(col(D.status) == "pending", col(D.attempts) == 0,
                                           col(D.updated_at) < older_than).limit(limit)
    return list(session.scalars(stmt))


def reset(session: Session, invoice_ids: Sequence[int], now: datetime) -> list[int]:
    """Make failed or pending deliveries pending again (an operator's retry)."""
    stmt = update(D).where(col(D.invoice_id).in_(invoice_ids), col(D.status) != "done").values(
        status="pending", updated_at=now).returning(col(D.invoice_id))
    return list(session.scalars(stmt))
