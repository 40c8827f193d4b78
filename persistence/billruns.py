"""Bill-run claims: one row per (entity, local date), with their progress."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import insert_ignore
from persistence.tables import BillRunRow


def claim(session: Session, entity_id: str, local_date: date, run_at: datetime,
          now: datetime) -> bool:
    """Claim the entity's run for ``local_date``; False when it was claimed before."""
    stmt = insert_ignore(session, BillRunRow, "entity_id", "local_date").values(
        entity_id=entity_id, local_date=local_date, run_at=run_at, claimed_at=now
    ).returning(BillRunRow.entity_id)
    return session.execute(stmt).first() is not None


def unfinished(session: Session, now: datetime, resend_after: timedelta,
               entity_ids: Collection[str] | None = None) -> list[BillRunRow]:
    """Claims to send (again): never sent, or sent more than ``resend_after`` ago and not
    done (their message, or the work it fanned out, may have been lost)."""
    R = BillRunRow
    stmt = select(R).where(col(R.status) != "done").order_by(col(R.local_date),
                                                             col(R.entity_id))
    if entity_ids is not None:
        stmt = stmt.where(col(R.entity_id).in_(sorted(entity_ids)))
    return [r for r in session.scalars(stmt)
            if r.status == "claimed" or r.sent_at is None or r.sent_at <= now - resend_after]


def mark_sent(session: Session, entity_id: str, local_date: date, now: datetime) -> None:
    R = BillRunRow
    session.execute(update(R).where(col(R.entity_id) == entity_id,
                                    col(R.local_date) == local_date, col(R.status) != "done")
                    .values(status="sent", sent_at=now))


def mark_done(session: Session, entity_id: str, local_date: date, now: datetime) -> None:
    R = BillRunRow
    session.execute(update(R).where(col(R.entity_id) == entity_id,
                                    col(R.local_date) == local_date)
                    .values(status="done", done_at=now))


def runs(session: Session, entity_id: str | None = None, limit: int = 50) -> list[BillRunRow]:
    R = BillRunRow
    stmt = select(R).order_by(col(R.local_date).desc(), col(R.entity_id)).limit(limit)
    if entity_id is not None:
        stmt = stmt.where(col(R.entity_id) == entity_id)
    return list(session.scalars(stmt))
