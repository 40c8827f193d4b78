"""Bill-run claims: one row per (entity, local date)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from persistence.sql import insert_ignore
from persistence.tables import BillRunRow


def claim(session: Session, entity_id: str, local_date: date, run_at: datetime,
          now: datetime) -> bool:
    """Claim the entity's run for ``local_date``; False when it was claimed before."""
    stmt = insert_ignore(session, BillRunRow, "entity_id", "local_date").values(
        entity_id=entity_id, local_date=local_date, run_at=run_at, claimed_at=now
    ).returning(BillRunRow.entity_id)
    return session.execute(stmt).first() is not None
