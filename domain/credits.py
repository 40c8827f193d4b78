"""Prepaid credits (SPEC §12): grants, who pays what when an invoice is sent, and a grant's
ledger.

A grant is money in one currency that a customer spends down on its sent invoices. Which
grants pay an invoice, and how much each pays, is a pure function of the grants usable at
the sending instant and of what they have left (``allocate``); what a grant has paid is
the sum of its applications, so its ledger (``ledger``) is derived, never a counter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from domain.money import EXACT, minor_units, parse_currency
from domain.validation import Fields, Invalid, describe, parse_decimal, parse_instant

RESERVED_PREFIX = "credit-"  # ids of the grants SPEC §12 makes from negative totals
DEFAULT_PRIORITY = 50
NEGATIVE_TOTAL_PRIORITY = 0


@dataclass(frozen=True)
class Grant:
    id: str
    customer: str
    currency: str
    amount: Decimal
    granted_at: datetime
    expires_at: datetime | None = None
    priority: int = DEFAULT_PRIORITY
    voided_at: datetime | None = None

    def usable_at(self, at: datetime) -> bool:
        """Whether it may pay an invoice sent at ``at`` (its remaining amount aside):
        granted strictly before, not expired, not voided by then."""
        return (self.granted_at < at
                and (self.expires_at is None or at < self.expires_at)
                and (self.voided_at is None or at < self.voided_at))

    @property
    def order(self) -> tuple[int, bool, datetime, datetime, str]:
        """SPEC §12's order of use: priority, then expiry (none last), then the instant it
        was granted, then id."""
        return (self.priority, self.expires_at is None,
                self.expires_at or self.granted_at, self.granted_at, self.id)


@dataclass(frozen=True)
class Balance:
    """A grant with what it has left (its amount less what it paid so far)."""

    grant: Grant
    remaining: Decimal


def allocate(due: Decimal, balances: Iterable[Balance], at: datetime) -> list[tuple[str, Decimal]]:
    """Who pays an invoice of ``due`` (its total, > 0) sent at ``at``: the usable grants in
    SPEC §12's order, each ``min(its remaining, what is still due)`` until nothing is due.
    ``balances`` are the customer's grants in the invoice's currency."""
    paid: list[tuple[str, Decimal]] = []
    if due <= 0:
        return paid
    with localcontext(EXACT):
        for b in sorted(balances, key=lambda b: b.grant.order):
            if due <= 0:
                break
            if b.remaining <= 0 or not b.grant.usable_at(at):
                continue
            amount = min(b.remaining, due)
            paid.append((b.grant.id, amount))
            due -= amount
    return paid


class Ledger(NamedTuple):
    """A grant's state at an instant: ``used + voided + expired + remaining = amount``."""

    used: Decimal
    voided: Decimal
    expired: Decimal
    remaining: Decimal


def ledger(grant: Grant, applications: Iterable[tuple[datetime, Decimal]],
           at: datetime) -> Ledger:
    """SPEC §12 at ``at``, from the grant's applications ``(sent at, amount)``. A grant pays
    nothing sent at or after its void or its expiry, so what is left then is what was not
    used at all."""
    zero = Decimal(0)
    with localcontext(EXACT):
        used = sum((amount for sent, amount in applications if sent <= at), zero)
        left = grant.amount - used
        voided = expired = zero
        if grant.voided_at is not None and grant.voided_at <= at:
            voided = left
        elif grant.expires_at is not None and grant.expires_at <= at:
            expired = left
        remaining = left - voided - expired
    return Ledger(used, voided, expired, remaining)


def negative_total_grant_id(subscription: str, boundary: date) -> str:
    """The grant a sent invoice with a negative total becomes (SPEC §12)."""
    return f"{RESERVED_PREFIX}{subscription}@{boundary.isoformat()}"


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class GrantRequest:
    id: str
    customer: str
    currency: str
    amount: Decimal
    expires_at: datetime | None
    priority: int


def parse_priority(value: Any, field: str) -> int:
    """An integer from 0 to 100 (default 50): an int, or its decimal text or value."""
    if value is None:
        return DEFAULT_PRIORITY
    integral_text = isinstance(value, str) and value.strip().lstrip("-").isdigit()
    integral_decimal = (isinstance(value, Decimal) and value.is_finite()
                        and value == value.to_integral_value())
    number: Any = int(value) if integral_text or integral_decimal else value
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 100:
        raise Invalid(field, f"must be an integer from 0 to 100, got {describe(value)}")
    return number


def parse_amount(value: Any, currency: str, field: str) -> Decimal:
    """A credit amount: > 0, with at most the currency's minor digits (``10.000`` USD is
    10.00; ``10.005`` is refused)."""
    amount = parse_decimal(value, field)
    if amount <= 0:
        raise Invalid(field, f"must be greater than 0, got {amount}")
    digits = minor_units(currency)
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -digits:
        raise Invalid(field, f"has more than {digits} decimal places, which {currency} "
                             f"does not have: {amount}")
    return amount


def parse_grant(data: Any, path: str = "") -> GrantRequest:
    """A grant as an application sends it (``id``, ``customer``, ``currency``, ``amount``,
    optional ``expires_at`` and ``priority``); what it needs of the store (a known
    customer, a free id, an expiry later than the grant) is the service's to check."""
    f = Fields(data, path)
    grant_id = f.text("id")
    if grant_id.startswith(RESERVED_PREFIX):
        f.fail("id", f"ids beginning with {RESERVED_PREFIX!r} are reserved for the credit "
                     "a negative invoice total becomes")
    customer = f.text("customer")
    currency = parse_currency(f.required("currency"), f.at("currency"))
    amount = parse_amount(f.required("amount"), currency, f.at("amount"))
    raw_expiry = f.raw("expires_at")
    expires_at = None if raw_expiry is None else parse_instant(raw_expiry, f.at("expires_at"))
    priority = parse_priority(f.raw("priority"), f.at("priority"))
    f.check_unknown()
    return GrantRequest(grant_id, customer, currency, amount, expires_at, priority)


def balances_by_currency(grants: Sequence[tuple[Grant, Ledger]],
                         at: datetime) -> dict[str, Decimal]:
    """A customer's balance per currency at ``at``: the remaining amounts of its grants
    usable then (granted before ``at``, not expired, not voided)."""
    result: dict[str, Decimal] = {}
    with localcontext(EXACT):
        for grant, state in grants:
            if grant.usable_at(at) and state.remaining > 0:
                result[grant.currency] = result.get(grant.currency, Decimal(0)) + state.remaining
    return dict(sorted(result.items()))
