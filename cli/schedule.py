"""``billing schedule`` (the coming bill runs, local and UTC, DST changes marked) and
``billing status`` (the scheduler's last wake and next run, queue depths, dead letters,
and whether the database and the broker answer)."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import broker, connect, count, fail, out
from scheduler import status as status_service
from services import clock


def schedule(
    entity: Annotated[str | None, typer.Option(help="Only this entity's runs.")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days ahead.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The coming bill runs: 08:15 local each day, in UTC too, DST changes marked."""
    connect()
    runs = status_service.coming_runs(clock.now(), entity=entity, days=days)
    if as_json:
        out.print_json(json.dumps([{
            "entity": r.entity, "timezone": r.timezone, "local_date": r.local_date.isoformat(),
            "local_time": "08:15", "utc": r.run_at.isoformat().replace("+00:00", "Z"),
            "utc_offset": r.utc_offset, "dst_change": r.dst_change} for r in runs]))
        return
    table = Table(title=count(len(runs), "coming bill run"), title_justify="left")
    for name in ("UTC", "entity", "time zone", "local", "offset", "note"):
        table.add_column(name)
    for r in runs:
        table.add_row(r.run_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"), escape(r.entity),
                      r.timezone, f"{r.local_date} 08:15", r.utc_offset,
                      f"DST: {r.dst_change}" if r.dst_change else "")
    out.print(table)


def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
           ) -> None:
    """The scheduler's last wake and next run, queue depths, dead letters, and whether the
    database and the broker answer. A database that does not answer is one line on
    standard error (like every command); a broker that does not, the report and then one
    line. Either way a non-zero exit."""
    connect()
    found = status_service.status(broker(optional=True))
    if found.database != "ok":
        fail(f"the database: {found.database}", 3)
    beats: list[dict[str, Any]] = [{
        "scheduler": b.scheduler, "started_at": b.started_at.isoformat(),
        "woke_at": b.woke_at.isoformat(), "entities": b.entities, "sent": b.sent,
        "next_run_at": b.next_run_at.isoformat() if b.next_run_at else None,
        "next_entity": b.next_entity,
        "next_local_date": b.next_local_date.isoformat() if b.next_local_date else None,
    } for b in found.schedulers]
    healthy = found.broker in ("ok", status_service.NO_BROKER)
    if as_json:
        out.print_json(json.dumps({"database": found.database, "broker": found.broker,
                                   "queues": found.queues, "dead_letters": found.dead_letters,
                                   "unfinished_runs": found.unfinished_runs,
                                   "batches_not_folded": found.batches_not_folded,
                                   "schedulers": beats}))
    else:
        now = clock.now()
        out.print(f"database     {escape(found.database)}", highlight=False)
        out.print(f"broker       {escape(found.broker)}", highlight=False)
        if found.queues is not None:
            q = found.queues
            out.print(f"queue        {q['ready']} ready, {q['delayed']} delayed, "
                      f"{q['dead']} in the broker's dead-letter queue", highlight=False)
        if found.dead_letters is not None:
            out.print(f"dead letters {found.dead_letters} (billing dead-letters list)",
                      highlight=False)
        if found.unfinished_runs is not None:
            out.print(f"bill runs    {found.unfinished_runs} claimed or sent, not done",
                      highlight=False)
        if found.batches_not_folded is not None:
            out.print(f"rollups      {found.batches_not_folded} ingest batches not folded yet "
                      "(the scheduler folds every BILLING_FOLD_SECONDS)", highlight=False)
        if not found.schedulers:
            out.print("scheduler    none has run (python -m scheduler)", highlight=False)
        for b in found.schedulers:
            ago = int((now - b.woke_at).total_seconds())
            coming = (f"next: {escape(b.next_entity or '')} {b.next_local_date} at "
                      f"{b.next_run_at.isoformat()}" if b.next_run_at else "nothing scheduled")
            out.print(f"scheduler    {escape(b.scheduler)}: woke {ago} s ago "
                      f"({b.woke_at.isoformat()}), {b.entities} entities, {coming}",
                      highlight=False)
    if not healthy:
        fail(f"the broker does not answer: {found.broker}", 3)
