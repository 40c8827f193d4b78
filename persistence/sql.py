"""Small dialect helpers shared by the repositories."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CursorResult, Result, and_, case, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from domain.filters import DEFAULT_GROUP, Filter, ranked
from domain.validation import UNSTORABLE


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@contextmanager
def driver_cursor(session: Session) -> Iterator[Any]:
    """A cursor of the PostgreSQL driver (psycopg) on the session's connection, inside its
    transaction: for the statements that send whole columns as binary arrays."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        yield cursor


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
    from persistence.types import ExactDecimal

    if is_postgres(session):
        return getattr(func, name)(column, type_=ExactDecimal())
    return getattr(func, f"dec_{name}")(column, type_=ExactDecimal())


def string_property_in(session: Session, properties: Any, name: str,
                       values: Sequence[str]) -> Any:
    """``properties[name]`` is a string, one of ``values`` (SPEC §13: only strings match):
    ``properties`` is a JSON column or expression (JSONB on PostgreSQL)."""
    if is_postgres(session):
        return and_(func.jsonb_typeof(properties.op("->")(name)) == "string",
                    properties.op("->>")(name).in_(list(values)))
    path = '$."' + name.replace('"', '\\"') + '"'
    return and_(func.json_type(properties, path) == "text",
                func.json_extract(properties, path).in_(list(values)))


def group_case(session: Session, filters: Sequence[Filter], properties: Any) -> Any:
    """SPEC §13, ``domain.filters.group_of`` as one SQL ``CASE`` over ``properties`` (an
    event's, or a rollup's ``dims``): the filters in the order an event tries them (most
    names, then as listed), the default group last. The invoice and the estimate from the
    rollups decide a group with this one expression."""
    whens = [(and_(*(string_property_in(session, properties, name, values)
                     for name, values in f.match)), literal(f.id)) for f in ranked(filters)]
    return case(*whens, else_=literal(DEFAULT_GROUP)) if whens else literal(DEFAULT_GROUP)
