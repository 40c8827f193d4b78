"""``billing dead-letters``: messages that failed after every retry (or that nobody can
decode), and invoices a bill run could not compute."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import broker, connect, err, out
from services import invoicing
from workers import deadletters

app = typer.Typer(help="Messages that failed after every retry, and invoices that could not "
                       "be computed.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List dead letters with their error — those in the database and those the broker's
    own dead-letter queue held (moved into the database first) — and the invoices a bill
    run could not compute."""
    connect()
    target = broker(optional=True)
    swept = deadletters.sweep(target) if target is not None else 0
    rows = deadletters.rows()
    table = Table(title=f"{len(rows)} dead letters", title_justify="left")
    for name in ("message id", "actor", "failed (UTC)", "error", "arguments"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(r.message_id, r.actor_name, f"{r.failed_at:%Y-%m-%d %H:%M:%S}", r.error,
                      deadletters.arguments(r))
    out.print(table)
    if swept:
        err.print(f"({swept} of them were in the broker's dead-letter queue)", highlight=False)
    failures = invoicing.failures()
    if failures:
        table = Table(title=f"{len(failures)} invoices that could not be computed (the next "
                            "bill run tries again)", title_justify="left")
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
