"""The Alembic migrations create exactly the schema of the models, on SQLite and PostgreSQL,
and running them again changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from persistence import db, migrate
from tests.conftest import PG_URL, require_services


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    if request.param == "sqlite":
        db.configure(f"sqlite:///{tmp_path / 'migrated.db'}")
    else:
        require_services()
        db.configure(PG_URL, schema=f"test_mig_{uuid.uuid4().hex[:10]}")
    yield
    db.drop_private_schema()
    db.engine().dispose()


def test_migrations_match_the_models(empty_database: None) -> None:
    migrate.upgrade()
    migrate.upgrade()  # idempotent: already at head
    with db.engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_object": migrate.for_this_database(connection.dialect.name)})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_a_schema_made_from_the_models_is_stamped_not_recreated(empty_database: None) -> None:
    db.create_schema()
    migrate.upgrade()
    with db.engine().connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() is not None


def test_data_of_a_0002_database_is_carried_over(empty_database: None) -> None:
    """A deployment from before plan versions: each plan becomes version 1 with its
    subscriptions and invoices, and each subscription's next boundary follows its latest
    invoice."""
    from sqlalchemy import text

    from persistence import catalog as catalog_repo
    from persistence import subscriptions as subs_repo
    from persistence.db import unit_of_work

    migrate.upgrade("0002")
    plan = ('{"id": "pro", "currency": "EUR", "interval": "month", "charges": '
            '[{"id": "base", "type": "recurring", "amount": "10"}, {"id": "t", "type": '
            '"usage", "meter": "tokens", "model": "unit", "unit_price": "1"}]}')
    at = "2026-01-01 00:00:00.000000" if db.engine().dialect.name == "sqlite" \
        else "2026-01-01 00:00:00+00"
    with db.engine().begin() as conn:
        for sql in [
            "INSERT INTO entities (id, timezone, invoice_prefix) VALUES ('e', 'UTC', 'E')",
            "INSERT INTO meters (id, aggregation) VALUES ('tokens', 'sum')",
            f"INSERT INTO plans (id, currency, interval, definition) VALUES "
            f"('pro', 'EUR', 'month', '{plan}')",
            "INSERT INTO plan_meters (plan_id, meter_id) VALUES ('pro', 'tokens')",
            "INSERT INTO customers (id, entity_id, draft_invoices) VALUES ('c', 'e', true)",
            f"INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, start, start_at, "
            f"created_at) VALUES ('s', 'c', 'e', 'pro', '2026-01-01', '{at}', '{at}')",
            f"INSERT INTO invoices (subscription_id, boundary, entity_id, customer_id, currency,"
            f" status, final, issued_at, computed_at, subtotal, discount, total) VALUES "
            f"('s', '2026-02-01', 'e', 'c', 'EUR', 'sent', false, '{at}', '{at}', 10, 0, 10)",
        ]:
            conn.execute(text(sql))
    migrate.upgrade()
    with unit_of_work() as session:
        assert catalog_repo.latest_plan(session, "pro") is not None
        version, plan_v1 = catalog_repo.latest_plan(session, "pro")  # type: ignore[misc]
        assert version == 1 and plan_v1.meters == frozenset({"tokens"})
        row = subs_repo.get(session, "s")
        assert row is not None and row.plan_version == 1
        assert (row.next_k, row.next_boundary.isoformat()) == (2, "2026-03-01")
        assert row.next_boundary_at.isoformat() == "2026-03-01T00:00:00+00:00"
        assert row.closed_until_at is not None
        assert row.closed_until_at.isoformat() == "2026-02-01T00:00:00+00:00"
        assert catalog_repo.customer(session, "c").draft_invoices is True  # type: ignore[union-attr]
