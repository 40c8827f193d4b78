"""Plan changes and proration (SPEC §14): a subscription's plan history, the segments a
change cuts a period into, the proration of a fee billed in advance, and which changes
are refused.

A history is the subscription's start with its first plan, then each change date with its
plan; the plan in force on a date is that of the latest entry on or before it. A period
``[b_j, b_(j+1))`` is cut by the change dates strictly inside it into segments, each billed
on the plan in force on its first day. Everything here is a pure function of the history
and the boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, localcontext
from fractions import Fraction
from itertools import pairwise

from domain.catalog import Plan, UsageCharge
from domain.money import AVERAGE_CONTEXT
from domain.taxes import round_half_away

PROPORTION = AVERAGE_CONTEXT  # SPEC §14: 28 significant digits, like `average`


@dataclass(frozen=True)
class PlanEntry:
    """From ``since`` on, the subscription is on ``plan`` (its ``version``)."""

    since: date
    plan: Plan
    version: int

    @property
    def key(self) -> tuple[str, int]:
        return self.plan.id, self.version


@dataclass(frozen=True)
class Segment:
    start: date
    end: date  # exclusive
    entry: PlanEntry

    @property
    def plan(self) -> Plan:
        return self.entry.plan


@dataclass(frozen=True)
class PlanHistory:
    entries: tuple[PlanEntry, ...]  # by ``since``; the first is the start

    @classmethod
    def of(cls, start: date, plan: Plan, version: int,
           changes: Sequence[PlanEntry] = ()) -> PlanHistory:
        return cls((PlanEntry(start, plan, version),
                    *sorted(changes, key=lambda e: e.since)))

    @property
    def start(self) -> PlanEntry:
        return self.entries[0]

    @property
    def changes(self) -> tuple[PlanEntry, ...]:
        return self.entries[1:]

    @property
    def latest_change(self) -> date | None:
        return self.entries[-1].since if len(self.entries) > 1 else None

    def in_force(self, day: date) -> PlanEntry:
        """The plan in force on ``day`` (before the start: the first plan)."""
        found = self.entries[0]
        for entry in self.entries[1:]:
            if entry.since <= day:
                found = entry
        return found

    def segments(self, start: date, end: date) -> list[Segment]:
        """``[start, end)`` cut by the change dates strictly inside it; one segment when
        none is."""
        cuts = [e.since for e in self.entries[1:] if start < e.since < end]
        edges = [start, *cuts, end]
        return [Segment(a, b, self.in_force(a)) for a, b in pairwise(edges)]

    def with_change(self, since: date, plan: Plan, version: int) -> PlanHistory:
        """The history after a change from ``since`` (refusals are ``why_refused``'s): a
        change on the latest change date replaces it, or undoes it when its plan is the one
        in force the day before."""
        entries = list(self.entries)
        if len(entries) > 1 and entries[-1].since == since:
            entries.pop()
            if entries[-1].plan.id == plan.id:  # back to the plan in force before it
                return PlanHistory(tuple(entries))
        entries.append(PlanEntry(since, plan, version))
        return PlanHistory(tuple(entries))

    def meters(self, end: date | None) -> frozenset[str]:
        """The meters charged by every plan in force on at least one day of the lifetime
        ``[start, end)`` — a plan replaced on its very first day, or scheduled from the
        end on, never is (SPEC §14, for the overlap rule of §1)."""
        found: set[str] = set()
        for entry, nxt in zip(self.entries, [*self.entries[1:], None], strict=True):
            first, last = entry.since, (nxt.since if nxt is not None else None)
            if last is not None and last <= first:
                continue  # replaced on its first day
            if end is not None and first >= end:
                continue  # in force only from the end on
            found |= entry.plan.meters
        return frozenset(found)


def days(start: date, end: date) -> int:
    """Calendar days of ``[start, end)``."""
    return (end - start).days


def prorated_minimum(charge: UsageCharge, segment_days: int, period_days: int) -> UsageCharge:
    """A segment's usage charge: its minimum prorated by days, in 28 significant digits and
    not rounded (the line's amount is rounded once, at the end). A whole period is the
    charge itself."""
    if charge.minimum is None or segment_days == period_days:
        return charge
    with localcontext(PROPORTION):
        minimum = charge.minimum * segment_days / period_days
    return replace(charge, minimum=minimum)


@dataclass(frozen=True)
class Proration:
    """One proration line: the part of a recurring fee of ``plan`` for ``[start, end)``,
    credited (negative ``days``) or charged."""

    charge: str
    plan: str
    start: date
    end: date
    days: int
    amount: Decimal
    taxes: tuple[str, ...] | None  # the charge's own tax rates in its plan (SPEC §15)


def proration(segments: Sequence[Segment], billed: PlanEntry | None, period_days: int,
              currency: str) -> list[Proration]:
    """SPEC §14: for each segment whose plan is not ``billed`` (the plan whose recurring
    lines the period's invoice in advance carried; None: it carried none), the fee of
    ``billed`` credited and the segment's plan's fee charged, each rounded half away from
    zero."""
    found: list[Proration] = []

    def part(amount: Decimal, n: int) -> Decimal:  # exact, then rounded once
        return round_half_away(Fraction(amount) * n / period_days, currency)

    for s in segments:
        if billed is not None and s.entry.key == billed.key:
            continue
        n = days(s.start, s.end)
        if billed is not None:
            for r in billed.plan.recurring_charges:
                found.append(Proration(r.id, billed.plan.id, s.start, s.end, -n,
                                       -part(r.amount, n), r.taxes))
        for r in s.plan.recurring_charges:
            found.append(Proration(r.id, s.plan.id, s.start, s.end, n, part(r.amount, n),
                                   r.taxes))
    return found


def why_refused(history: PlanHistory, plan: Plan, since: date, current_period: tuple[date, date],
                ended: bool, cancelled: bool) -> str | None:
    """Why a change to ``plan`` from ``since`` is refused (SPEC §14), or None. ``current_
    period`` is the period that contains the command's instant (before the start: period
    0). The plan's interval and currency, and the overlap rule, are checked by the
    caller's data too; here: the dates and what is in force."""
    first = history.start.plan
    if ended:
        return "the subscription has ended"
    if cancelled:
        return "the subscription is cancelled: uncancel it first"
    if plan.interval != first.interval:
        return f"plan {plan.id!r} bills every {plan.interval}, the subscription every " \
               f"{first.interval}"
    if plan.currency != first.currency:
        return f"plan {plan.id!r} is in {plan.currency}, the subscription in {first.currency}"
    period_start, next_boundary = current_period
    if since < period_start:
        return f"from {since} is before the current period, which began on {period_start}"
    if since > next_boundary:
        return f"from {since} is after the next boundary, {next_boundary}"
    latest = history.latest_change
    if latest is not None and since < latest:
        return f"from {since} is before the latest change, from {latest}"
    if latest == since:
        return None  # replaces or undoes the latest change
    if history.in_force(since).plan.id == plan.id:
        return f"plan {plan.id!r} is in force on {since} already"
    return None
