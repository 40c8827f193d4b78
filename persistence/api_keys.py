"""The ``api_keys`` table: by name, by hash, by id; all of them; revoking one once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.tables import ApiKeyRow


def by_name(session: Session, name: str) -> ApiKeyRow | None:
    return session.scalars(select(ApiKeyRow).where(col(ApiKeyRow.name) == name)).first()


def by_hash(session: Session, key_hash: str) -> ApiKeyRow | None:
    return session.scalars(select(ApiKeyRow).where(col(ApiKeyRow.key_hash) == key_hash)).first()


def by_id(session: Session, key_id: int) -> ApiKeyRow | None:
    return session.get(ApiKeyRow, key_id)


def all_keys(session: Session) -> list[ApiKeyRow]:
    return list(session.scalars(select(ApiKeyRow).order_by(col(ApiKeyRow.id))))


def add(session: Session, row: ApiKeyRow) -> None:
    """Insert ``row`` now (a key of the same name made at the same time: its unique name
    raises ``IntegrityError`` here)."""
    session.add(row)
    session.flush()


def revoke(session: Session, row: ApiKeyRow, now: datetime) -> None:
    """Revoked once: a revocation at the same time finds it revoked (its instant stays)."""
    session.execute(update(ApiKeyRow).where(col(ApiKeyRow.id) == row.id,
                                            col(ApiKeyRow.revoked_at).is_(None))
                    .values(revoked_at=now))
    session.refresh(row)
