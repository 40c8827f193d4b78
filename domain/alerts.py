"""Spend and usage alerts: which thresholds a value crosses (docs/billing-rules.md §19).

Pure functions: no session, no clock. An alert watches one value of a subscription's
current period — the estimated usage amount, or one meter's quantity — *increasing*: a
threshold is crossed when the value reaches it (``value ≥ threshold``), once per period;
or a customer's credit balance in a currency — *decreasing*: a threshold is crossed when
the balance goes below it (``balance < threshold``), and is armed again only once the
balance is back at or above it.

Thresholds are the listed ones, strictly increasing and > 0, then, with a recurring
``step``, ``last + step``, ``last + 2·step``, … without end ("every 100.00 after 500.00").
The recurring ones are numbered 1, 2, …; what has fired of them is the highest number.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from domain.money import parse_currency
from domain.validation import Fields, Invalid, describe, join, parse_decimal

KINDS = ("usage_amount", "usage_quantity", "credit_balance")
DECREASING = frozenset({"credit_balance"})
MAX_THRESHOLDS = 50  # listed on one alert
MAX_LISTED = 100  # recurring thresholds named by one event (the count says how many)


@dataclass(frozen=True)
class Thresholds:
    values: tuple[Decimal, ...]
    step: Decimal | None = None

    @property
    def last(self) -> Decimal:
        return self.values[-1]

    def recurring(self, n: int) -> Decimal:
        """The n-th recurring threshold (n ≥ 1)."""
        assert self.step is not None and n >= 1
        return self.last + self.step * n

    def recurring_reached(self, value: Decimal) -> int:
        """How many recurring thresholds are ≤ ``value``."""
        if self.step is None or value < self.last + self.step:
            return 0
        return int((value - self.last) // self.step)

    def up_to(self, value: Decimal, limit: int | None = None) -> list[Decimal]:
        """Every threshold ≤ ``value``, in order (the first ``limit`` of them)."""
        found = [t for t in self.values if t <= value]
        n = self.recurring_reached(value)
        if limit is not None:
            n = min(n, max(0, limit - len(found)))
        return found + [self.recurring(i) for i in range(1, n + 1)]


@dataclass(frozen=True)
class Fired:
    """What an alert has fired in one period (or, decreasing, what is still below)."""

    fixed: frozenset[Decimal] = frozenset()
    recurring: int = 0  # the highest recurring threshold fired, by its number


@dataclass(frozen=True)
class Crossing:
    """The thresholds one evaluation crosses: listed ones, and recurring numbers
    ``recurring_from … recurring_to`` (none when ``recurring_to`` < ``recurring_from``)."""

    fixed: tuple[Decimal, ...] = ()
    recurring_from: int = 1
    recurring_to: int = 0

    @property
    def count(self) -> int:
        return len(self.fixed) + max(0, self.recurring_to - self.recurring_from + 1)

    def __bool__(self) -> bool:
        return self.count > 0

    def thresholds(self, of: Thresholds, limit: int = MAX_LISTED) -> list[Decimal]:
        """The thresholds crossed, ascending; at most ``limit`` (0: no limit) — the
        highest ones."""
        low = self.recurring_from if not limit else max(self.recurring_from,
                                                         self.recurring_to - limit + 1)
        recurring = range(low, self.recurring_to + 1)
        listed = [*self.fixed, *(of.recurring(n) for n in recurring)]
        return listed[-limit:] if limit else listed


def crossed_between(previous: Decimal, current: Decimal, of: Thresholds) -> list[Decimal]:
    """Increasing: the thresholds ``t`` with ``previous < t ≤ current`` (the plain rule)."""
    if current <= previous:
        return []
    return [t for t in of.up_to(current) if t > previous]


def increasing(value: Decimal, of: Thresholds, fired: Fired) -> Crossing:
    """The thresholds ``value`` has reached that have not fired yet in this period. A
    threshold reached before but not fired (usage folded at once past several) fires now:
    one evaluation crossing several names them all."""
    fixed = tuple(t for t in of.values if t <= value and t not in fired.fixed)
    reached = of.recurring_reached(value)
    return Crossing(fixed, fired.recurring + 1, reached if reached > fired.recurring else 0)


def decreasing(balance: Decimal, of: Thresholds,
               below: Collection[Decimal]) -> tuple[tuple[Decimal, ...], tuple[Decimal, ...]]:
    """(thresholds the balance went below that had not fired, thresholds that had fired
    and are armed again because the balance is back at or above them)."""
    fired = set(below)
    new = tuple(t for t in of.values if balance < t and t not in fired)
    rearmed = tuple(sorted(t for t in fired if balance >= t))
    return new, rearmed


def first_crossings(values: Sequence[Decimal], of: Thresholds,
                    start: Decimal = Decimal(0)) -> dict[Decimal, int]:
    """Replaying a sequence of evaluations of one period: at which index each threshold
    fires (what the tests check the rule against)."""
    fired = Fired()
    result: dict[Decimal, int] = {}
    for i, value in enumerate(values):
        crossing = increasing(value, of, fired)
        for t in crossing.thresholds(of, limit=0):
            result[t] = i
        fired = Fired(fired.fixed | set(crossing.fixed),
                      max(fired.recurring, crossing.recurring_to))
    return result


# ---------------------------------------------------------------------------- input


@dataclass(frozen=True)
class AlertRequest:
    id: str
    customer: str
    subscription: str | None
    kind: str
    meter: str | None
    currency: str | None
    thresholds: Thresholds


def parse_thresholds(raw: Any, step: Any, kind: str, path: str = "") -> Thresholds:
    """Thresholds from input: a non-empty list of numbers > 0, strictly increasing, and an
    optional recurring ``step`` > 0 (increasing alerts only). ``Invalid`` names the field."""
    at = join(path, "thresholds")
    if not isinstance(raw, list) or not raw:
        raise Invalid(at, f"must be a non-empty list of decimal numbers, got {describe(raw)}")
    if len(raw) > MAX_THRESHOLDS:
        raise Invalid(at, f"at most {MAX_THRESHOLDS} thresholds")
    values: list[Decimal] = []
    for i, item in enumerate(raw):
        number = parse_decimal(item, join(at, i))
        if number <= 0:
            raise Invalid(join(at, i), f"must be greater than 0, got {number}")
        if values and number <= values[-1]:
            raise Invalid(join(at, i),
                          f"must be greater than the previous threshold ({values[-1]})")
        values.append(number)
    recurring: Decimal | None = None
    if step is not None:
        if kind in DECREASING:
            raise Invalid(join(path, "recurring_step"), "a balance alert has no recurring step")
        recurring = parse_decimal(step, join(path, "recurring_step"))
        if recurring <= 0:
            raise Invalid(join(path, "recurring_step"), f"must be greater than 0, got {recurring}")
    return Thresholds(tuple(values), recurring)


def parse_alert(data: Any, path: str = "") -> AlertRequest:
    """An alert as an application sends it: ``id``, ``customer``, optional
    ``subscription`` (else each of the customer's), ``kind``, ``meter`` (usage_quantity),
    ``currency`` (credit_balance), ``thresholds``, optional ``recurring_step``. Whether the
    customer, subscription and meter exist is the service's to check."""
    f = Fields(data, path)
    alert_id = f.text("id")
    customer = f.text("customer")
    subscription = f.optional_text("subscription")
    kind = f.choice("kind", KINDS)
    meter = currency = None
    if kind == "usage_quantity":
        meter = f.text("meter")
    elif f.has("meter"):
        f.fail("meter", f"only a usage_quantity alert names a meter, not {kind}")
    if kind == "credit_balance":
        currency = parse_currency(f.required("currency"), f.at("currency"))
        if f.has("subscription"):
            f.fail("subscription", "a credit_balance alert is on the customer's balance")
    elif f.has("currency"):
        f.fail("currency", f"only a credit_balance alert names a currency, not {kind}")
    thresholds = parse_thresholds(f.required("thresholds"), f.raw("recurring_step"), kind,
                                  path)
    f.raw("thresholds")
    f.check_unknown()
    return AlertRequest(alert_id, customer, subscription, kind, meter, currency, thresholds)


def period_key(start: date | None) -> str:
    """How a period is named in the crossings (a balance alert has none: "")."""
    return "" if start is None else start.isoformat()
