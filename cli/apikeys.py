"""``billing api-keys``: the keys of the HTTP API."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, count, err, fail, out
from domain.validation import Invalid
from services import api_keys, clock

app = typer.Typer(help="API keys of the HTTP API: create (shown once), list, revoke.",
                  no_args_is_help=True)


@app.command("create")
def create(name: Annotated[str, typer.Argument(help="What the key is for, e.g. "
                                                    "backend-eu.")]) -> None:
    """Create a key and print it, once: only its hash is kept."""
    connect()
    try:
        key, secret = api_keys.create(name, clock.now())
    except Invalid as exc:
        fail(str(exc))
    out.print(secret, highlight=False, soft_wrap=True)
    err.print(f"[green]✓[/] API key {escape(key.name)!r} (#{key.id}) created; it is shown "
              "only now — keep it in your secret store", highlight=False)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The keys, with their prefix, creation, last use and revocation."""
    connect()
    keys = api_keys.listing()
    if as_json:
        out.print_json(json.dumps([{
            "id": k.id, "name": k.name, "prefix": k.prefix,
            "created_at": k.created_at.isoformat(),
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in keys]))
        return
    table = Table(title=count(len(keys), "API key"), title_justify="left")
    for name in ("id", "name", "key starts", "created (UTC)", "last used (UTC)", "revoked"):
        table.add_column(name)
    for k in keys:
        table.add_row(str(k.id), escape(k.name), k.prefix + "…",
                      f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
    out.print(table)


@app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="The key's name or id.")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    connect()
    found = api_keys.revoke(key, clock.now())
    if found is None:
        fail(f"no API key {key!r}", code=1)
    err.print(f"[green]✓[/] API key {escape(found.name)!r} revoked", highlight=False)
