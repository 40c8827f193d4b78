"""Whether a sent invoice was paid: its payment status, what may change it, and its due
date.

A sent invoice is ``open`` until payments cover its amount due (``paid``; some of it:
``partially_paid``), unless an operator voids it (``void``: its number stays used, its
usage stays billed) or gives up on it (``uncollectible``: a late payment still counts).
``overdue`` is not a status of its own: an open or partially paid invoice past its due
date is overdue. An invoice whose amount due is 0 when it is sent (prepaid credits paid
it, or its total is not positive) is ``paid`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.money import minor_units, parse_currency
from domain.validation import Fields, Invalid, parse_date, parse_decimal

DEFAULT_NET_TERMS = 30  # days, when neither the entity nor the customer names them
METHODS = ("bank_transfer", "card", "direct_debit", "cash", "check", "other")


class PaymentStatus(StrEnum):
    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


PAYABLE = {PaymentStatus.OPEN, PaymentStatus.PARTIALLY_PAID, PaymentStatus.UNCOLLECTIBLE}


def status_at_sending(amount_due: Decimal) -> PaymentStatus:
    return PaymentStatus.PAID if amount_due <= 0 else PaymentStatus.OPEN


def due_date(issued_on: date, net_terms: int) -> date:
    """The issue date (a local date of the entity) plus the net terms, in days."""
    return issued_on + timedelta(days=net_terms)


def overdue(status: PaymentStatus, due: date | None, today: date) -> bool:
    """Open (or partly paid) past its due date."""
    return (status in (PaymentStatus.OPEN, PaymentStatus.PARTIALLY_PAID)
            and due is not None and today > due)


@dataclass(frozen=True)
class Payment:
    """A payment recorded against a sent invoice."""

    id: int
    amount: Decimal
    currency: str
    paid_on: date
    method: str
    reference: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class PaymentRequest:
    amount: Decimal
    currency: str
    paid_on: date
    method: str
    reference: str | None


def parse_payment(data: Any) -> PaymentRequest:
    """A payment as an operator records it: ``amount`` (> 0, at most the currency's minor
    digits), ``currency``, ``date`` (the day it was paid), ``method``, ``reference``."""
    f = Fields(data, "")
    currency = parse_currency(f.required("currency"), "currency")
    amount = parse_decimal(f.required("amount"), "amount")
    if amount <= 0:
        raise Invalid("amount", f"must be greater than 0, got {amount}")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -minor_units(currency):
        raise Invalid("amount", f"has more decimal places than {currency} has: {amount}")
    paid_on = parse_date(f.required("date"), "date")
    method = f.choice("method", METHODS) if f.has("method") else f.raw("method") or "other"
    reference = f.optional_text("reference")
    f.check_unknown()
    return PaymentRequest(amount, currency, paid_on, method, reference)


@dataclass(frozen=True)
class Settled:
    """An invoice's payments so far, as its status needs them."""

    status: PaymentStatus
    amount_due: Decimal
    paid: Decimal
    currency: str

    @property
    def outstanding(self) -> Decimal:
        return max(self.amount_due - self.paid, Decimal(0))


def why_not_pay(invoice: Settled, draft: bool, payment: PaymentRequest) -> tuple[str, str] | None:
    """Why a payment is refused: (field, reason), or None."""
    if draft:
        return "invoice", "a draft is not payable: release it first"
    if invoice.status is PaymentStatus.VOID:
        return "invoice", "the invoice is void"
    if invoice.status is PaymentStatus.PAID:
        return "invoice", "the invoice is paid already"
    if payment.currency != invoice.currency:
        return "currency", (f"the payment's currency {payment.currency} is not the "
                            f"invoice's {invoice.currency}")
    if payment.amount > invoice.outstanding:
        return "amount", (f"{payment.amount} is more than the {invoice.outstanding} still due "
                          f"(amount due {invoice.amount_due}, paid {invoice.paid})")
    return None


def after_payment(invoice: Settled, amount: Decimal) -> PaymentStatus:
    return (PaymentStatus.PAID if invoice.paid + amount >= invoice.amount_due
            else PaymentStatus.PARTIALLY_PAID)


def why_not_void(invoice: Settled, draft: bool) -> str | None:
    if draft:
        return "a draft is not voided: it is not sent (regenerate or release it)"
    if invoice.status is PaymentStatus.VOID:
        return None  # voiding twice changes nothing
    if invoice.paid > 0 or invoice.status is PaymentStatus.PAID:
        return "payments were recorded for it (or credits paid it): it cannot be voided"
    return None


def why_not_uncollectible(invoice: Settled, draft: bool) -> str | None:
    if draft:
        return "a draft cannot be uncollectible: it is not sent"
    if invoice.status not in (PaymentStatus.OPEN, PaymentStatus.PARTIALLY_PAID,
                              PaymentStatus.UNCOLLECTIBLE):
        return f"the invoice is {invoice.status.value.replace('_', ' ')}"
    return None
