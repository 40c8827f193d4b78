"""Small dialect helpers shared by the repositories."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Result
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.validation import UNSTORABLE


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_ignore(session: Session, model: Any, *conflict_columns: str) -> Any:
    """``INSERT … ON CONFLICT (columns) DO NOTHING`` for the session's dialect."""
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=list(conflict_columns))


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def storable(text: str) -> str:
    """Text a database can hold: NUL and lone surrogates written as escapes (an error or a
    reason may quote the bad input that caused it)."""
    return UNSTORABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def decimal_aggregate(session: Session, name: str, column: Any) -> Any:
    """SUM/MAX/MIN over exact decimals: native on PostgreSQL NUMERIC, the exact aggregates
    registered by ``persistence.db`` on SQLite (where decimals are text)."""
    from sqlalchemy import func

    from persistence.types import ExactDecimal

    if is_postgres(session):
        return getattr(func, name)(column, type_=ExactDecimal())
    return getattr(func, f"dec_{name}")(column, type_=ExactDecimal())
