"""``billing credits``: prepaid credit grants (SPEC §12) — grant, list, void, balance."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, err, fail, out, refusal
from domain.documents import grant_document
from domain.money import format_money
from domain.validation import Invalid
from services import clock
from services import credits as credits_service
from services.commands import Outcome, run_command

app = typer.Typer(help="Prepaid credits: grant, list, void, balance.", no_args_is_help=True)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _done(outcome: Outcome, as_json: bool, grant_id: str) -> None:
    if outcome.status == "refused":
        refusal(outcome)
    if as_json:
        view = credits_service.grant(grant_id, clock.now())
        out.print_json(json.dumps(view.document() if view else {"id": grant_id}))
        return
    err.print(f"[green]✓[/] {outcome.status}: {escape(outcome.detail)}", highlight=False,
              soft_wrap=True)


@app.command("grant")
def grant(
    customer: Annotated[str, typer.Argument(help="Who receives the credit.")],
    amount: Annotated[str, typer.Argument(help="How much, e.g. 100.00.")],
    currency: Annotated[str, typer.Argument(help="ISO 4217, e.g. USD.")],
    grant_id: Annotated[str, typer.Option("--id", help="The grant's id (unique; not "
                                                       "beginning with credit-).")],
    expires_at: Annotated[str | None, typer.Option(
        "--expires-at", help="When what is left expires: an instant with an offset.")] = None,
    priority: Annotated[int | None, typer.Option(
        "--priority", help="0-100, lower is used first (default 50).")] = None,
    as_json: JSON = False,
) -> None:
    """Grant CUSTOMER prepaid credit of AMOUNT CURRENCY, usable from the next invoice
    sent."""
    connect()
    request = {"id": grant_id, "customer": customer, "currency": currency, "amount": amount,
               "expires_at": expires_at, "priority": priority}
    outcome = run_command("grant_credits",
                          lambda s, now: credits_service.do_grant(s, now, request),
                          grant=grant_id)
    _done(outcome, as_json, grant_id)


@app.command("void")
def void(grant_id: Annotated[str, typer.Argument(help="The grant's id.")],
         as_json: JSON = False) -> None:
    """Void a grant: it pays nothing sent from now on; what it paid stays paid."""
    connect()
    outcome = run_command("void_credits",
                          lambda s, now: credits_service.do_void(s, now, grant_id),
                          grant=grant_id)
    _done(outcome, as_json, grant_id)


@app.command("list")
def list_(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's."
                                                 )] = None,
    as_json: JSON = False,
) -> None:
    """Grants with their ledger now: used, voided, expired and remaining."""
    connect()
    try:
        views = credits_service.grants(clock.now(), customer=customer)
    except Invalid as exc:
        fail(str(exc), code=1)
    if as_json:
        out.print_json(json.dumps([v.document() for v in views]))
        return
    table = Table(title=f"{len(views)} credit grant{'s' * (len(views) != 1)}",
                  title_justify="left")
    for name in ("id", "customer", "amount", "used", "voided", "expired", "remaining",
                 "priority", "expires (UTC)"):
        table.add_column(name, justify="right" if name in (
            "amount", "used", "voided", "expired", "remaining", "priority") else "left")
    for v in views:
        d = grant_document(v.grant, v.ledger)
        table.add_row(escape(v.grant.id), escape(v.grant.customer),
                      f"{d['amount']} {v.grant.currency}", d["used"], d["voided"],
                      d["expired"], d["remaining"], str(v.grant.priority),
                      f"{v.grant.expires_at:%Y-%m-%d %H:%M}" if v.grant.expires_at else "—")
    out.print(table)


@app.command("balance")
def balance(customer: Annotated[str, typer.Argument(help="The customer.")],
            as_json: JSON = False) -> None:
    """A customer's prepaid credit balance per currency, now."""
    connect()
    try:
        balances = credits_service.balance(customer, clock.now())
    except Invalid as exc:
        fail(str(exc), code=1)
    if as_json:
        out.print_json(json.dumps({"customer": customer, "balances": [
            {"currency": c, "balance": format_money(b, c)} for c, b in balances.items()]}))
        return
    if not balances:
        out.print(f"{escape(customer)}: no prepaid credit", highlight=False)
    for currency, amount in balances.items():
        out.print(f"{escape(customer)}: {format_money(amount, currency)} {currency}",
                  highlight=False)
