"""``billing demo``: the built-in scenario and a readable listing of its invoices."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

DEMO_SCENARIO = Path(str(resources.files("scheduler") / "demo.yaml"))


def invoice_table(inv: dict[str, Any]) -> Table:
    status = inv["status"] + (", final" if inv["final"] else "")
    title = (f"[bold]{inv['number'] or '(draft)'}[/]  {inv['customer']} · {inv['subscription']}"
             f" · boundary {inv['boundary']} · issued {inv['issued_at']} · {status}")
    table = Table(title=title, title_justify="left", box=box.SIMPLE, show_footer=True,
                  pad_edge=False)
    table.add_column("line")
    table.add_column("period")
    table.add_column("quantity", justify="right")
    table.add_column(inv["currency"], justify="right",
                     footer=f"subtotal {inv['subtotal']}\ndiscount -{inv['discount']}\n"
                            f"[bold]total {inv['total']}[/]")
    for ln in inv["lines"]:
        table.add_row(f"{ln['type']} {ln['charge']}",
                      f"{ln['period_start']} → {ln['period_end']}", ln["quantity"], ln["amount"])
    return table


def print_invoices(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for inv in result["invoices"]:
        console.print(invoice_table(inv))
    usage = result["usage"]
    console.print("[bold]Usage events:[/] " + ", ".join(f"{k} {v}" for k, v in usage.items()),
                  highlight=False)
