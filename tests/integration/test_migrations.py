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
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_a_schema_made_from_the_models_is_stamped_not_recreated(empty_database: None) -> None:
    db.create_schema()
    migrate.upgrade()
    with db.engine().connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() is not None
