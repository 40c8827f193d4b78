"""``billing invoices``: list, show, release, regenerate, preview."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, err, fail, instant, out, refusal, writable
from cli.demo import invoice_table
from domain.documents import InvoiceRecord, pending_document, preview_document
from domain.money import format_money
from domain.validation import Invalid
from services import clock, documents, invoice_events, payments
from services import invoices as invoices_service
from services.commands import Outcome, run_command
from services.deliveries import deliver_now
from services.delivery import format_amount
from services.invoicing import do_regenerate, do_release, pending, preview

app = typer.Typer(help="Invoices: list, show, release, regenerate, preview.",
                  no_args_is_help=True)


def find(reference: str) -> InvoiceRecord:
    """An invoice by its public reference: number (EU-000001) or SUBSCRIPTION@BOUNDARY."""
    try:
        found = invoices_service.find(reference)
    except Invalid as exc:
        fail(f"{reference!r}: {exc.message}")
    if found is None:
        fail(f"no invoice {reference!r} ({invoices_service.HOW}; see `billing invoices "
             "list`)", code=1)
    return found


def draft_of(reference: str, boundary: str | None) -> tuple[str, str]:
    """(subscription, boundary) named by REF, or by the older SUBSCRIPTION BOUNDARY pair."""
    if boundary is not None:
        return reference, boundary
    record = find(reference)
    return record.subscription, record.boundary.isoformat()


REF = typer.Argument(help="The invoice: its number, or SUBSCRIPTION@YYYY-MM-DD.")
OLD_BOUNDARY = typer.Argument(help="(Older form: REF is the subscription and this its "
                                   "boundary.)", show_default=False)


@app.command("list")
def list_(
    entity: Annotated[str | None, typer.Option(help="Only this entity's.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's.")] = None,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription's.")] = None,
    status: Annotated[str | None, typer.Option(help="draft or sent.")] = None,
    open_: Annotated[bool, typer.Option(
        "--open", help="Only those still to be paid (open or partly paid).")] = False,
    overdue: Annotated[bool, typer.Option(
        "--overdue", help="Only those open past their due date.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List invoices, oldest boundary first per subscription, with their payment status
    and due date."""
    if status is not None and status not in invoices_service.STATUSES:
        fail(f"--status: must be draft or sent, got {status!r}")
    connect()
    records = invoices_service.listing(entity=entity, customer=customer,
                                       subscription=subscription, status=status)
    now = clock.now()
    shown = {r.id: invoices_service.document(r, now) for r in records}
    if open_ or overdue:
        records = [r for r in records if r.payment_status in ("open", "partially_paid")
                   and (not overdue or shown[r.id]["overdue"])]
    if as_json:
        out.print_json(json.dumps([{
            "reference": r.reference, "number": r.number, "entity": r.entity,
            "customer": r.customer, "subscription": r.subscription,
            "boundary": r.boundary.isoformat(), "issued_at": f"{r.issued_at:%Y-%m-%dT%H:%M:%SZ}",
            "status": r.status, "final": r.final, "currency": r.currency,
            "total": format_money(r.total, r.currency),
            "amount_due": format_money(r.amount_due, r.currency),
            "payment_status": r.payment_status, "due_date": shown[r.id]["due_date"],
            "overdue": shown[r.id]["overdue"], "paid": shown[r.id]["paid"]}
            for r in records]))
        return
    table = Table(title=f"{len(records)} invoice{'s' * (len(records) != 1)}",
                  title_justify="left")
    for name in ("reference", "customer", "subscription", "boundary", "issued (UTC)", "status",
                 "due"):
        table.add_column(name)
    table.add_column("total", justify="right")
    table.add_column("to pay", justify="right")
    for r in records:
        state = r.status if r.payment_status is None else r.payment_status.replace("_", " ")
        if shown[r.id]["overdue"]:
            state = "[red]overdue[/]"
        table.add_row(r.reference, r.customer, r.subscription, r.boundary.isoformat(),
                      f"{r.issued_at:%Y-%m-%d %H:%M}", state + (", final" if r.final else ""),
                      r.due_date.isoformat() if r.due_date else "—",
                      format_amount(r.total, r.currency),
                      format_amount(max(r.amount_due - r.paid, 0 * r.paid), r.currency)
                      if r.payment_status in ("open", "partially_paid") else "—")
    out.print(table)


@app.command("show")
def show(
    reference: Annotated[str, REF],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
    html: Annotated[bool, typer.Option(
        "--html", help="The readable invoice (HTML), to stdout or --out.")] = False,
    pdf: Annotated[bool, typer.Option(
        "--pdf", help="The invoice as a PDF, to --out (the same document).")] = False,
    out_file: Annotated[Path | None, typer.Option(
        "--out", "-o", help="With --html or --pdf: write it to this file.")] = None,
) -> None:
    """Show one invoice with its lines: due date, payment status and payments included."""
    writable(out_file)
    if pdf and out_file is None:
        fail("--pdf needs --out FILE")
    connect()
    record = find(reference)
    document = invoices_service.document(record, clock.now())
    if html or pdf:
        if pdf:
            out_file_path = out_file
            assert out_file_path is not None
            try:
                out_file_path.write_bytes(documents.invoice_pdf(record))
            except documents.PdfUnavailable as exc:
                fail(str(exc), code=1)
            err.print(f"[green]✓[/] {record.reference} written to {out_file_path}",
                      highlight=False)
            return
        page = documents.html(record)
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
                                invoices_service.display_units(record.subscription),
                                invoices_service.timezone_of(record.entity)))


def _command(actor: str, outcome_of: Outcome) -> None:
    if outcome_of.status == "refused":
        refusal(outcome_of)
    err.print(f"[green]✓[/] {actor}: {outcome_of.status} — {escape(outcome_of.detail)}",
              highlight=False, soft_wrap=True)


@app.command("release")
def release(reference: Annotated[str, REF],
            boundary: Annotated[str | None, OLD_BOUNDARY] = None,
            as_json: Annotated[bool, typer.Option(
                "--json", help="Print the invoice's JSON once sent.")] = False) -> None:
    """Send a draft invoice (it gets the entity's next number)."""
    connect()
    subscription, boundary = draft_of(reference, boundary)
    outcome = run_command(
        "release_invoice", lambda s, now: do_release(s, now, subscription, boundary),
        subscription=subscription, boundary=boundary)
    _command("release", outcome)
    for invoice_id in outcome.deliver:
        _command("deliver", deliver_now(invoice_id))
    if as_json:
        _print_document(f"{subscription}@{boundary}")


@app.command("regenerate")
def regenerate(reference: Annotated[str, REF],
               boundary: Annotated[str | None, OLD_BOUNDARY] = None,
               as_json: Annotated[bool, typer.Option(
                   "--json", help="Print the recomputed invoice's JSON.")] = False) -> None:
    """Recompute a draft invoice from the data as it is now (late usage included)."""
    connect()
    subscription, boundary = draft_of(reference, boundary)
    _command("regenerate", run_command(
        "regenerate_invoice", lambda s, now: do_regenerate(s, now, subscription, boundary),
        subscription=subscription, boundary=boundary))
    if as_json:
        _print_document(f"{subscription}@{boundary}")


def _print_document(reference: str) -> None:
    out.print_json(json.dumps(invoices_service.document(find(reference), clock.now())))


@app.command("preview")
def preview_command(
    subscription: str,
    at: Annotated[str | None, typer.Option("--at", help="An instant (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimated charges: first the invoices that are due but not issued yet (their
    boundary passed, the next bill run issues them: "pending"), then the next invoice if
    usage stopped now (SPEC §10). Nothing is stored."""
    connect()
    when = instant(at, "--at") or clock.now()
    try:
        waiting = pending(subscription, when, latest=at is None)
    except Invalid as exc:
        fail(str(exc), code=1)
    why = ""
    try:
        invoice = preview(subscription, when, latest=at is None)
    except Invalid as exc:
        if not waiting:
            fail(str(exc), code=1)
        invoice, why = None, exc.message
    document = preview_document(invoice, subscription, when) if invoice else None
    shown = [pending_document(p.invoice, subscription) for p in waiting]
    if as_json:
        out.print_json(json.dumps({**(document or {"subscription": subscription,
                                                   "at": f"{when:%Y-%m-%dT%H:%M:%SZ}",
                                                   "estimate": None, "note": why}),
                                   "pending": shown}))
        return
    units = invoices_service.display_units(subscription)
    zone = invoices_service.timezone_of(invoices_service.entity_of(subscription) or "")
    for item in shown:
        out.print(invoice_table({**item, "number": None, "customer": "",
                                 "issued_at": ""}, units, zone))
    if document is None:
        out.print(f"no estimate of an open period: {escape(why)}", highlight=False)
        return
    out.print(invoice_table({**document, "number": None, "customer": "", "status": "estimate",
                             "issued_at": ""}, units, zone))


def _payment_command(kind: str, reference: str, handler: Any, as_json: bool) -> None:
    record = find(reference)
    outcome = run_command(kind, lambda s, now: handler(s, now, record.id), invoice=record.id)
    if outcome.status == "refused":
        refusal(outcome)
    for event_id in outcome.events:  # one attempt here; the scheduler's sweep retries
        invoice_events.deliver(event_id, clock.now())
    if as_json:
        now_record = invoices_service.by_id(record.id)
        assert now_record is not None
        out.print_json(json.dumps(invoices_service.document(now_record, clock.now())))
        return
    err.print(f"[green]✓[/] {outcome.status}: {escape(outcome.detail)}", highlight=False,
              soft_wrap=True)


@app.command("pay")
def pay(
    reference: Annotated[str, REF],
    amount: Annotated[str, typer.Argument(help="What was received, e.g. 120.00.")],
    currency: Annotated[str, typer.Argument(help="ISO 4217: the invoice's currency.")],
    paid_on: Annotated[str, typer.Option("--date", help="The day it was paid, YYYY-MM-DD.")],
    method: Annotated[str, typer.Option(help="bank_transfer, card, direct_debit, cash, "
                                             "check or other.")] = "other",
    reference_text: Annotated[str | None, typer.Option(
        "--reference", help="The payment's own reference (a bank transfer's, …).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the invoice's JSON.")] = False,
) -> None:
    """Record a payment of a sent invoice: never more than is still due."""
    connect()
    data = {"amount": amount, "currency": currency, "date": paid_on, "method": method,
            "reference": reference_text}
    _payment_command("record_payment", reference,
                     lambda s, now, invoice_id: payments.do_pay(s, now, invoice_id, data),
                     as_json)


@app.command("void")
def void(reference: Annotated[str, REF],
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Void a sent invoice nobody paid: its number stays used, it shows void."""
    connect()
    _payment_command("void_invoice", reference, payments.do_void, as_json)


@app.command("mark-uncollectible")
def mark_uncollectible(
        reference: Annotated[str, REF],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Give up collecting a sent invoice (a later payment still counts)."""
    connect()
    _payment_command("mark_uncollectible", reference, payments.do_mark_uncollectible, as_json)

