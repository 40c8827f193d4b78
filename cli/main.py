"""``billing``: replay scenarios, run the demo, operate the engine."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli import (
    alerts,
    apikeys,
    catalog,
    credits,
    customers,
    deadletters,
    deliveries,
    invoices,
    portal,
    schedule,
    subscriptions,
    usage,
)
from cli.common import Billing, connect, err, fail, out, tidy_help, using_database, writable
from domain.invoices import InvoiceStatus
from scheduler.replay import Step, replay
from scheduler.scenario import ScenarioError, load_scenario
from services import logs
from services.settings import settings
from workers.broker import delete_namespace, redis_broker

PROGRESS_EVERY_S = 5.0

app = Billing(
    help="A usage-based billing engine: replay scenarios, run the demo, operate the engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"billing {version('usage-billing')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """A usage-based billing engine: replay scenarios, run the demo, operate the engine."""


def run_replay(path: Path, *, quiet: bool = False, database_url: str | None = None,
               redis_url: str | None = None, outbox: Path | None = None,
               database_file: Path | None = None) -> dict[str, object]:
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        fail(str(exc))
    for field in scenario.ignored:
        err.print(f"[yellow]warning:[/] {escape(str(path))}: {escape(field)}: is not a known "
                  "field (ignored)", highlight=False, soft_wrap=True)
    using_database(database_url)
    show = not quiet and sys.stderr.isatty()
    with Progress(
        TextColumn("[bold]replay[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, disable=not show, transient=True,
    ) as progress:
        task = progress.add_task(path.name, total=None)

        started = last = time.monotonic()

        def on_step(done: int, total: int, step: Step) -> None:
            nonlocal last
            progress.update(task, completed=done, total=total,
                            description=f"{path.name} {step.at:%Y-%m-%d}")
            # without a terminal (a pipe, a log file): a line every 5 s of a long replay
            clock_now = time.monotonic()
            if not quiet and not show and clock_now - last >= PROGRESS_EVERY_S:
                last = clock_now
                err.print(f"replay {path.name}: step {done:,} of {total:,} "
                          f"({step.at:%Y-%m-%d}), {clock_now - started:.0f} s",
                          highlight=False, soft_wrap=True)

        broker = None
        namespace = f"billing-replay-{uuid.uuid4().hex[:10]}"
        if redis_url:
            broker = redis_broker(settings(), url=redis_url, namespace=namespace,
                                  max_retries=0)
        try:
            return replay(scenario, database_url=database_url, broker=broker, outbox=outbox,
                          on_step=on_step, database_file=database_file)
        finally:
            if redis_url:
                delete_namespace(redis_url, namespace)


@app.command("replay")
def replay_command(
    scenario: Annotated[Path, typer.Argument(
        help="Scenario file (YAML or JSON), see docs/scenarios.md.")],
    out: Annotated[Path | None, typer.Option("--out", "-o",
                                             help="Write the invoices JSON here.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every message.")] = False,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="Replay on PostgreSQL (in a schema of its own, dropped after)."
    )] = None,
    redis_url: Annotated[str | None, typer.Option(
        "--redis-url", help="Replay through a Redis broker (own key prefix, removed after)."
    )] = None,
    outbox: Annotated[Path | None, typer.Option(
        "--outbox", help="Keep the delivered invoices (JSON + HTML) in this folder.")] = None,
) -> None:
    """Replay a scenario on a fresh store and write every invoice as JSON.

    The default store is a new SQLite file with an in-process broker."""
    writable(out)
    logs.configure("console", "INFO" if verbose else "WARNING")
    result = run_replay(scenario, database_url=database_url, redis_url=redis_url,
                        outbox=outbox)
    text = json.dumps(result, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        count = len(result["invoices"])  # type: ignore[arg-type]
        err.print(f"[green]✓[/] {count} invoices written to {out}", highlight=False)


@app.command("demo")
def demo_command(
    outbox: Annotated[Path, typer.Option(
        "--outbox", help="Where the sent invoices are delivered (JSON + HTML).")] = Path("outbox"),
    database: Annotated[Path, typer.Option(
        "--database", help="The SQLite file the demo leaves behind (made afresh).")
    ] = Path("billing-demo.db"),
) -> None:
    """Replay the built-in demo into ./billing-demo.db and show what to look at next."""
    from cli.demo import DEMO_SCENARIO, explain, print_invoices

    writable(database, "--database")
    logs.configure("console", "WARNING")
    err.print(f"Replaying the demo scenario [bold]{DEMO_SCENARIO.name}[/] …", highlight=False)
    result = run_replay(DEMO_SCENARIO, outbox=outbox, database_file=database)
    print_invoices(result)
    invoices: list[dict[str, object]] = result["invoices"]  # type: ignore[assignment]
    sent = len([inv for inv in invoices if inv["status"] == InvoiceStatus.SENT])
    out.print(f"[green]✓[/] {sent} sent invoices delivered to {escape(str(outbox))}/ "
              "(JSON + HTML). What happened:", highlight=False)
    explain(out, database)


db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(catalog.app, name="catalog")
app.add_typer(customers.app, name="customers")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(invoices.app, name="invoices")
app.add_typer(usage.app, name="usage")
app.add_typer(deadletters.app, name="dead-letters")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(apikeys.app, name="api-keys")
app.add_typer(portal.app, name="portal")
app.add_typer(credits.app, name="credits")
app.add_typer(alerts.app, name="alerts")
app.command("schedule")(schedule.schedule)
app.command("status")(schedule.status)


@app.command("bill-run")
def bill_run_command(
    entity: Annotated[str, typer.Argument(help="The billing entity.")],
    date: Annotated[str | None, typer.Option("--date", help="The run of this local date, "
                                             "YYYY-MM-DD (08:15 local).")] = None,
    now: Annotated[bool, typer.Option("--now", help="A run at the present instant: issue "
                                      "everything due now (issued now).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run one entity's bill run on live data, now: the run of --date, or with --now one at
    the present instant, issuing everything due by now (a subscription created after this
    morning's run included). Idempotent: what is issued is not issued again."""
    from domain.validation import Invalid, parse_date
    from services import clock, invoicing

    if (date is None) == (not now):
        fail("give either --date YYYY-MM-DD or --now (see `billing bill-run --help`)")
    day = None
    if date is not None:
        try:
            day = parse_date(date, "--date")
        except Invalid as exc:
            fail(str(exc))
    connect()
    report = invoicing.bill_run_report(entity, day, clock.now())
    if report.refusal is not None:
        fail(report.refusal.detail, code=1)
    failed = [f for f in invoicing.failures(entity)]
    if as_json:
        out.print_json(json.dumps({**report.document(), "failures": [
            {"reference": f"{f.subscription}@{f.boundary}", "attempts": f.attempts,
             "error": f.error} for f in failed]}))
    else:
        for item in report.invoices:
            err.print(f"  {item['outcome']}: {escape(item['detail'])}", highlight=False,
                      soft_wrap=True)
        for o in report.delivered:
            err.print(f"  {o.status}: {escape(o.detail)}", highlight=False, soft_wrap=True)
        for note in report.notes:
            err.print(f"  note: {escape(note)}", highlight=False, soft_wrap=True)
        for f in failed:
            err.print(f"  [red]failed:[/] {escape(f.subscription)}@{f.boundary} "
                      f"({f.attempts} attempts): {escape(f.error)}", highlight=False,
                      soft_wrap=True)
        issued = sum(i["outcome"] == "applied" for i in report.invoices)
        sent = sum(o.status == "applied" for o in report.delivered)
        already = (f"; {report.before} already issued by this run (the scheduler's or an "
                   "earlier bill-run)") if report.before else ""
        which = day.isoformat() if day is not None else (
            f"now ({report.run_at:%Y-%m-%d %H:%M} UTC)" if report.run_at else "now")
        err.print(f"[green]✓[/] {entity} {which}: {issued} invoice{'s' * (issued != 1)} "
                  f"issued, {sent} delivered{already}", highlight=False, soft_wrap=True)
    if report.invoices and all(i["outcome"] == "refused" for i in report.invoices):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of BILLING_DATABASE_URL (Alembic)."""
    from persistence import db, migrate
    from services.settings import settings

    db.configure(settings().database_url)
    migrate.upgrade()
    err.print(f"[green]✓[/] schema ready at {db.engine().url.render_as_string()}",
              highlight=False)


tidy_help(app)


def main() -> None:  # pragma: no cover
    app()
