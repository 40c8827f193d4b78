"""``billing customers``: list them, and show one with its subscriptions and invoices."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.common import connect, fail, out
from cli.subscriptions import subscription_json, subscriptions_table
from services import clock
from services import customers as customers_service
from services import invoices as invoices_service
from services import subscriptions as subscriptions_service
from services.delivery import format_amount

app = typer.Typer(help="Customers: list, show.", no_args_is_help=True)


@app.command("list")
def list_(
    entity: Annotated[str | None, typer.Option(help="Only this entity's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List customers with their entity, draft setting and counts."""
    connect()
    rows = customers_service.listing(entity=entity)
    if as_json:
        out.print_json(json.dumps([vars(c) for c in rows]))
        return
    table = Table(title=f"{len(rows)} customers", title_justify="left")
    for name in ("customer", "entity", "email", "drafts", "subscriptions", "invoices"):
        table.add_column(name, justify="right" if name in ("subscriptions", "invoices")
                         else "left")
    for c in rows:
        table.add_row(c.id, c.entity, c.email or "—", "yes" if c.draft_invoices else "no",
                      str(c.subscriptions), str(c.invoices))
    out.print(table)


@app.command("show")
def show(
    customer: Annotated[str, typer.Argument(help="The customer id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One customer: its settings, its subscriptions (with the next run) and invoices."""
    connect()
    found = customers_service.get(customer)
    if found is None:
        fail(f"no customer {customer!r} (see `billing customers list`)", code=1)
    now = clock.now()
    subs = subscriptions_service.views(now, customer=customer)
    invoices = invoices_service.listing(customer=customer)
    if as_json:
        out.print_json(json.dumps({
            **vars(found),
            "subscriptions": [subscription_json(v) for v in subs],
            "invoices": [{"reference": r.reference, "subscription": r.subscription,
                          "boundary": r.boundary.isoformat(), "status": r.status,
                          "currency": r.currency, "total": str(r.total)} for r in invoices],
        }))
        return
    out.print(f"[bold]{found.id}[/]  entity {found.entity} · email {found.email or '—'} · "
              f"drafts {'yes' if found.draft_invoices else 'no'}", highlight=False)
    out.print(subscriptions_table(subs, f"{len(subs)} subscriptions"))
    table = Table(title=f"{len(invoices)} invoices", title_justify="left")
    for name in ("reference", "subscription", "boundary", "status"):
        table.add_column(name)
    table.add_column("total", justify="right")
    for r in invoices:
        table.add_row(r.reference, r.subscription, r.boundary.isoformat(),
                      r.status + (", final" if r.final else ""),
                      format_amount(r.total, r.currency))
    out.print(table)
