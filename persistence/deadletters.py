"""Dead letters: messages that failed after every retry, or that nobody can decode."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import insert_ignore, storable
from persistence.tables import DeadLetterRow


def add(session: Session, message_id: str, queue_name: str, actor_name: str,
        message: str, error: str, now: datetime) -> None:
    """Keep a dead letter; ``message`` is the broker's JSON text of it (ASCII)."""
    session.execute(insert_ignore(session, DeadLetterRow, "message_id").values(
        message_id=message_id, queue_name=queue_name, actor_name=actor_name,
        message=message, error=storable(error), failed_at=now,
    ))


def all(session: Session) -> list[DeadLetterRow]:
    return list(session.scalars(select(DeadLetterRow).order_by(col(DeadLetterRow.failed_at))))


def take(session: Session, message_ids: Sequence[str] | None, *,
         skip_actor: str) -> list[DeadLetterRow]:
    """Delete and return the dead letters to requeue (those of ``message_ids``, or all; not
    those of ``skip_actor``), oldest first. Deleted by this statement, so a transaction
    doing the same at once gets none of them (it waits, then finds them gone)."""
    D = DeadLetterRow
    stmt = delete(D).where(col(D.actor_name) != skip_actor)
    if message_ids is not None:
        stmt = stmt.where(col(D.message_id).in_(sorted(set(message_ids))))
    taken = [r for r in session.execute(stmt.returning(*D.__table__.columns))]  # type: ignore[attr-defined]
    rows = [D(**r._asdict()) for r in taken]
    return sorted(rows, key=lambda r: (r.failed_at, r.message_id))


def remove(session: Session, message_id: str) -> None:
    session.execute(delete(DeadLetterRow).where(col(DeadLetterRow.message_id) == message_id))


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(DeadLetterRow)) or 0)
