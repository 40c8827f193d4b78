"""``billing catalog apply | diff | show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, count, err, fail, out
from domain.catalog import Catalog
from domain.validation import Invalid
from scheduler.scenario import ScenarioError, read_document
from services import catalog as catalog_service
from services import clock
from services.operator import catalog as catalog_ops

app = typer.Typer(help="Entities, meters, plans (versioned) and customers.",
                  no_args_is_help=True)
SECTIONS = ("taxes", "entities", "meters", "plans", "customers")
FILE = typer.Argument(help="YAML or JSON: entities, meters, plans, customers (a scenario's "
                           "catalog shape).")


def _read(file: Path) -> dict[str, Any]:
    try:
        document = read_document(file)
        if not isinstance(document, dict):
            raise Invalid("", "must be a mapping with entities, meters, plans and customers")
        unknown = sorted(str(k) for k in document if k not in SECTIONS)
        if unknown:
            raise Invalid(unknown[0], "is not a catalog section")
    except ScenarioError as exc:
        fail(str(exc))
    except Invalid as exc:
        fail(f"{file}: {exc}")
    return document


def _parse(file: Path, document: dict[str, Any]) -> Catalog:
    try:
        return catalog_ops.parse(document)
    except Invalid as exc:
        fail(f"{file}: {exc}")


@app.command("apply")
def apply(file: Annotated[Path, FILE]) -> None:
    """Create or update the catalog items in FILE (items not named are left alone). A
    changed plan becomes a new version; existing subscriptions keep theirs. A change that
    would move an issued period or re-bill usage refuses the whole file."""
    document = _read(file)
    connect()
    catalog = _parse(file, document)
    try:
        changes = catalog_ops.apply(catalog, clock.now())
    except catalog_service.CatalogRefused as exc:
        for change in exc.diff.refused[1:]:
            err.print(f"[red]refused:[/] {escape(f'{file}: {change.path}: {change.detail}')}",
                      highlight=False, soft_wrap=True)
        fail(f"{file}: {exc.diff.refused[0].path}: {exc.diff.refused[0].detail}", code=1)
    for change in changes.changes:
        if change.action != catalog_service.UNCHANGED:
            err.print(f"  {escape(change.line())}", highlight=False, soft_wrap=True)
    err.print(f"[green]✓[/] applied: {changes.count('new')} new, {changes.count('changed')} "
              f"changed, {changes.count('unchanged')} unchanged", highlight=False)


@app.command("diff")
def diff(
    file: Annotated[Path, FILE],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What `apply` would change, item by item (per plan version), without changing it."""
    document = _read(file)
    connect()
    catalog = _parse(file, document)
    changes = catalog_ops.diff(catalog)
    if as_json:
        out.print_json(json.dumps([c.as_dict() for c in changes.changes]))
        return
    colours = {"new": "green", "changed": "yellow", "refused": "red", "unchanged": "dim"}
    for change in changes.changes:
        out.print(f"[{colours[change.action]}]{change.line()}[/]", highlight=False,
                  soft_wrap=True)
    verdict = (f"[red]{len(changes.refused)} refused: `apply` would change nothing[/]"
               if changes.refused else "[green]`apply` would apply all of it[/]")
    out.print(verdict)


@app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The stored catalog: entities, meters, every plan version with its subscriptions,
    customers."""
    connect()
    stored = catalog_ops.stored()
    entities, meters, versions = stored.entities, stored.meters, stored.versions
    on_version, customers = stored.on_version, stored.customers
    if as_json:
        out.print_json(json.dumps({
            "entities": [{"id": e.id, "timezone": e.timezone,
                          "invoice_prefix": e.invoice_prefix} for e in entities],
            "meters": [{"id": m.id, "aggregation": m.aggregation.value, "property": m.property}
                       for m in meters.values()],
            "plans": [{**v.definition, "version": v.version,
                       "subscriptions": on_version.get((v.plan_id, v.version), 0)}
                      for v in versions],
            "customers": [{"id": c.id, "entity": c.entity, "draft_invoices": c.draft_invoices,
                           "email": c.email} for c in customers.values()],
        }))
        return
    table = Table(title=count(len(entities), "entity", "entities"), title_justify="left")
    for name in ("id", "time zone", "invoice prefix", "delivery"):
        table.add_column(name)
    for e in entities:
        table.add_row(e.id, e.timezone, e.invoice_prefix,
                      e.delivery.channel if e.delivery else "default")
    out.print(table)
    table = Table(title=count(len(meters), "meter"), title_justify="left")
    for name in ("id", "aggregation", "property"):
        table.add_column(name)
    for m in sorted(meters.values(), key=lambda m: m.id):
        table.add_row(m.id, m.aggregation.value, m.property or "")
    out.print(table)
    table = Table(title=count(len(versions), "plan version"), title_justify="left")
    for name in ("plan", "version", "currency", "interval", "charges", "subscriptions"):
        table.add_column(name, justify="right" if name in ("version", "subscriptions")
                         else "left")
    for v in versions:
        charges = ", ".join(str(c["id"]) for c in v.definition.get("charges", []))
        table.add_row(v.plan_id, str(v.version), v.currency, v.interval, charges,
                      str(on_version.get((v.plan_id, v.version), 0)))
    out.print(table)
    out.print(f"{count(len(customers), 'customer')} (`billing customers list`)")
