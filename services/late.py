"""Late usage (SPEC §11): finding it when it is ingested, and billing it as adjustment
lines on the next invoices — at a cost proportional to what arrived late, not to history.

At ingest, an accepted event dated before its subscription's ``closed_until_at`` (the end
of the latest period whose invoice was computed) is late: it is recorded with its period
in ``late_usage``. An invoice computed later looks only at the late periods of its
subscription that no invoice has billed yet: it prices each such period again on
everything stored and carries the difference with what was billed as an adjustment line.

Races: while a subscription's next invoice may be being computed (from an hour before
its next boundary until the invoice is issued), ingest share-locks the subscription and a
bill run locks it for update before it aggregates, so an event is either counted by that
invoice or recorded as late, never neither.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy.orm import Session

from domain.catalog import Aggregation, Entity, Meter, Plan, UsageCharge
from domain.filters import Filter
from domain.invoices import Billed, InvoiceStatus, Line, Terms, adjustment
from domain.money import EXACT
from domain.periods import Interval, boundary, local_date, midnight, period_of
from domain.plan_history import PlanHistory, days, prorated_minimum
from domain.usage import UsageEvent
from persistence import catalog as catalog_repo
from persistence import invoices as invoices_repo
from persistence import usage as usage_repo
from persistence.tables import SubscriptionRow
from persistence.usage import Period

# How long before a subscription's next boundary an invoice of it may already be computed
# (clock differences between machines, a run processed early): ingest locks it from then.
CLOSING_MARGIN = timedelta(hours=1)


def flag_late(session: Session, events: Sequence[UsageEvent], customers: Collection[str],
              now: datetime) -> int:
    """Record which of these newly stored events are late, with their period; how many.
    ``customers`` are those of their customers with a subscription closing now or computed
    past one of their events (``usage_repo.late_or_closing``, asked by ``insert_events``
    when it stored them): only their events can be late or have a subscription to lock,
    and only their subscriptions are read, with the meters they charge."""
    if not events or not customers:
        return 0
    subs = usage_repo.billing_subscriptions(session, customers)
    if not subs:
        return 0
    by_meter: dict[tuple[str, str], list[usage_repo.Billing]] = defaultdict(list)
    for s in subs:
        by_meter[(s.customer, s.meter)].append(s)
    # Locked (shared, in one statement: no deadlock with a run locking them in id order):
    # those whose invoice a bill run may be computing now, and those these events are late
    # for — against a regeneration or a run counting their late usage at the same time.
    closing = {s.subscription for s in subs if s.next_boundary_at <= now + CLOSING_MARGIN}
    late_for = {s.subscription for event in events
                for s in by_meter.get((event.customer, event.meter), ())
                if s.closed_until_at is not None and event.timestamp < s.closed_until_at}
    fresh = usage_repo.lock_closing(session, closing | late_for)
    rows: list[dict[str, Any]] = []
    for event in events:
        for s in by_meter.get((event.customer, event.meter), ()):
            if not s.start_at <= event.timestamp or (s.end_at and event.timestamp >= s.end_at):
                continue
            if s.meters_from and not s.bills(event.meter, local_date(event.timestamp,
                                                                     s.timezone)):
                continue  # SPEC §14: the plan in force that day does not charge it
            closed = fresh.get(s.subscription, s.closed_until_at)
            if closed is not None and event.timestamp < closed:
                interval = Interval(s.interval)
                j = period_of(s.start, interval, s.timezone, event.timestamp)
                assert j is not None
                rows.append({"key": event.key, "subscription_id": s.subscription,
                             "meter_id": event.meter, "ingested_at": now,
                             "period_start": boundary(s.start, interval, j),
                             "period_end": boundary(s.start, interval, j + 1)})
            break  # an event is billed by one subscription (overlaps are refused)
    usage_repo.add_late(session, rows)
    return len(rows)


@dataclass
class ToAdjust:
    """One invoice being computed: subscription, plan, its boundary index, and (when it
    exists: a regeneration) its id."""

    row: SubscriptionRow
    plan: Plan
    k: int
    invoice_id: int | None = None
    history: PlanHistory | None = None  # its plan history (SPEC §14), when it has one
    lines: list[Line] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)  # the late events it bills
    error: Exception | None = None  # its adjustments could not be computed


@dataclass(frozen=True)
class _Wanted:
    """One (charge, segment) of a late period to price again for an item."""

    item: ToAdjust
    charge: UsageCharge  # as the segment's plan has it
    start: date  # the segment
    end: date
    period: tuple[date, date]  # the period it is part of
    keys: tuple[str, ...]  # the late events it bills

    @property
    def whole_period(self) -> bool:
        return (self.start, self.end) == self.period


def adjust(session: Session, entity: Entity, items: Sequence[ToAdjust],
           ingested_by: datetime | None = None,
           meters: Mapping[str, Meter] | None = None) -> None:
    """Fill each item's adjustment lines (SPEC §11) and the late events they bill, set-wise
    over the items (one entity). Only periods j ≤ k − 2 with late events not billed yet —
    or that this invoice adjusted before, when it is regenerated — are priced again, each
    segment of them on its plan (SPEC §14), and only while their covering invoice is
    sent. ``ingested_by`` limits the events counted (a preview of the past); None counts
    everything stored."""
    items = [i for i in items if i.k >= 2]
    if not items:
        return
    own = [i.invoice_id for i in items if i.invoice_id is not None]
    late = usage_repo.open_late(session, [i.row.id for i in items], own)
    own_periods = {i.invoice_id: invoices_repo.adjustment_periods(session, i.invoice_id)
                   for i in items if i.invoice_id is not None}
    wanted: list[_Wanted] = []
    for item in items:
        wanted += _wanted(item, late.get(item.row.id, {}),
                          own_periods.get(item.invoice_id, set())
                          if item.invoice_id is not None else set())
    if not wanted:
        return
    held = invoices_repo.period_lines(session, {w.item.row.id for w in wanted},
                                      {w.start for w in wanted}, own)
    wanted = [w for w in wanted if held.covering.get((w.item.row.id, w.start), (0, ""))[1]
              == InvoiceStatus.SENT]
    meters = meters or catalog_repo.meters(session)
    quantities: dict[tuple[date, date, str, str], Decimal] = {}
    if ingested_by is None:  # sum and count: the covering line's quantity + what came late
        quantities = _added_up(session, held, meters, [
            (w.item.row, w.charge.meter, w.charge.id, w.start, w.end) for w in wanted
            if meters[w.charge.meter].aggregation in ADDITIVE and not w.charge.filters
            and w.whole_period])
    by_window: dict[tuple[date, date], tuple[set[str], set[str]]] = defaultdict(
        lambda: (set(), set()))
    by_group: dict[tuple[date, date, str, tuple[Filter, ...]], set[str]] = defaultdict(set)
    for w in wanted:
        customer = w.item.row.customer_id
        if w.charge.filters:  # SPEC §13: each group of the segment, from the events
            by_group[(w.start, w.end, w.charge.meter, w.charge.filters)].add(customer)
        elif (w.start, w.end, customer, w.charge.meter) not in quantities:
            customers, meter_ids = by_window[(w.start, w.end)]
            customers.add(customer)
            meter_ids.add(w.charge.meter)
    for (start, end), (customers, meter_ids) in by_window.items():
        period = Period(midnight(start, entity.timezone), midnight(end, entity.timezone),
                        ingested_by)
        totals = usage_repo.aggregate_many(session, period, customers,
                                           [meters[m] for m in sorted(meter_ids)])
        for (c, m), q in totals.items():
            quantities.setdefault((start, end, c, m), q)
    grouped: dict[tuple[date, date, str, tuple[Filter, ...], str], Decimal] = {}
    for (start, end, meter, filters), customers in by_group.items():
        period = Period(midnight(start, entity.timezone), midnight(end, entity.timezone),
                        ingested_by)
        found = usage_repo.aggregate_groups(session, period, customers, meters[meter], filters)
        grouped.update(((start, end, c, filters, g), q) for (c, g), q in found.items())
    nothing = Billed(Decimal(0), Decimal(0))
    for w in wanted:
        sub, customer, currency = w.item.row.id, w.item.row.customer_id, w.item.plan.currency
        segment_days, period_days = days(w.start, w.end), days(*w.period)
        for group, pricing in w.charge.groups or ((None, w.charge),):
            if group is None:
                q_now = quantities[(w.start, w.end, customer, w.charge.meter)]
            else:
                q_now = grouped[(w.start, w.end, customer, w.charge.filters, group)]
            so_far = held.billed.get((sub, w.charge.id, group, w.start), nothing)
            line = adjustment(prorated_minimum(pricing, segment_days, period_days),
                              w.start, w.end, q_now, so_far, currency,
                              group=None if group is None else (w.charge.id, group))
            if line is not None:
                w.item.lines.append(line)
        w.item.accounts.extend(w.keys)


def _wanted(item: ToAdjust, late: Mapping[tuple[str, date, date], list[str]],
            own: set[tuple[str, date, date]]) -> list[_Wanted]:
    """The (charge, segment)s of an item's late periods — and of what the draft being
    regenerated adjusted before — to price again."""
    plans = item.history or PlanHistory.of(item.row.start, item.plan, item.row.plan_version)
    terms = Terms(item.row.start, item.row.end, item.plan, history=plans)
    last = terms.boundary(item.k - 1)  # a period adjusted here ends by b_(k-1)
    found: dict[tuple[str, date, date], _Wanted] = {}
    for (meter, start, end), keys in sorted(late.items()):
        if end > last:
            continue
        for segment in plans.segments(start, end):
            for charge in segment.plan.usage_charges:
                if charge.meter == meter:
                    key = (charge.id, segment.start, segment.end)
                    before = found.get(key)
                    found[key] = _Wanted(item, charge, segment.start, segment.end,
                                         (start, end), (*(before.keys if before else ()),
                                                        *keys))
    for charge_id, start, end in sorted(own):
        if (charge_id, start, end) in found:
            continue
        period = _period_of(terms, start)
        segment_plan = plans.in_force(start).plan
        adjusted = next((c for c in segment_plan.usage_charges if c.id == charge_id), None)
        if adjusted is not None and period is not None:
            found[(charge_id, start, end)] = _Wanted(item, adjusted, start, end, period, ())
    return [found[k] for k in sorted(found)]


def _period_of(terms: Terms, day: date) -> tuple[date, date] | None:
    """The period ``[b_j, b_(j+1))`` that contains ``day``."""
    k = 0
    while terms.boundary(k) <= day:
        if day < terms.boundary(k + 1):
            return terms.boundary(k), terms.boundary(k + 1)
        k += 1
    return None


# Aggregations whose period quantity is the sum of its events' contributions: the quantity
# everything ingested gives is the covering invoice's plus that of the late events since.
ADDITIVE = {Aggregation.SUM, Aggregation.COUNT}


def _added_up(session: Session, held: invoices_repo.PeriodLines, meters: Mapping[str, Meter],
              wanted: Sequence[tuple[SubscriptionRow, str, str, date, date]]
              ) -> dict[tuple[date, date, str, str], Decimal]:
    """For (subscription, meter, charge, period start) of ``sum`` and
    ``count`` meters: the period's quantity on everything stored, without reading the
    period's events — the covering invoice's usage line plus the late events it did not
    count. Exact because a late event is recorded in the same transaction that stores it,
    and a computation that counts it (the bill run, a regeneration) holds its subscription
    locked against that ingest (``flag_late``). Keyed like ``aggregate_many``'s result, by
    (period start, customer, meter); a pair whose covering line is missing is left out (read
    from the events instead)."""
    if not wanted:
        return {}
    late = usage_repo.late_totals(session, {w[0].id for w in wanted}, {w[3] for w in wanted})
    found: dict[tuple[date, date, str, str], Decimal] = {}
    for row, meter, charge_id, start, end in wanted:
        covering_id, _ = held.covering[(row.id, start)]
        base = held.usage_quantity.get((covering_id, charge_id, None))
        if base is None:
            continue
        total, count = late.get((row.id, meter, start), (Decimal(0), 0))
        with localcontext(EXACT):
            found[(start, end, row.customer_id, meter)] = base + (
                total if meters[meter].aggregation is Aggregation.SUM else Decimal(count))
    return found


def account_regenerated_covering(session: Session, subscription: str, boundary_: date,
                                 invoice_id: int) -> list[str]:
    """The late events of the period a draft covers, read before it is recomputed: its
    regeneration bills them."""
    late = usage_repo.open_late(session, [subscription])
    return [key for (_, _, end), keys in late.get(subscription, {}).items()
            if end == boundary_ for key in keys]


@dataclass(frozen=True)
class LateReport:
    key: str
    customer: str
    meter: str
    quantity: Decimal
    timestamp: datetime
    ingested_at: datetime
    subscription: str
    period_start: date
    period_end: date
    covering: str  # the covering invoice (its number, or SUB@DATE while a draft)
    billed_by: str  # how it was (or will be) billed


def report(*, customer: str | None = None, subscription: str | None = None,
           limit: int = 100) -> list[LateReport]:
    """Late events, newest first, with their covering invoice and what billed them: the
    covering draft's regeneration, an adjustment line on a later invoice — or not yet, or
    never (the subscription ended)."""
    from persistence.db import unit_of_work
    from persistence.subscriptions import get_many

    with unit_of_work() as session:
        rows = usage_repo.late_events(session, customer=customer, subscription=subscription,
                                      limit=limit)
        covering = invoices_repo.statuses(session, {(r.subscription, r.period_end)
                                                   for r in rows})
        ids = sorted({r.accounted_by for r in rows if r.accounted_by is not None}
                     | {i for i, _ in covering.values()})
        records = {r.id: r for r in invoices_repo.records(session, ids=ids)} if ids else {}
        subs = get_many(session, [r.subscription for r in rows])
    result: list[LateReport] = []
    for r in rows:
        cover_id, cover_status = covering.get((r.subscription, r.period_end), (None, ""))
        cover = records[cover_id].reference if cover_id in records else \
            f"{r.subscription}@{r.period_end}"
        sub = subs.get(r.subscription)
        ended = sub is not None and sub.end_at is not None \
            and sub.next_boundary_at > sub.end_at
        if r.accounted_by is not None and r.accounted_by == cover_id:
            how = f"regeneration of {cover}"
        elif r.accounted_by is not None:
            record = records.get(r.accounted_by)
            how = f"adjustment on {record.reference if record else r.accounted_by}"
        elif ended:
            how = "never: the subscription ended (its final invoice was issued)"
        elif cover_status == InvoiceStatus.DRAFT:
            how = f"not yet: regenerate the draft {cover}, or the invoice after its release"
        else:
            how = "not yet: the subscription's next invoice"
        result.append(LateReport(r.key, r.customer, r.meter, r.quantity, r.timestamp,
                                 r.ingested_at, r.subscription, r.period_start, r.period_end,
                                 cover, how))
    return result
