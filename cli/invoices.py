"""``billing invoices``: list, show, release, regenerate, preview."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, err, fail, instant, out, writable
from cli.demo import invoice_table
from domain.documents import InvoiceRecord, detailed_document, preview_document
from domain.money import format_money
from domain.validation import Invalid
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from services import clock
from services import invoices as invoices_service
from services.commands import Outcome, run_command
from services.deliveries import deliver_now
from services.delivery import format_amount, render_html
from services.invoicing import do_regenerate, do_release, preview

app = typer.Typer(help="Invoices: list, show, release, regenerate, preview.",
                  no_args_is_help=True)


def find(reference: str) -> InvoiceRecord:
    """An invoice by number (EU-000001), database id, or SUBSCRIPTION@BOUNDARY."""
    try:
        found = invoices_service.find(reference)
    except Invalid as exc:
        fail(f"{reference!r}: {exc.message}")
    if found is None:
        fail(f"no invoice {reference!r} (give a number, an id or SUBSCRIPTION@YYYY-MM-DD)")
    return found


def draft_of(reference: str, boundary: str | None) -> tuple[str, str]:
    """(subscription, boundary) named by REF, or by the older SUBSCRIPTION BOUNDARY pair."""
    if boundary is not None:
        return reference, boundary
    record = find(reference)
    return record.subscription, record.boundary.isoformat()


REF = typer.Argument(help="The invoice: its number, id, or SUBSCRIPTION@YYYY-MM-DD.")
OLD_BOUNDARY = typer.Argument(help="(Older form: REF is the subscription and this its "
                                   "boundary.)", show_default=False)


@app.command("list")
def list_(
    entity: Annotated[str | None, typer.Option(help="Only this entity's.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's.")] = None,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription's.")] = None,
    status: Annotated[str | None, typer.Option(help="draft or sent.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List invoices, oldest boundary first per subscription."""
    if status is not None and status not in invoices_service.STATUSES:
        fail(f"--status: must be draft or sent, got {status!r}")
    connect()
    records = invoices_service.listing(entity=entity, customer=customer,
                                       subscription=subscription, status=status)
    if as_json:
        out.print_json(json.dumps([{
            "reference": r.reference, "id": r.id, "number": r.number, "entity": r.entity,
            "customer": r.customer, "subscription": r.subscription,
            "boundary": r.boundary.isoformat(), "issued_at": f"{r.issued_at:%Y-%m-%dT%H:%M:%SZ}",
            "status": r.status, "final": r.final, "currency": r.currency,
            "total": format_money(r.total, r.currency)} for r in records]))
        return
    table = Table(title=f"{len(records)} invoices", title_justify="left")
    for name in ("reference", "customer", "subscription", "boundary", "issued (UTC)", "status"):
        table.add_column(name)
    table.add_column("total", justify="right")
    for r in records:
        table.add_row(r.reference, r.customer, r.subscription, r.boundary.isoformat(),
                      f"{r.issued_at:%Y-%m-%d %H:%M}", r.status + (", final" if r.final else ""),
                      format_amount(r.total, r.currency))
    out.print(table)


@app.command("show")
def show(
    reference: Annotated[str, REF],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    html: Annotated[bool, typer.Option(
        "--html", help="The readable invoice (HTML), to stdout or --out.")] = False,
    out_file: Annotated[Path | None, typer.Option(
        "--out", "-o", help="With --html: write it to this file.")] = None,
) -> None:
    """Show one invoice with its lines."""
    writable(out_file)
    connect()
    record = find(reference)
    document = detailed_document(record)
    if html:
        with unit_of_work() as session:
            entity = catalog_repo.entity(session, record.entity)
        page = render_html(document,
                           timezone=entity.timezone if entity else None,
                           units=invoices_service.display_units(record.subscription))
        if out_file is None:
            sys.stdout.write(page)
        else:
            out_file.write_text(page, encoding="utf-8")
            err.print(f"[green]✓[/] {record.reference} written to {out_file}",
                      highlight=False)
        return
    if as_json:
        out.print_json(json.dumps(document))
    else:
        out.print(invoice_table(document,
                                invoices_service.display_units(record.subscription)))


def _command(actor: str, outcome_of: Outcome) -> None:
    if outcome_of.status == "refused":
        fail(outcome_of.detail, code=1)
    err.print(f"[green]✓[/] {actor}: {outcome_of.status} — {escape(outcome_of.detail)}",
              highlight=False, soft_wrap=True)


@app.command("release")
def release(reference: Annotated[str, REF],
            boundary: Annotated[str | None, OLD_BOUNDARY] = None) -> None:
    """Send a draft invoice (it gets the entity's next number)."""
    connect()
    subscription, boundary = draft_of(reference, boundary)
    outcome = run_command(
        "release_invoice", lambda s, now: do_release(s, now, subscription, boundary),
        subscription=subscription, boundary=boundary)
    _command("release", outcome)
    for invoice_id in outcome.deliver:
        _command("deliver", deliver_now(invoice_id))


@app.command("regenerate")
def regenerate(reference: Annotated[str, REF],
               boundary: Annotated[str | None, OLD_BOUNDARY] = None) -> None:
    """Recompute a draft invoice from the data as it is now (late usage included)."""
    connect()
    subscription, boundary = draft_of(reference, boundary)
    _command("regenerate", run_command(
        "regenerate_invoice", lambda s, now: do_regenerate(s, now, subscription, boundary),
        subscription=subscription, boundary=boundary))


@app.command("preview")
def preview_command(
    subscription: str,
    at: Annotated[str | None, typer.Option("--at", help="An instant (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimated charges: the next invoice if usage stopped now (SPEC §10)."""
    connect()
    when = instant(at, "--at") or clock.now()
    try:
        invoice = preview(subscription, when, latest=at is None)
    except Invalid as exc:
        fail(str(exc), code=1)
    document = preview_document(invoice, subscription, when)
    if as_json:
        out.print_json(json.dumps(document))
        return
    table = invoice_table({**document, "number": None, "customer": "", "status": "estimate",
                           "issued_at": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
                          invoices_service.display_units(subscription))
    out.print(table)
