"""``billing usage``: rejected events, and re-submitting them after a fix; late events;
folding the hourly rollups."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, count, err, fail, out
from domain.money import format_quantity
from services import clock, late, rollups
from services.operator import usage as usage_reads
from services.usage import resubmit

app = typer.Typer(help="Usage events: rejected ones and re-submission, conflicts, late ones.",
                  no_args_is_help=True)


@app.command("rejected")
def rejected(
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1,
                                       max=100_000)] = 50,
    open_only: Annotated[bool, typer.Option(
        "--open", help="Only those not re-submitted since.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List rejected events with their reason, and whether an event with the same key was
    accepted since (re-submitted fixed)."""
    connect()
    rows = usage_reads.rejected(limit, open_only=open_only)
    if as_json:
        out.print_json(json.dumps([{
            "id": r.id, "key": r.key, "received_at": iso(r.received_at), "reason": r.reason,
            "payload": r.payload, "resubmitted_at": iso(at) if at else None}
            for r, at in rows]))
        return
    table = Table(title=f"{count(len(rows), 'rejected event')} (newest first)",
                  title_justify="left")
    for name in ("id", "key", "received (UTC)", "reason", "payload", "re-submitted"):
        table.add_column(name, overflow="fold")
    for r, at in rows:
        table.add_row(str(r.id), r.key or "—", f"{r.received_at:%Y-%m-%d %H:%M:%S}", r.reason,
                      r.payload, f"[green]accepted {at:%Y-%m-%d %H:%M:%S}[/]" if at else "—")
    out.print(table)


@app.command("conflicts")
def conflicts(
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1,
                                       max=100_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Keys sent again with another payload: the first payload stays billed, the other is
    kept here for you to compare."""
    connect()
    rows = usage_reads.conflicts(limit)
    if as_json:
        out.print_json(json.dumps([{
            "id": r.id, "key": r.key, "received_at": iso(r.received_at),
            "stored": r.stored_payload, "received": r.received_payload} for r in rows]))
        return
    table = Table(title=f"{count(len(rows), 'conflict')} (newest first): the stored payload "
                        "is the one billed", title_justify="left")
    for name in ("id", "key", "received (UTC)", "stored", "received (ignored)"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(str(r.id), r.key, f"{r.received_at:%Y-%m-%d %H:%M:%S}",
                      _payload(r.stored_payload), _payload(r.received_payload))
    out.print(table)


def _payload(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


def _exact_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= 300 else Decimal(text)  # int() of more is slow, or fails


def _fix(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        fail(f"--set {text!r}: write FIELD=VALUE, e.g. quantity=5")
    try:  # numbers exactly, as a message carries them (1e500000 is not "Infinity")
        parsed: Any = json.loads(value, parse_float=Decimal, parse_int=_exact_int)
    except (ValueError, RecursionError):  # not JSON (or too deep): the text itself
        parsed = value
    if name == "quantity" and not isinstance(parsed, str):
        parsed = value  # quantities stay exact decimal text
    return name, parsed


@app.command("resubmit")
def resubmit_command(
    rejected_id: Annotated[int, typer.Argument(help="The id shown by `usage rejected`.",
                                               min=1, max=2**31 - 1)],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="FIELD=VALUE to fix (JSON values allowed), repeatable.")] = None,
) -> None:
    """Ingest a rejected event again, with fixes applied."""
    connect()
    fixes = dict(_fix(text) for text in set_ or [])
    try:
        counts = resubmit(rejected_id, fixes, clock.now())
    except LookupError as exc:
        fail(str(exc), code=1)
    outcome = next(name for name, n in counts.items() if n)
    if outcome == "rejected":
        reason = usage_reads.rejected(1)[0][0].reason
        fail(f"still rejected: {reason}", code=1)
    err.print(f"[green]✓[/] event re-submitted: {outcome}", highlight=False)


@app.command("late")
def late_command(
    customer: Annotated[str | None, typer.Option(help="Only this customer's.")] = None,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription's.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1,
                                       max=100_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Late events (they arrived after their period's invoice was computed) with their
    covering invoice and what billed them: a regeneration or an adjustment line."""
    connect()
    rows = late.report(customer=customer, subscription=subscription, limit=limit)
    if as_json:
        out.print_json(json.dumps([{
            "key": r.key, "customer": r.customer, "meter": r.meter,
            "quantity": format_quantity(r.quantity), "timestamp": iso(r.timestamp),
            "ingested_at": iso(r.ingested_at), "subscription": r.subscription,
            "period_start": r.period_start.isoformat(), "period_end": r.period_end.isoformat(),
            "covering_invoice": r.covering, "billed_by": r.billed_by} for r in rows]))
        return
    cells = [(r.key, r.customer, r.meter, format_quantity(r.quantity),
              f"{r.timestamp:%Y-%m-%d %H:%M:%S}", f"{r.ingested_at:%Y-%m-%d %H:%M:%S}",
              f"{r.period_start} → {r.period_end}", r.covering, r.billed_by) for r in rows]
    names = ("key", "customer", "meter", "quantity", "timestamp (UTC)", "ingested (UTC)",
             "period", "covering invoice", "billed by")
    needed = sum(max([len(n), *(len(c[i]) for c in cells)]) + 3 for i, n in enumerate(names))
    if out.width < needed:
        # too narrow for the table: one block per event, wrapped between words, so that
        # no reference or instant is broken across lines (#27: `sub-ganga@202` / `6-12-06`)
        out.print(f"{count(len(rows), 'late event')} (newest first)", highlight=False)
        for r in rows:
            out.print(f"{escape(r.key)} · {escape(r.customer)} · {escape(r.meter)} · "
                      f"{format_quantity(r.quantity)}\n"
                      f"  at {r.timestamp:%Y-%m-%dT%H:%M:%SZ}, ingested "
                      f"{r.ingested_at:%Y-%m-%dT%H:%M:%SZ}, period {r.period_start} → "
                      f"{r.period_end}\n  covering invoice {escape(r.covering)}; billed by "
                      f"{escape(r.billed_by)}", highlight=False)
        return
    table = Table(title=f"{count(len(rows), 'late event')} (newest first)", title_justify="left")
    for name in names:
        table.add_column(name, justify="right" if name == "quantity" else "left")
    for row in cells:
        table.add_row(*row)
    out.print(table)


@app.command("fold")
def fold_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fold new usage into the hourly rollups the estimate and the portal read (the
    scheduler process does it every BILLING_FOLD_SECONDS; this is for by hand)."""
    connect()
    report = rollups.fold()
    if as_json:
        out.print_json(json.dumps({"folds": report.folds, "busy": report.busy,
                                   "events": report.events, "batches": report.batches,
                                   "folded": report.folded, "drawn": report.drawn}))
        if report.busy:
            raise typer.Exit(1)
        return
    if report.busy:
        fail(f"folded {report.events:,} events, then was held up (an ingest transaction "
             "without its batch number, or a long read): try again", code=1)
    if not report.folds:
        err.print("nothing to fold: on SQLite the estimate reads the events themselves",
                  highlight=False)
        return
    err.print(f"[green]✓[/] folded {report.events:,} events of {report.batches:,} batches; "
              f"the rollups hold every batch up to {report.folded:,} "
              f"(the last drawn: {report.drawn:,})", highlight=False)


def iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")
