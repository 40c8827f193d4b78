"""What every ``billing`` command shares: the consoles, errors, the database."""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, overload

import dramatiq
import typer
from rich.console import Console
from rich.markup import escape
from typer._click import exceptions as click  # the click that typer parses with (vendored)

from domain.validation import Invalid, parse_instant
from persistence import db
from services import logs
from services.settings import settings

# In a pipe (no terminal, no COLUMNS) a table is as wide as its content, not squeezed into
# 80 columns: `billing invoices list | grep 2026-11` finds whole dates.
PIPE_WIDTH = 1000


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if piped else None)


out = _console()
err = _console(stderr=True)


# The exit status of every command (README, "Exit status"): 0 done; 1 refused by the engine
# or failed (a rule says no, something named does not exist, a delivery failed); 2 a bad
# command line or input (a malformed option, date, amount or file); 3 a server (the
# database, the broker) does not answer. A refusal or error is one `error:` line.
OK, REFUSED, BAD_INPUT, UNREACHABLE = 0, 1, 2, 3


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """One line on standard error, and a non-zero exit (2: bad input, by default)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def refusal(outcome: Any) -> NoReturn:
    """A command's refusal as its one line: exit 2 when what was given is not valid, else
    1 (the engine refused it, or what it names does not exist)."""
    from services.commands import INVALID

    field = f" (field: {outcome.field})" if getattr(outcome, "field", None) else ""
    fail(outcome.detail + field, code=BAD_INPUT if outcome.code == INVALID else REFUSED)


def count(n: int, one: str, many: str | None = None) -> str:
    """``n`` things in words: "1 API key", "2 API keys", "0 subscriptions"."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def writable(path: Path | None, option: str = "--out") -> None:
    """Refuse, before any work is done, an output file that cannot be written: its folder
    is missing, or it is a folder."""
    if path is None:
        return
    if path.is_dir():
        fail(f"{option} {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        fail(f"{option} {path}: the folder {path.parent} does not exist")


def connect(*, migrated: bool = True) -> None:
    """Use the configured database (BILLING_DATABASE_URL); unless ``migrated`` is False,
    refuse one whose schema is missing or older than the code (say to upgrade it)."""
    from persistence import migrate

    config = settings()
    # errors only: a command says what happened itself, and a refusal is its one `error:`
    # line — no log line of the service layer before it (#27)
    logs.configure("console", "ERROR")
    file = db.sqlite_file(config.database_url)
    if migrated and file is not None and not file.exists():  # do not leave an empty one
        fail(f"there is no database at {file} (BILLING_DATABASE_URL={config.database_url}): "
             "run `billing db upgrade` to create it, or `billing demo` for a demo database")
    db.configure(config.database_url)
    if not migrated:
        return
    current, head = migrate.state()
    where = db.engine().url.render_as_string(hide_password=True)
    if current is None:
        fail(f"the database at {where} has no billing tables: run `billing db upgrade` "
             "(or point BILLING_DATABASE_URL at the right database)")
    if current != head:
        fail(f"the database at {where} is at schema {current}, this version needs {head}: "
             "run `billing db upgrade`")


_database_in_use: str | None = None


def using_database(url: str | None) -> None:
    """The command works on ``url``, not on BILLING_DATABASE_URL (a replay's
    --database-url): an error names it."""
    global _database_in_use
    _database_in_use = url


def describe_error(exc: BaseException) -> tuple[str, int]:
    """One line for an error a command did not handle itself, and the exit status."""
    from sqlalchemy import exc as sa

    # the database the command was using: a replay's --database-url, not the setting (#27)
    url = _database_in_use or settings().database_url
    if isinstance(exc, sa.DBAPIError):
        first = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() \
            else type(exc.orig or exc).__name__
        first = first.removeprefix("connection failed: ")
        if isinstance(exc, sa.OperationalError | sa.InterfaceError):
            return f"cannot use the database at {_hide(url)}: {first}", 3
        if "no such table" in first or "does not exist" in first:
            return (f"the database at {_hide(url)} is missing billing tables ({first}): "
                    "run `billing db upgrade`"), 3
        return f"the database refused the command: {first}", 3
    if isinstance(exc, sa.ArgumentError | sa.NoSuchModuleError):
        return f"BILLING_DATABASE_URL: {exc}", 2
    name = type(exc).__module__.split(".")[0]
    if name in ("redis", "pika") or isinstance(exc, ConnectionError):
        return (f"cannot reach the broker at {_hide(settings().broker_url or '')}: "
                f"{' '.join(str(exc).split()) or type(exc).__name__}"), 3
    if isinstance(exc, OSError):
        target = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{target}: {exc.strerror or exc}", 2
    return (f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
            "(BILLING_DEBUG=1 shows the traceback)"), 1


def _hide(url: str) -> str:
    """A URL without its password (or token)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return redact(url)


def redact(url: str) -> str:
    """A URL with its password and query values replaced by ***."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':')[0]}:***@{host}" if ":" in user else f"***@{host}"
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted."""
    return _URL.sub(lambda m: redact(m.group()), text)


def usage_error(exc: click.ClickException) -> str:
    """One line for a command line the parser refused (an option out of range, a missing
    argument, an unknown command), naming the command."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    return f"{message} (see `{ctx.command_path} --help`)"


class Billing(typer.Typer):
    """The ``billing`` application: an error no command handled — and a command line the
    parser refused — is one line on standard error and a non-zero exit, never a traceback
    or a box (BILLING_DEBUG=1 shows the traceback)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        standalone = kwargs.pop("standalone_mode", True)
        try:
            result = super().__call__(*args, standalone_mode=False, **kwargs)
        except (SystemExit, typer.Exit):
            raise
        except click.NoArgsIsHelpError as exc:  # the help is printed already
            if not standalone:
                raise
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            if not standalone:
                raise
            err.print(f"[bold red]error:[/] {escape(usage_error(exc))}", highlight=False,
                      soft_wrap=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            if not standalone:
                raise
            err.print("aborted", highlight=False)
            sys.exit(1)
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("BILLING_DEBUG") == "1":
                raise
            message, code = describe_error(exc)
            err.print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                      soft_wrap=True)
            sys.exit(code)
        if not standalone:
            return result
        sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)


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


def tidy_help(application: typer.Typer) -> None:
    """Let the help reflow: docstrings are wrapped at 90 columns in the source, and the
    help would keep those line breaks inside a terminal's own wrapping. Paragraphs stay."""
    import inspect

    for command in application.registered_commands:
        doc = command.help or (inspect.getdoc(command.callback) if command.callback else None)
        if doc:
            command.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    for group in application.registered_groups:
        if group.typer_instance is not None:
            tidy_help(group.typer_instance)
