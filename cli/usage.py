"""``billing usage``: rejected events, and re-submitting them after a fix."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import connect, err, fail, out
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from services import clock
from services.usage import resubmit

app = typer.Typer(help="Usage events: rejected ones, re-submission.", no_args_is_help=True)


@app.command("rejected")
def rejected(
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1,
                                       max=100_000)] = 50,
) -> None:
    """List rejected events with their reason."""
    connect()
    with unit_of_work() as session:
        rows = usage_repo.rejected(session, limit)
    table = Table(title=f"{len(rows)} rejected events (newest first)", title_justify="left")
    for name in ("id", "key", "received (UTC)", "reason", "payload"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(str(r.id), r.key or "—", f"{r.received_at:%Y-%m-%d %H:%M:%S}", r.reason,
                      r.payload)
    out.print(table)


def _fix(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        fail(f"--set {text!r}: write FIELD=VALUE, e.g. quantity=5")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
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
        with unit_of_work() as session:
            reason = usage_repo.rejected(session, 1)[0].reason
        fail(f"still rejected: {reason}", code=1)
    err.print(f"[green]✓[/] event re-submitted: {outcome}", highlight=False)
