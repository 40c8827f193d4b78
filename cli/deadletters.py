"""``billing dead-letters``: messages that failed after every retry."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.common import connect, err, fail, out
from persistence import deadletters
from persistence.db import unit_of_work
from services.settings import settings
from workers.broker import build_broker
from workers.deadletters import requeue as requeue_dead_letters

app = typer.Typer(help="Messages that failed after every retry.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List dead letters with their error."""
    connect()
    with unit_of_work() as session:
        rows = deadletters.all(session)
    table = Table(title=f"{len(rows)} dead letters", title_justify="left")
    for name in ("message id", "actor", "failed (UTC)", "error", "arguments"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(r.message_id, r.actor_name, f"{r.failed_at:%Y-%m-%d %H:%M:%S}", r.error,
                      json.dumps(r.message.get("args", []))[:200])
    out.print(table)


@app.command("requeue")
def requeue(
    message_ids: Annotated[list[str] | None, typer.Argument(help="Which (default: all).")] = None,
) -> None:
    """Send dead letters again (same message id, retries reset) and forget them."""
    connect()
    if not settings().redis_url:
        fail("BILLING_REDIS_URL is not set: there is no broker to requeue to")
    count = requeue_dead_letters(build_broker(settings()), message_ids)
    err.print(f"[green]✓[/] requeued {count} messages", highlight=False)
