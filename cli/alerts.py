"""``billing alerts``: spend and usage alerts (docs/billing-rules.md §18) — create, list,
delete, and the ``alert.triggered`` events they fired."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, err, fail, out
from services import alerts as alerts_service
from services import clock
from services.commands import run_command
from services.settings import settings
from workers.actors import enqueue_alert_events

app = typer.Typer(help="Spend and usage alerts: create, list, delete, events.",
                  no_args_is_help=True)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("create")
def create(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (unique).")],
    customer: Annotated[str, typer.Argument(help="Whose usage or balance it watches.")],
    kind: Annotated[str, typer.Argument(help="usage_amount, usage_quantity or "
                                             "credit_balance.")],
    thresholds: Annotated[list[str], typer.Argument(help="Increasing, > 0, e.g. 50.00 "
                                                         "100.00.")],
    subscription: Annotated[str | None, typer.Option(
        "--subscription", help="One subscription (default: each of the customer's).")] = None,
    meter: Annotated[str | None, typer.Option("--meter", help="usage_quantity: the meter."
                                              )] = None,
    currency: Annotated[str | None, typer.Option(
        "--currency", help="credit_balance: the currency of the balance.")] = None,
    every: Annotated[str | None, typer.Option(
        "--every", help="A recurring step after the last threshold, e.g. 100.00.")] = None,
    as_json: JSON = False,
) -> None:
    """Create an alert; it fires an alert.triggered webhook when a threshold is crossed,
    once per threshold per period (a balance: when it goes below)."""
    connect()
    request = {k: v for k, v in {
        "id": alert_id, "customer": customer, "kind": kind, "thresholds": thresholds,
        "subscription": subscription, "meter": meter, "currency": currency,
        "recurring_step": every}.items() if v is not None}
    outcome = run_command("create_alert",
                          lambda s, now: alerts_service.do_create(s, now, request),
                          alert=alert_id)
    if outcome.status == "refused":
        fail(outcome.detail, code=1)
    fired = alerts_service.evaluate_customers([customer], clock.now())
    if fired and settings().broker_url:  # else the scheduler sends them (lost enqueues)
        enqueue_alert_events(fired)
    if as_json:
        out.print_json(json.dumps(alerts_service.get(alert_id)))
        return
    err.print(f"[green]✓[/] {escape(outcome.detail)}"
              + (f"; fired at once ({len(fired)} event{'s' * (len(fired) != 1)})"
                 if fired else ""), highlight=False, soft_wrap=True)


@app.command("list")
def list_(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's."
                                                 )] = None,
    subscription: Annotated[str | None, typer.Option(
        "--subscription", help="Only those on this subscription.")] = None,
    as_json: JSON = False,
) -> None:
    """The live alerts."""
    connect()
    found = alerts_service.listing(customer=customer, subscription=subscription)
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table(title=f"{len(found)} alert{'s' * (len(found) != 1)}", title_justify="left")
    for name in ("id", "customer", "subscription", "kind", "of", "thresholds", "every"):
        table.add_column(name)
    for a in found:
        table.add_row(escape(a["id"]), escape(a["customer"]), escape(a["subscription"] or "all"),
                      a["kind"], escape(a["meter"] or a["currency"] or "amount"),
                      ", ".join(a["thresholds"]), a["recurring_step"] or "—")
    out.print(table)


@app.command("delete")
def delete(alert_id: Annotated[str, typer.Argument(help="The alert's id.")],
           as_json: JSON = False) -> None:
    """Delete an alert: it fires nothing more."""
    connect()
    outcome = run_command("delete_alert",
                          lambda s, now: alerts_service.do_delete(s, now, alert_id),
                          alert=alert_id)
    if outcome.status == "refused":
        fail(outcome.detail, code=1)
    if as_json:
        out.print_json(json.dumps({"id": alert_id, "deleted": True}))
        return
    err.print(f"[green]✓[/] {escape(outcome.detail)}", highlight=False, soft_wrap=True)


@app.command("events")
def events(
    alert_id: Annotated[str | None, typer.Option("--alert", help="Only this alert's.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's."
                                                 )] = None,
    as_json: JSON = False,
) -> None:
    """The alert.triggered events, oldest first, with their delivery status."""
    connect()
    found = alerts_service.events(alert_id=alert_id, customer=customer)
    documents = [{"id": f"alert_evt_{e.id}", "status": e.status, "attempts": e.attempts,
                  **e.payload} for e in found]
    if as_json:
        out.print_json(json.dumps(documents))
        return
    table = Table(title=f"{len(found)} alert event{'s' * (len(found) != 1)}",
                  title_justify="left")
    for name in ("id", "alert", "subscription", "thresholds", "value", "at", "status"):
        table.add_column(name)
    for d in documents:
        table.add_row(d["id"], escape(d["alert"]), escape(d.get("subscription") or "—"),
                      ", ".join(d["thresholds"]), d["value"], d["evaluated_at"], d["status"])
    out.print(table)
