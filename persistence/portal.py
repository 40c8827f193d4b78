"""Customer portal links: created, found, revoked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import rowcount
from persistence.tables import PortalLinkRow


def add(session: Session, row: PortalLinkRow) -> None:
    session.add(row)
    session.flush()


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
