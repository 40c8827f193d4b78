"""``billing catalog apply FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import connect, err, fail
from domain.catalog import parse_catalog
from domain.validation import Invalid
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from scheduler.scenario import ScenarioError, read_document

app = typer.Typer(help="Entities, meters, plans and customers.", no_args_is_help=True)


@app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: entities, meters, plans, "
                                               "customers (a scenario's catalog shape).")],
) -> None:
    """Create or update the catalog items in FILE (items not named are left alone)."""
    try:
        document = read_document(file)
        if not isinstance(document, dict):
            raise Invalid("", "must be a mapping with entities, meters, plans and customers")
        unknown = sorted(set(document) - {"entities", "meters", "plans", "customers"})
        if unknown:
            raise Invalid(unknown[0], "is not a catalog section")
    except ScenarioError as exc:
        fail(str(exc))
    except Invalid as exc:
        fail(f"{file}: {exc}")
    connect()
    with unit_of_work() as session:
        try:
            catalog = parse_catalog(document, known=catalog_repo.stored(session))
        except Invalid as exc:
            fail(f"{file}: {exc}")
        catalog_repo.apply_catalog(session, catalog)
    err.print(
        f"[green]✓[/] applied {len(catalog.entities)} entities, {len(catalog.meters)} meters, "
        f"{len(catalog.plans)} plans, {len(catalog.customers)} customers", highlight=False)
