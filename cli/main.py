"""``billing``: replay scenarios, run the demo, operate the engine."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scheduler.replay import Step, replay
from scheduler.scenario import ScenarioError, load_scenario
from workers import logs

app = typer.Typer(
    help="A usage-based billing engine: replay scenarios, run the demo, operate the engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def run_replay(path: Path, *, quiet: bool = False) -> dict[str, object]:
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        _fail(str(exc))
        raise AssertionError from exc  # unreachable
    show = not quiet and sys.stderr.isatty()
    with Progress(
        TextColumn("[bold]replay[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, disable=not show, transient=True,
    ) as progress:
        task = progress.add_task(path.name, total=None)

        def on_step(done: int, total: int, step: Step) -> None:
            progress.update(task, completed=done, total=total,
                            description=f"{path.name} {step.at:%Y-%m-%d}")

        return replay(scenario, on_step=on_step)


@app.command("replay")
def replay_command(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (YAML or JSON), see REPLAY.md.")],
    out: Annotated[Path | None, typer.Option("--out", "-o",
                                             help="Write the invoices JSON here.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every message.")] = False,
) -> None:
    """Replay a scenario on a fresh embedded store and write every invoice as JSON."""
    logs.configure("console", "INFO" if verbose else "WARNING")
    result = run_replay(scenario)
    text = json.dumps(result, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        count = len(result["invoices"])  # type: ignore[arg-type]
        err.print(f"[green]✓[/] {count} invoices written to {out}", highlight=False)


@app.command("demo")
def demo_command() -> None:
    """Replay the built-in demo (two entities, a few months) and print its invoices."""
    from cli.demo import DEMO_SCENARIO, print_invoices

    logs.configure("console", "WARNING")
    err.print(f"Replaying the demo scenario [bold]{DEMO_SCENARIO.name}[/] …", highlight=False)
    result = run_replay(DEMO_SCENARIO)
    print_invoices(result)


db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of BILLING_DATABASE_URL (Alembic)."""
    from persistence import db, migrate
    from workers.settings import settings

    db.configure(settings().database_url)
    migrate.upgrade()
    err.print(f"[green]✓[/] schema ready at {db.engine().url.render_as_string()}",
              highlight=False)


def main() -> None:  # pragma: no cover
    app()
