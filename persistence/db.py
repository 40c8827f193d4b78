"""Engine, schema and the unit of work.

SQLite is the embedded default; PostgreSQL (psycopg 3) is the production store. On SQLite
the exact decimals are text, so the engine registers exact aggregates (``dec_sum``,
``dec_max``, ``dec_min``) that run inside the database like PostgreSQL's ``SUM`` on
``NUMERIC`` does.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from domain.money import EXACT
from persistence import tables  # noqa: F401  (registers the tables)

_engine: Engine | None = None
_schema: str | None = None
_known: dict[str, set[str]] = {}


class _DecimalSum:
    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: Any) -> None:
        if value is not None:
            with localcontext(EXACT):
                self.total += Decimal(str(value))

    def finalize(self) -> str:
        return format(self.total, "f")


class _DecimalExtreme:
    pick: Any = max

    def __init__(self) -> None:
        self.best: Decimal | None = None

    def step(self, value: Any) -> None:
        if value is not None:
            d = Decimal(str(value))
            self.best = d if self.best is None else type(self).pick(self.best, d)

    def finalize(self) -> str | None:
        return None if self.best is None else format(self.best, "f")


class _DecimalMax(_DecimalExtreme):
    pick = max


class _DecimalMin(_DecimalExtreme):
    pick = min


def _setup_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Transactions are begun by _begin_immediate below, not by the driver.
    dbapi_connection.isolation_level = None
    dbapi_connection.create_aggregate("dec_sum", 1, _DecimalSum)  # type: ignore[arg-type]
    dbapi_connection.create_aggregate("dec_max", 1, _DecimalMax)  # type: ignore[arg-type]
    dbapi_connection.create_aggregate("dec_min", 1, _DecimalMin)  # type: ignore[arg-type]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(value: Any) -> str:
    """JSON columns keep exact decimals as strings."""
    return json.dumps(value, default=_json_default)


def _begin_immediate(connection: Any) -> None:
    # Take SQLite's write lock up front: two deferred transactions that both read and then
    # write would otherwise fail with "database is locked" instead of waiting.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, schema: str | None = None) -> Engine:
    """An engine for ``url``; on PostgreSQL ``schema`` (created if missing) isolates a replay
    or a test run from every other table in the database."""
    if not url.startswith(("postgresql:", "postgresql+psycopg:", "sqlite:")):
        from sqlalchemy.exc import ArgumentError

        raise ArgumentError(f"{url.split(':')[0]!r} databases are not supported: use "
                            "postgresql://… or sqlite:///…")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool, json_serializer=_json,
                               connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _setup_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                           json_serializer=_json, connect_args=connect_args)
    if schema:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return engine


def configure(url: str, schema: str | None = None) -> Engine:
    """Point the process at a database (replacing any earlier one)."""
    global _engine, _schema
    if _engine is not None:
        _engine.dispose()
    _engine = make_engine(url, schema)
    _schema = schema
    _known.clear()
    return _engine


def drop_private_schema() -> None:
    """Drop the PostgreSQL schema given to ``configure`` (a replay's or a test's)."""
    if _schema and _engine is not None and _engine.dialect.name == "postgresql":
        with _engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{_schema}" CASCADE')


def current_schema() -> str | None:
    """The PostgreSQL schema given to ``configure`` (a replay's or a test's), if any."""
    return _schema


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("persistence.db.configure(url) was not called")
    return _engine


def create_schema() -> None:
    SQLModel.metadata.create_all(engine())


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    session = Session(engine(), expire_on_commit=False)
    try:
        with session.begin():
            yield session
    finally:
        session.close()


@contextmanager
def snapshot() -> Iterator[Session]:
    """One read-only transaction that sees one snapshot of the database, whatever commits
    meanwhile: REPEATABLE READ on PostgreSQL (a page whose parts must agree — the portal's
    chart and estimate); SQLite's transactions are serializable already. Nothing it reads
    waits or fails for it: a read-only transaction never meets a serialization failure, and
    the rollups' read lock is taken as in any other read (persistence/rollups.py)."""
    with unit_of_work() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        yield session


def answers() -> bool:
    """Whether the database answers a ``SELECT 1``."""
    try:
        with engine().connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception:
        return False
    return True


def known() -> dict[str, set[str]]:
    """Ids known to exist in the configured database, remembered by this process (catalog
    items are never deleted, so a positive answer stays true). Reset by ``configure``."""
    return _known


def is_configured() -> bool:
    return _engine is not None
