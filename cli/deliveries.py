"""``billing deliveries``: what was delivered, what is pending or failed, and retrying."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, count, err, fail, out, redact, redact_text
from cli.invoices import find
from services import clock
from services.deliveries import deliver_now
from services.operator import deliveries as deliveries_ops

STATUSES = ("pending", "done", "failed")
app = typer.Typer(help="Deliveries of sent invoices: list, retry.", no_args_is_help=True)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="pending, done or failed.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1,
                                       max=100_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List deliveries with their channel, attempts and last error (secrets in webhook
    URLs are shown as ***)."""
    if status is not None and status not in STATUSES:
        fail(f"--status: must be one of {', '.join(STATUSES)}, got {status!r}")
    connect()
    listed = deliveries_ops.listing(status, limit)
    rows = [r for r, _ in listed]
    names = {r.invoice_id: name for r, name in listed if name is not None}
    if as_json:
        out.print_json(json.dumps([{
            "invoice": names.get(r.invoice_id), "status": r.status, "channel": r.channel,
            "target": redact(r.target) if r.target else None, "attempts": r.attempts,
            "last_error": redact_text(r.last_error) if r.last_error else None,
            "updated_at": f"{r.updated_at:%Y-%m-%dT%H:%M:%SZ}"} for r in rows]))
        return
    table = Table(title=f"{count(len(rows), 'delivery', 'deliveries')} (newest first)",
                  title_justify="left")
    for name in ("invoice", "status", "channel", "target", "attempts", "last error",
                 "updated (UTC)"):
        table.add_column(name, overflow="fold", no_wrap=name in ("invoice", "updated (UTC)"))
    for r in rows:
        colour = {"done": "green", "failed": "red"}.get(r.status, "yellow")
        table.add_row(names.get(r.invoice_id, "—"), f"[{colour}]{r.status}[/]",
                      r.channel or "—",
                      redact(r.target) if r.target else "—", str(r.attempts),
                      redact_text(r.last_error or ""),
                      f"{r.updated_at:%Y-%m-%d %H:%M:%S}")
    out.print(table)


@app.command("retry")
def retry(
    references: Annotated[list[str] | None, typer.Argument(
        help="Invoices: number or SUBSCRIPTION@YYYY-MM-DD (default: every failed "
             "delivery).")] = None,
) -> None:
    """Attempt failed (or stuck pending) deliveries again, now."""
    connect()
    invoice_ids = [find(ref).id for ref in references or []]
    reset = deliveries_ops.reset_for_retry(invoice_ids, clock.now())
    if not reset:
        fail("nothing to retry (delivered ones are never repeated)", code=1)
    failures = 0
    for invoice_id in reset:
        outcome = deliver_now(invoice_id)
        failures += outcome.status == "refused"
        mark = "[red]✗[/]" if outcome.status == "refused" else "[green]✓[/]"
        err.print(f"{mark} {escape(redact_text(outcome.detail))}", highlight=False,
                  soft_wrap=True)
    if failures:
        raise typer.Exit(1)
