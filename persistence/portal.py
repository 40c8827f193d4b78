"""Customer portal links: created, found, revoked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import insert_ignore, rowcount
from persistence.tables import PortalLinkRow


def add(session: Session, row: PortalLinkRow) -> None:
    session.add(row)
    session.flush()


def add_once(session: Session, row: PortalLinkRow) -> PortalLinkRow:
    """Store ``row`` unless a link with its id exists (or is being stored by another
    transaction, which this one waits for); the link with that id."""
    session.execute(insert_ignore(session, PortalLinkRow, "id").values(
        id=row.id, customer_id=row.customer_id, created_at=row.created_at,
        expires_at=row.expires_at))
    stored = session.get(PortalLinkRow, row.id, populate_existing=True)
    assert stored is not None
    return stored


def get(session: Session, link_id: str) -> PortalLinkRow | None:
    return session.get(PortalLinkRow, link_id)


def listing(session: Session, customer: str | None = None,
            limit: int = 100) -> list[PortalLinkRow]:
    stmt = select(PortalLinkRow).order_by(col(PortalLinkRow.created_at).desc()).limit(limit)
    if customer is not None:
        stmt = stmt.where(col(PortalLinkRow.customer_id) == customer)
    return list(session.scalars(stmt))


def revoke(session: Session, *, link_id: str | None = None, customer: str | None = None,
           now: datetime) -> int:
    """Revoke one link, or every open link of a customer; how many were revoked."""
    stmt = update(PortalLinkRow).where(col(PortalLinkRow.revoked_at).is_(None)).values(
        revoked_at=now)
    if link_id is not None:
        stmt = stmt.where(col(PortalLinkRow.id) == link_id)
    if customer is not None:
        stmt = stmt.where(col(PortalLinkRow.customer_id) == customer)
    return rowcount(session.execute(stmt))
