"""Schema migrations (Alembic), run by ``billing db upgrade`` and the scheduler at start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from persistence import db


def for_this_database(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object``: leave out what the models declare for another database
    only (``Index(...).ddl_if(dialect="postgresql")``)."""

    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any
                ) -> bool:
        only = getattr(obj, "_ddl_if", None)
        return only is None or only.dialect is None or only.dialect == dialect

    return include


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "persistence:migrations")
    cfg.set_main_option("sqlalchemy.url", db.engine().url.render_as_string(hide_password=False))
    return cfg


def upgrade(revision: str = "head") -> None:
    """Create or migrate the configured database to ``revision``.

    A database whose tables were made by ``db.create_schema()`` (the models as they are, as
    replays and tests do) has no Alembic version yet: it is at head, and is stamped so."""
    with db.engine().begin() as connection:
        cfg = config()
        cfg.attributes["connection"] = connection
        names = set(inspect(connection).get_table_names())
        if "alembic_version" not in names and "invoices" in names:
            command.stamp(cfg, "head")
        command.upgrade(cfg, revision)


def state() -> tuple[str | None, str]:
    """(the database's revision — None when it has no billing tables —, the code's head)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(config()).get_current_head()
    assert head is not None
    with db.engine().connect() as connection:
        names = set(inspect(connection).get_table_names())
        if "invoices" not in names:
            return None, head
        if "alembic_version" not in names:
            return head, head  # made by create_schema(): the models as they are
        return MigrationContext.configure(connection).get_current_revision(), head


def revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    command.revision(config(), message=message, autogenerate=True)
