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


# A catalog as a 0002 database stores it: one entity, one meter, plan "pro" charging it.
_PRO = ('{"id": "pro", "currency": "EUR", "interval": "month", "charges": '
        '[{"id": "base", "type": "recurring", "amount": "10"}, {"id": "t", "type": '
        '"usage", "meter": "tokens", "model": "unit", "unit_price": "1"}]}')
CATALOG_0002 = [
    "INSERT INTO entities (id, timezone, invoice_prefix) VALUES ('e', 'UTC', 'E')",
    "INSERT INTO meters (id, aggregation) VALUES ('tokens', 'sum')",
    f"INSERT INTO plans (id, currency, interval, definition) VALUES ('pro', 'EUR', 'month', "
    f"'{_PRO}')",
    "INSERT INTO plan_meters (plan_id, meter_id) VALUES ('pro', 'tokens')",
]


def test_data_of_a_0002_database_is_carried_over(empty_database: None) -> None:
    """A deployment from before plan versions: each plan becomes version 1 with its
    subscriptions and invoices, and each subscription's next boundary follows its latest
    invoice."""
    from sqlalchemy import text

    from persistence import catalog as catalog_repo
    from persistence import subscriptions as subs_repo
    from persistence.db import unit_of_work

    migrate.upgrade("0002")
    at = "2026-01-01 00:00:00.000000" if db.engine().dialect.name == "sqlite" \
        else "2026-01-01 00:00:00+00"
    with db.engine().begin() as conn:
        for sql in [
            *CATALOG_0002,
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


@pytest.mark.postgres
def test_rollups_of_a_0013_database_keep_answering_and_subscriptions_get_theirs() -> None:
    """Issue #21's horizons on a deployment whose rollups hold every folded event: each
    customer with rollups is rolled up from its first rollup hour on, and a customer with a
    subscription but nothing folded yet gets its usage rolled up from its start by the first
    fold — every read the same as the events' answer."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    from persistence import rollups
    from persistence.db import unit_of_work
    from services import rollups as rollups_service

    require_services()
    db.configure(PG_URL, schema=f"test_mig_{uuid.uuid4().hex[:10]}")
    try:
        migrate.upgrade("0002")
        at = "2026-01-01 00:00:00+00"
        with db.engine().begin() as conn:
            for sql in [
                *CATALOG_0002,
                "INSERT INTO customers (id, entity_id, draft_invoices) VALUES ('a', 'e', false), "
                "('d', 'e', false)",
                f"INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, start, "
                f"start_at, created_at) VALUES ('s', 'd', 'e', 'pro', '2026-01-01', '{at}', "
                f"'{at}')",
            ]:
                conn.execute(text(sql))
        migrate.upgrade("0013")
        with db.engine().begin() as conn:  # a's event folded, then d's not yet
            conn.execute(text(
                "INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
                "ingested_at) VALUES ('a1', 'a', 'tokens', 5, '2026-01-05 10:30+00', now())"))
            conn.execute(text(
                "INSERT INTO usage_rollups (customer_id, meter_id, hour, total, events, "
                "largest, smallest) VALUES ('a', 'tokens', '2026-01-05 10:00+00', 5, 1, 5, 5)"))
            conn.execute(text("INSERT INTO usage_fold_state (id, folded) "
                              "SELECT 1, last_value FROM usage_batch_seq"))
        with db.engine().begin() as conn:
            conn.execute(text(
                "INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
                "ingested_at) VALUES ('d1', 'd', 'tokens', 3, '2026-01-02 08:15+00', now()), "
                "('d0', 'd', 'tokens', 2, '2025-12-31 23:15+00', now())"))
        migrate.upgrade()
        hour = datetime(2026, 1, 5, 10, tzinfo=UTC)
        with unit_of_work() as session:
            assert rollups.horizons(session, ["a", "d"]) == {"a": hour}
        rollups_service.fold()
        bounds = [datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)]
        with unit_of_work() as session:
            assert rollups.horizons(session, ["a", "d"]) == {
                "a": hour, "d": datetime(2026, 1, 1, tzinfo=UTC)}
            rolled = session.execute(text(
                "SELECT customer_id, hour, total FROM usage_rollups ORDER BY 1, 2")).all()
            assert [(c, h, int(t)) for c, h, t in rolled] == [
                ("a", hour, 5), ("d", datetime(2026, 1, 2, 8, tzinfo=UTC), 3)]
            got = rollups.windows(session, ["a", "d"], ["tokens"], bounds)
        assert [t.total for t in got[("a", "tokens")]] == [5]
        assert [t.total for t in got[("d", "tokens")]] == [5]  # 2 before its start, 3 after
    finally:
        db.drop_private_schema()
        db.engine().dispose()
