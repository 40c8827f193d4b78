"""Invoice composition and which invoices are due (SPEC §6, §7, §11).

One invoice per subscription per boundary ``b_k`` it reaches:
- usage lines when k ≥ 1, for period k−1 (even at quantity 0);
- recurring lines, in advance for period k, when the subscription continues past ``b_k``;
- adjustment lines for earlier periods whose usage changed after their invoice was sent
  (late usage, §11): the period priced again, minus what the other invoices billed;
- the invoice at the end of a cancelled subscription is ``final``: usage only;
- an invoice without a line (the opening invoice of a usage-only plan) is not issued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, localcontext
from enum import StrEnum

from domain.catalog import Plan, UsageCharge
from domain.money import EXACT, round_money
from domain.periods import boundaries, boundary, midnight
from domain.plan_history import (
    PlanEntry,
    PlanHistory,
    Segment,
    days,
    prorated_minimum,
    proration,
)
from domain.pricing import price_usage
from domain.subscriptions import Discount
from domain.taxes import NO_TAX, TaxAmount, TaxPolicy, invoice_taxes

RECURRING = "recurring"
USAGE = "usage"
ADJUSTMENT = "adjustment"
PRORATION = "proration"


class InvoiceStatus(StrEnum):
    """Where an invoice is in its life: a ``draft`` (no number; regenerated, released or
    left for the bill run to send) or ``sent`` (numbered, final; its payment status moves
    on, ``domain/payments.py``). Stored and shown as these words."""

    DRAFT = "draft"
    SENT = "sent"


# A draft is sent (by a bill run, a release) or regenerated (replaced by another draft);
# a sent invoice never changes status again.
TRANSITIONS: Mapping[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.DRAFT, InvoiceStatus.SENT}),
    InvoiceStatus.SENT: frozenset(),
}


def can_become(status: str, to: InvoiceStatus) -> bool:
    """Whether an invoice of ``status`` may become ``to`` (``draft`` to ``draft``: it is
    regenerated)."""
    return to in TRANSITIONS.get(InvoiceStatus(status), frozenset())


@dataclass(frozen=True)
class Line:
    type: str  # "recurring" | "usage" | "adjustment" | "proration"
    charge: str
    period_start: date
    period_end: date  # exclusive
    quantity: Decimal
    amount: Decimal
    taxes: tuple[str, ...] = ()  # the tax rates it carries (SPEC §15)
    # SPEC §13: the group of a charge with filters — a filter's id, or DEFAULT_GROUP ("")
    # for its default group; None for a charge without filters
    filter: str | None = None
    plan: str | None = None  # SPEC §14: the plan of a proration line


@dataclass(frozen=True)
class ComposedInvoice:
    boundary: date
    k: int
    final: bool
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    discount: Decimal
    total: Decimal  # subtotal − discount + tax
    # SPEC §12: what prepaid credits would pay of it (a preview's estimate; an invoice
    # records what they paid when it is sent)
    credits: Decimal = Decimal(0)
    taxes: tuple[TaxAmount, ...] = ()  # SPEC §15, per rate, sorted by id
    tax_exempt: bool = False  # its customer was tax-exempt when it was computed
    advance: PlanEntry | None = None  # SPEC §14: the plan whose recurring lines it carries

    @property
    def tax(self) -> Decimal:
        return sum((t.amount for t in self.taxes), round_money(Decimal(0), self.currency))

    @property
    def amount_due(self) -> Decimal:
        return max(self.total - self.credits, Decimal(0))


@dataclass(frozen=True)
class Terms:
    """What composing an invoice needs to know of a subscription: its start and end, its
    first plan (whose interval and currency are the subscription's), its discount, and its
    plan history (SPEC §14; None: the first plan all along)."""

    start: date
    end: date | None  # the end boundary once cancelled
    plan: Plan
    discount: Discount | None = None
    history: PlanHistory | None = None
    version: int = 0  # the first plan's version (with no history)

    @property
    def plans(self) -> PlanHistory:
        return self.history or PlanHistory.of(self.start, self.plan, self.version)

    def boundary(self, k: int) -> date:
        return boundary(self.start, self.plan.interval, k)

    def reaches(self, day: date) -> bool:
        return self.end is None or day <= self.end

    def final(self, k: int) -> bool:
        return self.end is not None and self.boundary(k) == self.end

    def segments(self, k: int) -> list[Segment]:
        """The segments of period k (SPEC §14)."""
        return self.plans.segments(self.boundary(k), self.boundary(k + 1))

    def has_lines(self, k: int) -> bool:
        """Whether the invoice at ``b_k`` may have a line: recurring lines (of the plan in
        force on ``b_k``) unless it is the final one, usage lines from k = 1 — or, when the
        plan changed during period k−1, proration lines. (No line: the opening invoice of a
        usage-only plan, the final invoice of a plan without usage charges.)"""
        plans = self.plans
        at = self.boundary(k)
        if not self.final(k) and plans.in_force(at).plan.recurring_charges:
            return True
        if k < 1:
            return False
        previous = self.boundary(k - 1)
        return any(s.plan.usage_charges for s in self.segments(k - 1)) or any(
            previous <= e.since < at for e in plans.changes)


def line_order(line: Line) -> tuple[str, str, str, date, str]:
    """Lines are listed by (type, charge, filter — the default group first —,
    period_start, plan), in plain string order."""
    return line.type, line.charge, line.filter or "", line.period_start, line.plan or ""


@dataclass(frozen=True)
class Billed:
    """What a subscription's other invoices hold for one (charge, period): the sum of the
    quantities and of the amounts of its usage line and adjustment lines."""

    quantity: Decimal
    amount: Decimal


def adjustment(charge: UsageCharge, period_start: date, period_end: date, quantity: Decimal,
               billed: Billed, currency: str, group: tuple[str, str] | None = None
               ) -> Line | None:
    """SPEC §11: the period's charge priced again on ``quantity`` (everything ingested by
    now), less what was billed for it; None when the amounts are equal (even if the
    quantities differ: a minimum, a cap or an allowance absorbed the late usage). For a
    group of a charge with filters (SPEC §13), ``charge`` is the group's price and
    ``group`` is (the charge's id, the group)."""
    now = price_usage(charge, quantity, currency)
    if now == billed.amount:
        return None
    charge_id, filter_id = group if group is not None else (charge.id, None)
    with localcontext(EXACT):
        return Line(ADJUSTMENT, charge_id, period_start, period_end,
                    quantity - billed.quantity, now - billed.amount, filter=filter_id)


def recurring_lines(terms: Terms, k: int, tax: TaxPolicy = NO_TAX) -> list[Line]:
    """In advance, for period k, when the subscription continues past ``b_k``: the fees
    of the plan in force on ``b_k``."""
    at = terms.boundary(k)
    if terms.final(k):
        return []
    plan = terms.plans.in_force(at).plan
    nxt = terms.boundary(k + 1)
    return [Line(RECURRING, r.id, at, nxt, Decimal(1), round_money(r.amount, plan.currency),
                 tax.rates_of(r.taxes))
            for r in plan.recurring_charges]


# (segment start, charge, group or None) -> quantity
Usage = Mapping[tuple[date, str, str | None], Decimal]


def usage_lines(terms: Terms, k: int, usage: Usage, tax: TaxPolicy = NO_TAX) -> list[Line]:
    """In arrears, for each segment of period k−1 (k ≥ 1; one segment without a plan
    change), one line per usage charge of the segment's plan — or, for a charge with
    filters, one per group (SPEC §13) — even at quantity 0. A segment is priced like a
    period, its minimum prorated by days (SPEC §14)."""
    if k < 1:
        return []
    currency = terms.plan.currency
    period_days = days(terms.boundary(k - 1), terms.boundary(k))
    lines = []
    for segment in terms.segments(k - 1):
        n = days(segment.start, segment.end)
        for u in segment.plan.usage_charges:
            for group, pricing in u.groups or ((None, u),):
                q = usage.get((segment.start, u.id, group), Decimal(0))
                price = price_usage(prorated_minimum(pricing, n, period_days), q, currency)
                lines.append(Line(USAGE, u.id, segment.start, segment.end, q, price,
                                  tax.rates_of(u.taxes), filter=group))
    return lines


def proration_lines(terms: Terms, k: int, advance: PlanEntry | None,
                    tax: TaxPolicy = NO_TAX) -> list[Line]:
    """SPEC §14: the fees of period k−1 billed in advance by ``advance`` (the plan whose
    recurring lines the invoice at ``b_(k−1)`` carried; None: none), prorated by days for
    each segment on another plan."""
    if k < 1:
        return []
    segments = terms.segments(k - 1)
    period_days = days(terms.boundary(k - 1), terms.boundary(k))
    return [Line(PRORATION, p.charge, p.start, p.end, Decimal(p.days), p.amount,
                 tax.rates_of(p.taxes), plan=p.plan)
            for p in proration(segments, advance, period_days, terms.plan.currency)]


def with_taxes(lines: Sequence[Line], terms: Terms, tax: TaxPolicy) -> list[Line]:
    """Adjustment lines with the tax rates of their charge in the plan of their segment
    (SPEC §15); the other lines have theirs from their source."""
    def rates(line: Line) -> tuple[str, ...]:
        plan = terms.plans.in_force(line.period_start).plan
        charges = {c.id: c.taxes for c in plan.charges}
        return tax.rates_of(charges.get(line.charge))

    return [replace(ln, taxes=rates(ln)) if ln.type == ADJUSTMENT else ln for ln in lines]


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    discount: Decimal
    taxes: tuple[TaxAmount, ...]
    total: Decimal


def totals(lines: Sequence[Line], discount_terms: Discount | None, k: int, currency: str,
           rates: Mapping[str, Decimal]) -> Totals:
    """SPEC §6 and §15: ``subtotal`` = Σ lines; the discount on a positive subtotal; tax
    per rate on what the discount leaves; ``total = subtotal − discount + tax``."""
    with localcontext(EXACT):  # never the 28-digit default context: amounts can be long
        subtotal = sum((line.amount for line in lines), Decimal(0))
        discount = Decimal(0)
        # a subtotal ≤ 0 (a credit, through negative adjustments) gets no discount
        if discount_terms is not None and discount_terms.applies_to(k) and subtotal > 0:
            discount = discount_terms.of(subtotal, currency)
        discount = round_money(discount, currency)  # "0.00", not "0"
        taxes = invoice_taxes([(ln.amount, ln.taxes) for ln in lines], subtotal, discount,
                              rates, currency)
        total = subtotal - discount + sum((t.amount for t in taxes), Decimal(0))
    return Totals(round_money(subtotal, currency), discount, taxes, total)


IN_FORCE = object()  # the default ``advance``: the plan in force on b_(k−1)


def compose_invoice(
    terms: Terms, k: int, usage: Usage, adjustments: Sequence[Line] = (),
    tax: TaxPolicy = NO_TAX, advance: PlanEntry | object | None = IN_FORCE,
) -> ComposedInvoice | None:
    """The invoice at ``b_k`` from its line sources — recurring (in advance), usage of
    period k−1 per segment (``usage``: the aggregated quantity per segment, usage charge
    and group, missing = 0), proration of period k−1's fees against ``advance`` (the plan
    the invoice at ``b_(k−1)`` billed in advance; by default the one in force then), the
    adjustment lines of late usage — each line with its tax rates, then totalled. None
    when the invoice would have no line."""
    at = terms.boundary(k)
    before = terms.plans.in_force(terms.boundary(k - 1)) if k >= 1 else None
    billed = before if advance is IN_FORCE else advance
    assert billed is None or isinstance(billed, PlanEntry)
    recurring = recurring_lines(terms, k, tax)
    lines = [*recurring, *usage_lines(terms, k, usage, tax),
             *proration_lines(terms, k, billed, tax), *adjustments]
    if not lines:
        return None
    lines = sorted(with_taxes(lines, terms, tax), key=line_order)
    currency = terms.plan.currency
    result = totals(lines, terms.discount, k, currency, tax.rates)
    return ComposedInvoice(
        boundary=at, k=k, final=terms.final(k), currency=currency, lines=tuple(lines),
        subtotal=result.subtotal, discount=result.discount, total=result.total,
        taxes=result.taxes, tax_exempt=tax.exempt,
        advance=terms.plans.in_force(at) if recurring else None)


def due_boundaries(terms: Terms, tz: str, run_at: datetime,
                   first: int = 0) -> list[tuple[int, date]]:
    """Every ``(k, b_k)`` from ``k = first`` on that the subscription reaches, whose
    instant ``b_k 00:00 local`` is at or before ``run_at``, and whose invoice would have a
    line."""
    return [(k, b) for k, b in reached(terms, tz, run_at, first) if terms.has_lines(k)]


def reached(terms: Terms, tz: str, run_at: datetime, first: int = 0) -> list[tuple[int, date]]:
    """Every ``(k, b_k)`` from ``k = first`` on that the subscription reaches by ``run_at``."""
    found: list[tuple[int, date]] = []
    k = first
    while True:
        b = terms.boundary(k)
        if midnight(b, tz) > run_at or not terms.reaches(b):
            return found
        found.append((k, b))
        k += 1


def next_boundary_after(terms: Terms, tz: str, at: datetime) -> tuple[int, date]:
    """The first boundary later than ``at`` (what a preview at ``at`` is for, SPEC §10)."""
    for k, b in boundaries(terms.start, terms.plan.interval):
        if midnight(b, tz) > at:
            return k, b
    raise AssertionError("unreachable")
