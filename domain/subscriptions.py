"""Subscriptions: the subscribe request, discounts, lifetimes and their overlap.

SPEC §1, §6, §7.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any

from domain.money import EXACT, round_money
from domain.periods import Interval, cancellation_end, midnight
from domain.validation import Fields, Invalid, describe, parse_date, parse_decimal


@dataclass(frozen=True)
class Discount:
    percent: Decimal | None = None
    amount: Decimal | None = None
    cycles: int | None = None

    def applies_to(self, k: int) -> bool:
        """It applies to the invoices at ``b_0 … b_(cycles−1)``, or to all without cycles."""
        return self.cycles is None or k < self.cycles

    def of(self, subtotal: Decimal, currency: str) -> Decimal:
        if self.percent is not None:
            with localcontext(EXACT):
                share = subtotal * self.percent / 100
            return round_money(share, currency)
        assert self.amount is not None
        return min(round_money(self.amount, currency), subtotal)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.percent is not None:
            d["percent"] = str(self.percent)
        if self.amount is not None:
            d["amount"] = str(self.amount)
        if self.cycles is not None:
            d["cycles"] = self.cycles
        return d


def parse_discount(data: Any, path: str) -> Discount:
    f = Fields(data, path)
    has_percent, has_amount = f.has("percent"), f.has("amount")
    f.raw("percent"), f.raw("amount")
    if has_percent == has_amount:
        raise Invalid(path, "must have exactly one of percent or amount")
    percent = amount = None
    if has_percent:
        percent = parse_decimal(f.raw("percent"), f.at("percent"))
        if not 0 < percent <= 100:
            f.fail("percent", f"must be in (0, 100], got {percent}")
    else:
        amount = parse_decimal(f.raw("amount"), f.at("amount"))
        if amount <= 0:
            f.fail("amount", f"must be greater than 0, got {amount}")
    cycles = f.raw("cycles")
    if cycles is not None and (isinstance(cycles, bool) or not isinstance(cycles, int)
                               or cycles < 0):
        f.fail("cycles", f"must be a whole number ≥ 0, got {describe(cycles)}")
    f.check_unknown()
    return Discount(percent, amount, cycles)


@dataclass(frozen=True)
class SubscribeRequest:
    id: str
    customer: str
    plan: str
    start: date
    discount: Discount | None


def parse_subscribe(data: Any, path: str = "subscribe") -> SubscribeRequest:
    f = Fields(data, path)
    request = SubscribeRequest(
        id=f.text("id"),
        customer=f.text("customer"),
        plan=f.text("plan"),
        start=parse_date(f.required("start"), f.at("start")),
        discount=parse_discount(f.raw("discount"), f.at("discount")) if f.has("discount") else None,
    )
    f.check_unknown()
    return request


def lifetimes_overlap(
    a_start: date, a_end: date | None, b_start: date, b_end: date | None
) -> bool:
    """Do ``[a_start, a_end)`` and ``[b_start, b_end)`` share a day? (None = no end)."""
    return (b_end is None or a_start < b_end) and (a_end is None or b_start < a_end)


CANCEL = "cancel"
UNCANCEL = "uncancel"


@dataclass(frozen=True)
class LifecycleCommand:
    """A cancel or uncancel with the instant the application sent it."""

    kind: str  # cancel | uncancel
    sent_at: datetime


def end_from_commands(start: date, interval: Interval, tz: str,
                      commands: Iterable[LifecycleCommand]) -> date | None:
    """The end of a subscription after its cancels and uncancels, taken in the order they
    were sent (SPEC §7): a cancel at t ends it at the first boundary b_k (k ≥ 1) later than
    t; an uncancel before that end removes it; a second cancel, and anything after the end,
    changes nothing. Depending only on the order sent, the outcome is the same whatever
    order the messages were processed in."""
    end: date | None = None
    for command in commands:
        if command.kind == CANCEL:
            if end is None:
                end = cancellation_end(start, interval, tz, command.sent_at)
        elif end is not None and command.sent_at < midnight(end, tz):
            end = None
    return end
