"""Alembic environment: migrates the database that ``persistence.db`` is configured for."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from persistence import db, tables  # noqa: F401  (registers the tables)
from persistence.migrate import for_this_database

connectable = context.config.attributes.get("connection")


def run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=SQLModel.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
        include_object=for_this_database(connection.dialect.name),  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


if connectable is not None:
    run(connectable)
else:
    with db.engine().connect() as connection:
        run(connection)
        connection.commit()
