"""``billing dead-letters``: messages that failed after every retry (or that nobody can
decode), and invoices a bill run could not compute."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.common import broker, connect, count, err, out
from services import invoicing
from workers import deadletters

app = typer.Typer(help="Messages that failed after every retry, and invoices that could not "
                       "be computed.", no_args_is_help=True)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
          ) -> None:
    """List dead letters with their error — those in the database and those the broker's
    own dead-letter queue held (moved into the database first) — and the invoices a bill
    run could not compute."""
    connect()
    target = broker(optional=True)
    swept = deadletters.sweep(target) if target is not None else 0
    rows = deadletters.rows()
    failures = invoicing.failures()
    if as_json:
        out.print_json(json.dumps({
            "dead_letters": [{"message_id": r.message_id, "actor": r.actor_name,
                              "queue": r.queue_name, "failed_at": r.failed_at.isoformat(),
                              "error": r.error, "arguments": deadletters.arguments(r)}
                             for r in rows],
            "from_broker": swept,
            "invoice_failures": [{"subscription": f.subscription,
                                  "boundary": f.boundary.isoformat(),
                                  "run_at": f.run_at.isoformat(), "attempts": f.attempts,
                                  "error": f.error} for f in failures]}))
        return
    table = Table(title=count(len(rows), "dead letter"), title_justify="left")
    for name in ("message id", "actor", "failed (UTC)", "error", "arguments"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(r.message_id, r.actor_name, f"{r.failed_at:%Y-%m-%d %H:%M:%S}", r.error,
                      deadletters.arguments(r))
    out.print(table)
    if swept:
        err.print(f"({swept} of them were in the broker's dead-letter queue)", highlight=False)
    if failures:
        table = Table(title=f"{count(len(failures), 'invoice')} that could not be computed "
                            "(the next bill run tries again)", title_justify="left")
        for name in ("subscription", "boundary", "last run (UTC)", "attempts", "error"):
            table.add_column(name, overflow="fold")
        for f in failures:
            table.add_row(f.subscription, f.boundary.isoformat(),
                          f"{f.run_at:%Y-%m-%d %H:%M}", str(f.attempts), f.error)
        out.print(table)


@app.command("requeue")
def requeue(
    message_ids: Annotated[list[str] | None, typer.Argument(help="Which (default: all).")] = None,
) -> None:
    """Send dead letters again (same message id, retries reset) and forget them."""
    connect()
    target = broker()
    deadletters.sweep(target)
    count = deadletters.requeue(target, message_ids)
    err.print(f"[green]✓[/] requeued {count} messages", highlight=False)
