"""``billing subscriptions``: list them, show one (status, plan history, start, end, the
next invoice's boundary and the bill run that will issue it), change its plan."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, count, err, fail, out, refusal
from cli.demo import invoice_table
from domain.documents import preview_document
from services import clock, plan_changes
from services import subscriptions as subscriptions_service
from services.commands import Outcome, run_command
from services.subscriptions import SubscriptionView

app = typer.Typer(help="Subscriptions: list, show (with the next bill run), create, cancel, "
                       "uncancel, change-plan.", no_args_is_help=True)


def _when(instant: datetime | None) -> str:
    return "—" if instant is None else f"{instant:%Y-%m-%d %H:%M} UTC"


def subscription_json(v: SubscriptionView) -> dict[str, Any]:
    return {"id": v.id, "customer": v.customer, "entity": v.entity, "plan": v.plan,
            "plan_version": v.plan_version, "status": v.status, "start": v.start.isoformat(),
            "end": v.end.isoformat() if v.end else None,
            "next_boundary": v.next_boundary.isoformat() if v.next_boundary else None,
            "next_run": v.next_run.strftime("%Y-%m-%dT%H:%M:%SZ") if v.next_run else None,
            "discount": v.discount, "note": v.note}


def state(v: SubscriptionView) -> str:
    """Its status in words: a cancelled subscription in its grace period says when it ends."""
    if v.status == "cancelled" and v.end is not None:
        return f"ends {v.end.isoformat()}"
    if v.status == "scheduled":
        return f"starts {v.start.isoformat()}"
    return v.status


def subscriptions_table(views: list[SubscriptionView], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("subscription", "customer", "plan", "status", "start", "end",
                 "next boundary", "next run"):
        table.add_column(name)
    for v in views:
        colour = {"active": "green", "cancelled": "yellow", "ended": "dim"}.get(v.status, "cyan")
        table.add_row(v.id, v.customer, f"{v.plan} v{v.plan_version}",
                      f"[{colour}]{state(v)}[/]", v.start.isoformat(),
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
    out.print(subscriptions_table(views, count(len(views), "subscription")))


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
        out.print_json(json.dumps({**subscription_json(v), "plans": [
            {"plan": p.plan, "version": p.version, "from": p.since.isoformat()}
            for p in plan_changes.history_of(v.id)]}))
        return
    discount = "—"
    if v.discount:
        amount = (f"{v.discount['percent']} %" if "percent" in v.discount
                  else f"{v.discount.get('amount')} off")
        cycles = v.discount.get("cycles")
        discount = amount + (f" for the first {cycles} invoices" if cycles else "")
    rows = [("customer", v.customer), ("entity", v.entity),
            ("plan", f"{v.plan} (version {v.plan_version})"), ("status", state(v)),
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
    history = plan_changes.history_of(v.id)
    if len(history) > 1:
        out.print("plans: " + " → ".join(f"{p.plan} v{p.version} from {p.since}"
                                         for p in history), highlight=False, soft_wrap=True)
    if v.note:
        out.print(f"note: {escape(v.note)}", highlight=False, soft_wrap=True)


@app.command("change-plan")
def change_plan(
    subscription: Annotated[str, typer.Argument(help="The subscription id.")],
    plan: Annotated[str, typer.Argument(help="The plan to move to (its latest version).")],
    since: Annotated[str, typer.Option("--from", help="The local date it is in force from: "
                                       "in the current period, at the latest the next "
                                       "boundary.")],
    preview: Annotated[bool, typer.Option(
        "--preview", help="Show what the next invoice would carry; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Move a subscription to another plan from a date (SPEC §14): usage is billed per
    segment, the fee billed in advance is prorated by days on the next invoice. A change on
    the latest change date replaces it, or calls it off."""
    connect()
    if preview:
        found = plan_changes.preview_change(subscription, plan, since, clock.now())
        if found.outcome.status == "refused":
            refusal(found.outcome)
        if as_json:
            out.print_json(json.dumps({
                "change": found.outcome.detail,
                "estimate": preview_document(found.invoice, subscription, clock.now())
                if found.invoice else None}))
            return
        err.print(f"[bold]if made:[/] {escape(found.outcome.detail)} — nothing was changed",
                  highlight=False, soft_wrap=True)
        if found.invoice is not None:
            out.print(invoice_table(preview_document(found.invoice, subscription,
                                                     clock.now()) | {
                "number": None, "status": "estimate", "customer": "", "issued_at": "now"}))
        return
    outcome = run_command("change_plan", lambda s, now: plan_changes.do_change_plan(
        s, now, subscription, plan, since), subscription=subscription)
    if outcome.status == "refused":
        refusal(outcome)
    if as_json:
        out.print_json(json.dumps({"outcome": outcome.status, "detail": outcome.detail,
                                   "plans": [{"plan": p.plan, "version": p.version,
                                              "from": p.since.isoformat()}
                                             for p in plan_changes.history_of(subscription)]}))
        return
    err.print(f"[green]✓[/] {escape(outcome.detail)}", highlight=False, soft_wrap=True)



def _shown(subscription: str, outcome: Outcome, as_json: bool) -> None:
    """A command's outcome: a refusal is one line (exit 1; 2 for an invalid field), else
    the subscription as it is now."""
    if outcome.status == "refused":
        refusal(outcome)
    found = subscriptions_service.views(clock.now(), ids=[subscription])
    if as_json:
        out.print_json(json.dumps({**subscription_json(found[0]), "outcome": outcome.status,
                                   "detail": outcome.detail, "plans": [
            {"plan": p.plan, "version": p.version, "from": p.since.isoformat()}
            for p in plan_changes.history_of(subscription)]} if found else None))
        return
    err.print(f"[green]✓[/] {escape(subscription)}: {outcome.status} — {escape(outcome.detail)}",
              highlight=False, soft_wrap=True)
    if found:
        out.print(subscriptions_table(found, f"subscription {subscription}"))


@app.command("create")
def create(
    subscription: Annotated[str, typer.Argument(help="The new subscription's id.")],
    customer: Annotated[str, typer.Option(help="The customer.")],
    plan: Annotated[str, typer.Option(help="The plan (its latest version).")],
    start: Annotated[str, typer.Option(help="Its first day, a local date YYYY-MM-DD.")],
    percent: Annotated[str | None, typer.Option(
        "--discount-percent", help="A discount of this percent of each invoice.")] = None,
    amount: Annotated[str | None, typer.Option(
        "--discount-amount", help="A discount of this amount off each invoice.")] = None,
    cycles: Annotated[int | None, typer.Option(
        "--discount-cycles", help="The discount's invoices (default: all).", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Subscribe a customer to a plan from a start date (what POST /v1/subscriptions
    does). A start today is invoiced by `billing bill-run ENTITY --now`, or the next run."""
    terms: dict[str, Any] = {"id": subscription, "customer": customer, "plan": plan,
                             "start": start}
    discount: dict[str, Any] = {}
    if percent is not None:
        discount["percent"] = percent
    if amount is not None:
        discount["amount"] = amount
    if cycles is not None:
        discount["cycles"] = cycles
    if discount:
        terms["discount"] = discount
    connect()
    sent = clock.now()
    outcome = run_command("subscribe", lambda s, now: subscriptions_service.do_subscribe(
        s, now, terms, sent, "cli"), subscription=subscription)
    _shown(subscription, outcome, as_json)


def _lifecycle(kind: str, subscription: str, as_json: bool) -> None:
    connect()
    sent = clock.now()
    outcome = run_command(kind, lambda s, now: subscriptions_service.do_lifecycle(
        s, now, subscription, kind, sent, "cli", keep_pending=False),
        subscription=subscription)
    _shown(subscription, outcome, as_json)


@app.command("cancel")
def cancel(subscription: Annotated[str, typer.Argument(help="The subscription id.")],
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
           ) -> None:
    """Cancel at the end of the current period: it is billed until then (its grace
    period), and a final invoice follows."""
    _lifecycle("cancel", subscription, as_json)


@app.command("uncancel")
def uncancel(subscription: Annotated[str, typer.Argument(help="The subscription id.")],
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
             ) -> None:
    """Remove a cancellation before its end."""
    _lifecycle("uncancel", subscription, as_json)
