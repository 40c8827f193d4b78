"""``billing subscriptions``: list them, and show one: status, plan version, start, end,
the next invoice's boundary and the bill run that will issue it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, fail, out
from services import clock
from services import subscriptions as subscriptions_service
from services.subscriptions import SubscriptionView

app = typer.Typer(help="Subscriptions: list, show (with the next bill run).",
                  no_args_is_help=True)


def _when(instant: datetime | None) -> str:
    return "—" if instant is None else f"{instant:%Y-%m-%d %H:%M} UTC"


def subscription_json(v: SubscriptionView) -> dict[str, Any]:
    return {"id": v.id, "customer": v.customer, "entity": v.entity, "plan": v.plan,
            "plan_version": v.plan_version, "status": v.status, "start": v.start.isoformat(),
            "end": v.end.isoformat() if v.end else None,
            "next_boundary": v.next_boundary.isoformat() if v.next_boundary else None,
            "next_run": v.next_run.strftime("%Y-%m-%dT%H:%M:%SZ") if v.next_run else None,
            "discount": v.discount, "note": v.note}


def subscriptions_table(views: list[SubscriptionView], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("subscription", "customer", "plan", "status", "start", "end",
                 "next boundary", "next run"):
        table.add_column(name)
    for v in views:
        colour = {"active": "green", "cancelled": "yellow", "ended": "dim"}.get(v.status, "cyan")
        table.add_row(v.id, v.customer, f"{v.plan} v{v.plan_version}",
                      f"[{colour}]{v.status}[/]", v.start.isoformat(),
                      v.end.isoformat() if v.end else "—",
                      v.next_boundary.isoformat() if v.next_boundary else "—",
                      "overdue: next tick" if v.next_boundary and not v.next_run
                      else _when(v.next_run))
    return table


@app.command("list")
def list_(
    customer: Annotated[str | None, typer.Option(help="Only this customer's.")] = None,
    entity: Annotated[str | None, typer.Option(help="Only this entity's.")] = None,
    limit: Annotated[int, typer.Option(help="How many, by id.", min=1,
                                       max=100_000)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List subscriptions with their status, next boundary and next bill run."""
    connect()
    views = subscriptions_service.views(clock.now(), customer=customer, entity=entity,
                                        limit=limit)
    if as_json:
        out.print_json(json.dumps([subscription_json(v) for v in views]))
        return
    out.print(subscriptions_table(views, f"{len(views)} subscriptions"))


@app.command("show")
def show(
    subscription: Annotated[str, typer.Argument(help="The subscription id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One subscription: where it stands, and when its next invoice is issued."""
    connect()
    found = subscriptions_service.views(clock.now(), ids=[subscription])
    if not found:
        fail(f"no subscription {subscription!r} (see `billing subscriptions list`)", code=1)
    v = found[0]
    if as_json:
        out.print_json(json.dumps(subscription_json(v)))
        return
    discount = "—"
    if v.discount:
        amount = (f"{v.discount['percent']} %" if "percent" in v.discount
                  else f"{v.discount.get('amount')} off")
        cycles = v.discount.get("cycles")
        discount = amount + (f" for the first {cycles} invoices" if cycles else "")
    rows = [("customer", v.customer), ("entity", v.entity),
            ("plan", f"{v.plan} (version {v.plan_version})"), ("status", v.status),
            ("start", v.start.isoformat()), ("end", v.end.isoformat() if v.end else "—"),
            ("discount", discount),
            ("next invoice", v.next_boundary.isoformat() if v.next_boundary else "— (ended)"),
            ("issued by the run of", "the scheduler's next tick (overdue)"
             if v.next_boundary and not v.next_run else _when(v.next_run)),
            ("created", _when(v.created_at))]
    table = Table(title=f"subscription {v.id}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    if v.note:
        out.print(f"note: {escape(v.note)}", highlight=False, soft_wrap=True)
