"""What every ``billing`` command shares: the consoles, errors, the database."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NoReturn, overload

import dramatiq
import typer
from rich.console import Console

from domain.validation import Invalid, parse_instant
from persistence import db
from services import logs
from services.settings import settings

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on standard error, and a non-zero exit."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def connect() -> None:
    """Use the configured database (BILLING_DATABASE_URL)."""
    config = settings()
    logs.configure("console", "WARNING")
    db.configure(config.database_url)


@overload
def broker(optional: Literal[False] = False) -> dramatiq.Broker: ...
@overload
def broker(optional: Literal[True]) -> dramatiq.Broker | None: ...


def broker(optional: bool = False) -> dramatiq.Broker | None:
    """The production broker (BILLING_BROKER_URL); without one, an error (or None)."""
    from workers.broker import broker_for

    url = settings().broker_url
    if not url:
        if optional:
            return None
        fail("BILLING_BROKER_URL is not set: there is no broker to send to")
    return broker_for(url, settings())


def instant(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text, name)
    except Invalid as exc:
        fail(str(exc))
