"""Idempotency keys of the HTTP API: the request each names, and its first answer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import insert_ignore
from persistence.tables import IdempotencyKeyRow

K = IdempotencyKeyRow


def claim(session: Session, api_key_id: int, key: str, method: str, path: str,
          fingerprint: str, now: datetime) -> IdempotencyKeyRow | None:
    """Record that ``key`` names this request, unless it names one already: None when it
    is new here, else the row of the request it named first. (PostgreSQL: an insert racing
    another of the same key waits for it, then sees it.)"""
    stmt = insert_ignore(session, K, "api_key_id", "key").values(
        api_key_id=api_key_id, key=key, method=method, path=path, fingerprint=fingerprint,
        created_at=now).returning(col(K.key))
    if session.execute(stmt).first() is not None:
        return None
    row = session.get(K, (api_key_id, key), populate_existing=True)
    assert row is not None
    return row


def remember(session: Session, api_key_id: int, key: str, status: int, response: str) -> None:
    """The first answer to the key's request (a later one does not replace it)."""
    session.execute(update(K).where(col(K.api_key_id) == api_key_id, col(K.key) == key,
                                    col(K.status).is_(None))
                    .values(status=status, response=response))
