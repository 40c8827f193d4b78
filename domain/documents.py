"""An issued invoice as a value, and its JSON document (the shape of REPLAY.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from domain.credits import Grant, Ledger
from domain.invoices import PRORATION, ComposedInvoice, Line, line_order
from domain.money import format_money, format_quantity
from domain.payments import Payment, PaymentStatus, overdue
from domain.taxes import TaxAmount


@dataclass(frozen=True)
class InvoiceRecord:
    id: int
    entity: str
    customer: str
    subscription: str
    boundary: date
    issued_at: datetime
    status: str  # an InvoiceStatus (domain/invoices.py): draft | sent
    number: str | None
    final: bool
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    discount: Decimal
    total: Decimal
    credits: Decimal = Decimal(0)  # SPEC §12: what prepaid credits paid when it was sent
    paid_by: tuple[tuple[str, Decimal], ...] = ()  # (grant id, amount) of those credits
    taxes: tuple[TaxAmount, ...] = ()  # SPEC §15, per rate, as computed
    tax_exempt: bool = False
    # once sent: when it is due, whether it was paid, who billed whom (domain/payments.py)
    due_date: date | None = None
    payment_status: str | None = None
    parties: Mapping[str, Any] | None = None
    payments: tuple[Payment, ...] = ()

    @property
    def paid(self) -> Decimal:
        return sum((p.amount for p in self.payments), Decimal(0))

    @property
    def amount_due(self) -> Decimal:
        """SPEC §12: ``max(0, total − credits)``."""
        return max(self.total - self.credits, Decimal(0))

    @property
    def reference(self) -> str:
        """How an operator names it: its number, or subscription@boundary for a draft."""
        return self.number or f"{self.subscription}@{self.boundary.isoformat()}"


def line_document(ln: Line, currency: str) -> dict[str, Any]:
    """A line in REPLAY.md's shape; a line of a charge with filters names its group in
    ``filter`` (SPEC §13: null for the default group)."""
    shown: dict[str, Any] = {"type": ln.type, "charge": ln.charge}
    if ln.filter is not None:
        shown["filter"] = ln.filter or None
    if ln.type == PRORATION:
        shown["plan"] = ln.plan
    shown.update({"period_start": ln.period_start.isoformat(),
                  "period_end": ln.period_end.isoformat(),
                  "quantity": format_quantity(ln.quantity),
                  "amount": format_money(ln.amount, currency)})
    return shown


def _amounts(lines: tuple[Line, ...], subtotal: Decimal, discount: Decimal, total: Decimal,
             currency: str, credits: Decimal, taxes: tuple[TaxAmount, ...]) -> dict[str, Any]:
    return {
        "lines": [line_document(ln, currency) for ln in sorted(lines, key=line_order)],
        "subtotal": format_money(subtotal, currency),
        "discount": format_money(discount, currency),
        "taxes": [{"tax": t.tax, "rate": format_quantity(t.rate),
                   "base": format_money(t.base, currency),
                   "amount": format_money(t.amount, currency)} for t in taxes],
        "tax": format_money(sum((t.amount for t in taxes), Decimal(0)), currency),
        "total": format_money(total, currency),
        "credits": format_money(credits, currency),
        "amount_due": format_money(max(total - credits, Decimal(0)), currency),
    }


def invoice_document(inv: InvoiceRecord) -> dict[str, Any]:
    return {
        "entity": inv.entity, "customer": inv.customer, "subscription": inv.subscription,
        "boundary": inv.boundary.isoformat(),
        "issued_at": inv.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": inv.status, "number": inv.number, "final": inv.final,
        "currency": inv.currency,
        **_amounts(inv.lines, inv.subtotal, inv.discount, inv.total, inv.currency,
                   inv.credits, inv.taxes),
    }


def detailed_document(inv: InvoiceRecord, today: date | None = None) -> dict[str, Any]:
    """The invoice as the API, the webhooks and the documents show it: the replay's shape,
    its public reference (never the database id), which grants paid its credits, its taxes
    per line, its due date, payment status (overdue when ``today`` — the entity's local
    date — is past it) and payments, and the parties' legal details as they were
    when it was sent."""
    document = invoice_document(inv)
    for shown, line in zip(document["lines"], sorted(inv.lines, key=line_order), strict=True):
        shown["taxes"] = list(line.taxes)  # the rates the line carries
    return {
        "reference": inv.reference, **document,
        "credits_applied": [{"grant": grant, "amount": format_money(amount, inv.currency)}
                            for grant, amount in inv.paid_by],
        "tax_exempt": inv.tax_exempt,
        "due_date": inv.due_date.isoformat() if inv.due_date else None,
        "payment_status": inv.payment_status,
        "overdue": today is not None and inv.payment_status is not None and overdue(
            PaymentStatus(inv.payment_status), inv.due_date, today),
        "paid": format_money(inv.paid, inv.currency),
        "payments": [{"id": p.id, "amount": format_money(p.amount, p.currency),
                      "date": p.paid_on.isoformat(), "method": p.method,
                      "reference": p.reference} for p in inv.payments],
        "seller": dict((inv.parties or {}).get("seller") or {"id": inv.entity}),
        "buyer": dict((inv.parties or {}).get("buyer") or {"id": inv.customer}),
    }


def grant_document(grant: Grant, state: Ledger) -> dict[str, Any]:
    """A credit grant with its ledger (REPLAY.md's ``credit_grants``)."""
    money = grant.currency
    return {
        "id": grant.id, "customer": grant.customer, "currency": grant.currency,
        "amount": format_money(grant.amount, money), "used": format_money(state.used, money),
        "voided": format_money(state.voided, money),
        "expired": format_money(state.expired, money),
        "remaining": format_money(state.remaining, money),
    }


def preview_document(invoice: ComposedInvoice, subscription: str,
                     at: datetime) -> dict[str, Any]:
    """Estimated charges (SPEC §10): the invoice the next boundary would get."""
    return {
        "subscription": subscription, "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "boundary": invoice.boundary.isoformat(), "final": invoice.final,
        "currency": invoice.currency,
        **_amounts(invoice.lines, invoice.subtotal, invoice.discount, invoice.total,
                   invoice.currency, invoice.credits, invoice.taxes),
    }


def pending_document(invoice: ComposedInvoice, subscription: str) -> dict[str, Any]:
    """An invoice due but not issued yet (its boundary passed, the next bill run issues
    it), as a preview shows it: its future reference, and its amounts as computed now."""
    return {
        "reference": f"{subscription}@{invoice.boundary.isoformat()}", "status": "pending",
        "subscription": subscription, "boundary": invoice.boundary.isoformat(),
        "final": invoice.final, "currency": invoice.currency,
        **_amounts(invoice.lines, invoice.subtotal, invoice.discount, invoice.total,
                   invoice.currency, invoice.credits, invoice.taxes),
    }
