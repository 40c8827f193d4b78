"""``billing portal``: signed links to a customer's portal page."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import connect, count, err, fail, out
from domain.validation import Invalid
from services import clock
from services import portal as portal_service

app = typer.Typer(help="The customer portal: signed links (create, list, revoke).",
                  no_args_is_help=True)


@app.command("link")
def link(
    customer: Annotated[str, typer.Argument(help="The customer the page is for.")],
    ttl: Annotated[str | None, typer.Option(
        "--ttl", help="How long the link works: 30m, 12h, 7d … (default "
                      "BILLING_PORTAL_LINK_TTL, 12h; at most 90d).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a signed, expiring link to CUSTOMER's page: usage, estimated charges per meter,
    invoices. Anyone with the link sees that page until it expires or is revoked."""
    connect()
    try:
        made = portal_service.create_link(customer, ttl, clock.now())
    except Invalid as exc:
        fail(str(exc), code=1 if "is not a known" in exc.message else 2)
    if as_json:
        out.print_json(json.dumps({"id": made.id, "customer": made.customer, "url": made.url,
                                   "expires_at": made.expires_at.isoformat()}))
        return
    out.print(made.url, highlight=False, soft_wrap=True)
    err.print(f"[green]✓[/] link {made.id} for {escape(customer)!r}, valid until "
              f"{made.expires_at:%Y-%m-%d %H:%M} UTC — `billing portal revoke {made.id}` "
              "ends it sooner", highlight=False)


@app.command("list")
def list_(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's."
                                                 )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The links made, newest first, with their expiry and revocation (not their token)."""
    connect()
    rows = portal_service.links(customer)
    now = clock.now()
    if as_json:
        out.print_json(json.dumps([{
            "id": r.id, "customer": r.customer_id, "created_at": r.created_at.isoformat(),
            "expires_at": r.expires_at.isoformat(),
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in rows]))
        return
    table = Table(title=count(len(rows), "portal link"), title_justify="left")
    for name in ("id", "customer", "created (UTC)", "expires (UTC)", "state"):
        table.add_column(name)
    for r in rows:
        state = ("revoked" if r.revoked_at else "expired" if r.expires_at <= now else "open")
        table.add_row(r.id, escape(r.customer_id), f"{r.created_at:%Y-%m-%d %H:%M}",
                      f"{r.expires_at:%Y-%m-%d %H:%M}", state)
    out.print(table)


@app.command("revoke")
def revoke(
    link_id: Annotated[str | None, typer.Argument(help="The link's id.")] = None,
    customer: Annotated[str | None, typer.Option(
        "--customer", help="Revoke every open link of this customer.")] = None,
) -> None:
    """End a link (or every link of a customer) now: its page answers 403 from then on."""
    if (link_id is None) == (customer is None):
        fail("give a link id or --customer, not both")
    connect()
    count = portal_service.revoke(link_id=link_id, customer=customer, now=clock.now())
    if not count:
        fail(f"no open link {link_id!r}" if link_id else
             f"{customer!r} has no open link", code=1)
    err.print(f"[green]✓[/] {count} link{'s' if count != 1 else ''} revoked", highlight=False)
