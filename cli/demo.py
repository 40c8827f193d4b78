"""``billing demo``: the built-in scenario and a readable listing of its invoices."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from domain.invoices import InvoiceStatus
from domain.units import Unit
from services.delivery.render import format_amount, format_in_unit, to_decimal

DEMO_SCENARIO = Path(str(resources.files("scheduler") / "demo.yaml"))


def local_time(text: str, timezone: str | None) -> str:
    """An instant of a document (``…Z``) as the entity's people read it: in its zone."""
    if not timezone:
        return text
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return f"{instant.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M} {timezone}"


def invoice_table(inv: dict[str, Any], units: Mapping[str, Unit] | None = None,
                  timezone: str | None = None) -> Group:
    """An invoice (or an estimate, or an invoice pending) for the terminal: a heading line,
    then its lines and totals, amounts with the currency's symbol and separators (the JSON
    keeps plain decimals); quantities in their meter's display unit (``units``: charge id
    → unit); instants in the entity's ``timezone`` when given."""
    final = ", final" if inv["final"] else ""
    reference = f"{inv['subscription']}@{inv['boundary']}"
    if inv["status"] == "estimate":  # the open period (SPEC §10): nothing is issued
        heading = Text.assemble(("estimate", "bold"), f"  {inv['subscription']} · the "
                                f"invoice at {inv['boundary']}{final} · as of "
                                f"{local_time(inv['at'], timezone)}")
    elif inv["status"] == "pending":  # due: its boundary has passed, the next run issues it
        heading = Text.assemble(("pending", "bold"), f"  {reference}{final} · due, issued by "
                                "the next bill run")
    else:
        heading = Text.assemble(
            (inv["number"] or f"draft {reference}", "bold"),
            f"  {inv['customer']} · {inv['subscription']} · boundary {inv['boundary']} · "
            f"issued {local_time(inv['issued_at'], timezone)} · {inv['status']}{final}")
    table = Table(box=box.SIMPLE, show_footer=True, pad_edge=False)
    table.add_column("line")
    table.add_column("period")
    table.add_column("quantity", justify="right")
    currency = inv["currency"]

    def money(value: object) -> str:
        return format_amount(value, currency)

    discount = to_decimal(inv["discount"], "discount")
    paid = to_decimal(inv.get("credits", "0"), "credits")
    taxes = "".join(f"tax {t['tax']} {t['rate']} % of {money(t['base'])} {money(t['amount'])}\n"
                    for t in inv.get("taxes", []))
    if inv.get("tax_exempt"):
        taxes += "tax exempt\n"
    footer = (f"subtotal {money(inv['subtotal'])}\n"
              f"discount {money(-discount) if discount else money(0)}\n{taxes}"
              f"[bold]total {money(inv['total'])}[/]")
    if paid:
        grants = ", ".join(a["grant"] for a in inv.get("credits_applied", []))
        footer += (f"\nprepaid credits{f' ({grants})' if grants else ''} {money(-paid)}\n"
                   f"[bold]amount due {money(inv['amount_due'])}[/]")
    elif to_decimal(inv["total"], "total") < 0 and inv["status"] == InvoiceStatus.SENT:
        footer += "\n(became prepaid credit)"
    table.add_column(currency, justify="right", footer=footer)
    for ln in inv["lines"]:
        group = f" — {ln['filter'] or 'default'}" if "filter" in ln else ""
        if ln["type"] == "proration":
            group = f" — {ln['plan']}, {ln['quantity'].lstrip('-')} days"
        table.add_row(f"{ln['type']} {ln['charge']}{group}",
                      f"{ln['period_start']} → {ln['period_end']}",
                      format_in_unit(ln["quantity"], (units or {}).get(ln["charge"])),
                      money(ln["amount"]))
    return Group(heading, table)


def explain(console: Console, database: Path) -> None:
    """A few lines on what the demo made, read back from its database: the rejected event
    and why, the conflicting re-send, the late event and the invoice that billed it, the
    discounts, the drafts waiting for release — and the commands to explore it."""
    from services import clock, late
    from services import invoices as invoices_service
    from services import subscriptions as subscriptions_service
    from services.operator import usage as usage_reads

    rejected = usage_reads.rejected(10)
    conflicts = usage_reads.conflicts(10)
    lines: list[str] = []
    for row, _ in rejected:
        lines.append(f"rejected: event {row.key} ({row.reason}); it is kept with its payload "
                     f"— `billing usage rejected`, then `billing usage resubmit {row.id} "
                     "--set …` once fixed")
    for c in conflicts:
        lines.append(f"conflict: {c.key} was sent again with another payload; the first "
                     "stays billed — `billing usage conflicts`")
    for r in late.report():
        lines.append(f"late: {r.key} ({r.meter} {r.quantity} on {r.timestamp:%Y-%m-%d}) "
                     f"arrived after {r.covering} was issued; billed by the {r.billed_by}")
    for v in subscriptions_service.views(clock.now()):
        if v.discount:
            what = (f"{v.discount['percent']} % off" if "percent" in v.discount
                    else f"{v.discount['amount']} off")
            cycles = v.discount.get("cycles")
            first = {None: "every invoice", 1: "its first invoice"}.get(
                cycles, f"its first {cycles} invoices")
            lines.append(f"discount: {v.id} has {what} {first}")
    drafts = invoices_service.listing(status=InvoiceStatus.DRAFT)
    if drafts:
        names = ", ".join(r.reference for r in drafts)
        lines.append(f"drafts: {names} wait for review (their customer gets drafts); "
                     f"`billing invoices release {drafts[0].reference}` sends one and gives "
                     "it the next number")
    for line in lines:
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    url = f"sqlite:///{database}"
    console.print(f"\nExplore it: the demo's database is [bold]{escape(str(database))}[/].",
                  highlight=False)
    for command in (f"export BILLING_DATABASE_URL={url}", "billing invoices list",
                    f"billing invoices show {drafts[0].reference if drafts else '1'}",
                    "billing customers list", "billing subscriptions list"):
        console.print(f"  {escape(command)}", highlight=False, soft_wrap=True)


def print_invoices(result: dict[str, Any], console: Console | None = None) -> None:
    from cli.common import out
    from services.invoices import display_units

    console = console or out
    units: dict[str, dict[str, Unit]] = {}
    for inv in result["invoices"]:
        if inv["subscription"] not in units:
            units[inv["subscription"]] = display_units(inv["subscription"])
        console.print(invoice_table(inv, units[inv["subscription"]]))
    usage = result["usage"]
    console.print("[bold]Usage events:[/] " + ", ".join(f"{k} {v}" for k, v in usage.items()),
                  highlight=False)
