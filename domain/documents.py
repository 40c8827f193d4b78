"""An issued invoice as a value, and its JSON document (the shape of REPLAY.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from domain.invoices import Line
from domain.money import format_money, format_quantity


@dataclass(frozen=True)
class InvoiceRecord:
    id: int
    entity: str
    customer: str
    subscription: str
    boundary: date
    issued_at: datetime
    status: str  # draft | sent
    number: str | None
    final: bool
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    discount: Decimal
    total: Decimal

    @property
    def reference(self) -> str:
        """How an operator names it: its number, or subscription@boundary for a draft."""
        return self.number or f"{self.subscription}@{self.boundary.isoformat()}"


def invoice_document(inv: InvoiceRecord) -> dict[str, Any]:
    cur = inv.currency
    return {
        "entity": inv.entity, "customer": inv.customer, "subscription": inv.subscription,
        "boundary": inv.boundary.isoformat(),
        "issued_at": inv.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": inv.status, "number": inv.number, "final": inv.final, "currency": cur,
        "lines": [
            {"type": ln.type, "charge": ln.charge,
             "period_start": ln.period_start.isoformat(),
             "period_end": ln.period_end.isoformat(),
             "quantity": format_quantity(ln.quantity),
             "amount": format_money(ln.amount, cur)}
            for ln in sorted(inv.lines, key=lambda x: (x.type, x.charge))
        ],
        "subtotal": format_money(inv.subtotal, cur), "discount": format_money(inv.discount, cur),
        "total": format_money(inv.total, cur),
    }
