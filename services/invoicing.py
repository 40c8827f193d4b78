"""Bill runs and invoices: what a run must issue, issuing a chunk of (subscription,
boundary) pairs, release and regeneration of drafts, and the preview (SPEC §7, §8, §10)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from domain.catalog import Entity, Plan
from domain.invoices import (
    ComposedInvoice,
    Terms,
    compose_invoice,
    due_boundaries,
    next_boundary_after,
)
from domain.periods import bill_run_instant, boundary_index, midnight
from domain.subscriptions import parse_discount
from domain.validation import Invalid, parse_date
from persistence import catalog as catalog_repo
from persistence import invoices as invoices_repo
from persistence import subscriptions as subs_repo
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import SubscriptionRow
from persistence.usage import Period
from services import deliveries
from services.commands import Outcome, applied, refused

CHUNK = 250  # (subscription, boundary) pairs per issue_invoices message


def terms_of(row: SubscriptionRow, plan: Plan) -> Terms:
    discount = parse_discount(row.discount, "discount") if row.discount else None
    return Terms(start=row.start, end=row.end, plan=plan, discount=discount)


@dataclass(frozen=True)
class ToCompose:
    row: SubscriptionRow
    plan: Plan
    k: int


def compute_many(session: Session, entity: Entity, items: Sequence[ToCompose],
                 ingested_by: datetime) -> list[ComposedInvoice | None]:
    """Compose the invoices at ``b_k`` of many subscriptions of one entity, aggregating
    their closing periods set-wise (one round of ``GROUP BY`` per distinct period)."""
    meters = catalog_repo.meters(session)
    periods: dict[Period, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    item_period: list[Period | None] = []
    for item in items:
        if item.k == 0:
            item_period.append(None)
            continue
        terms = terms_of(item.row, item.plan)
        period = Period(midnight(terms.boundary(item.k - 1), entity.timezone),
                        midnight(terms.boundary(item.k), entity.timezone), ingested_by)
        customers, meter_ids = periods[period]
        customers.add(item.row.customer_id)
        meter_ids.update(item.plan.meters)
        item_period.append(period)
    aggregated = {
        period: usage_repo.aggregate_many(session, period, customers,
                                          [meters[m] for m in sorted(meter_ids)])
        for period, (customers, meter_ids) in periods.items()
    }
    composed: list[ComposedInvoice | None] = []
    for item, closing in zip(items, item_period, strict=True):
        usage: dict[str, Decimal] = {}
        if closing is not None:
            totals = aggregated[closing]
            usage = {c.id: totals[(item.row.customer_id, c.meter)]
                     for c in item.plan.usage_charges}
        composed.append(compose_invoice(terms_of(item.row, item.plan), item.k, usage))
    return composed


def compute(session: Session, row: SubscriptionRow, plan: Plan, entity: Entity, k: int,
            ingested_by: datetime) -> ComposedInvoice | None:
    """Aggregate period k−1 in SQL and compose the invoice at ``b_k``."""
    return compute_many(session, entity, [ToCompose(row, plan, k)], ingested_by)[0]


def due_invoices(session: Session, entity: Entity, run_at: datetime) -> list[tuple[str, date]]:
    """(subscription, boundary) pairs the run at ``run_at`` must issue and that do not exist,
    in (subscription, boundary) order."""
    subs = subs_repo.billable(session, entity.id, run_at)
    invoiced = invoices_repo.invoiced_boundaries(session, [s.id for s in subs])
    plans = catalog_repo.plans(session, {s.plan_id for s in subs})
    due: list[tuple[str, date]] = []
    for sub in subs:
        for _, b in due_boundaries(terms_of(sub, plans[sub.plan_id]), entity.timezone, run_at):
            if b not in invoiced.get(sub.id, set()):
                due.append((sub.id, b))
    return due


def issue(session: Session, now: datetime, pairs: Sequence[tuple[str, date]],
          issued_at: datetime) -> list[Outcome]:
    """Issue the invoices of ``pairs`` (in their order) that do not exist yet, in one
    transaction: bulk insert, then the sent ones numbered under one counter lock."""
    subs = subs_repo.get_many(session, [s for s, _ in pairs])
    invoiced = invoices_repo.invoiced_boundaries(session, list(subs))
    plans = catalog_repo.plans(session, {r.plan_id for r in subs.values()})
    customers = catalog_repo.customers(session, {r.customer_id for r in subs.values()})
    outcomes: list[Outcome] = []
    todo: dict[str, list[tuple[int, ToCompose]]] = defaultdict(list)  # by entity
    for index, (subscription, boundary) in enumerate(pairs):
        row = subs.get(subscription)
        outcomes.append(refused(f"{subscription}@{boundary}: unknown subscription"))
        if row is None:
            continue
        if row.created_at > issued_at:
            outcomes[index] = refused(
                f"{subscription}@{boundary}: did not exist at {issued_at.isoformat()}")
            continue
        if boundary in invoiced.get(subscription, set()):
            outcomes[index] = Outcome("unchanged", f"{subscription}@{boundary}: exists")
            continue
        plan = plans[row.plan_id]
        k = boundary_index(row.start, plan.interval, boundary)
        if k is None or not terms_of(row, plan).reaches(boundary):
            outcomes[index] = refused(
                f"{subscription}@{boundary}: not a boundary the subscription reaches")
            continue
        todo[row.entity_id].append((index, ToCompose(row, plan, k)))
    for entity_id, items in todo.items():
        entity = catalog_repo.entity(session, entity_id)
        assert entity is not None
        composed = compute_many(session, entity, [item for _, item in items], now)
        new = [
            invoices_repo.NewInvoice(item.row.id, entity_id, item.row.customer_id, invoice)
            for (_, item), invoice in zip(items, composed, strict=True) if invoice is not None
        ]
        ids = invoices_repo.add_many(session, new, issued_at=issued_at, computed_at=now)
        to_send = [ids[(n.subscription, n.invoice.boundary)] for n in new
                   if (n.subscription, n.invoice.boundary) in ids
                   and not customers[n.customer].draft_invoices]
        numbers = dict(zip(to_send, invoices_repo.send_many(
            session, entity_id, entity.invoice_prefix, to_send, now), strict=True))
        for (index, item), invoice in zip(items, composed, strict=True):
            label = f"{item.row.id}@{pairs[index][1]}"
            if invoice is None:
                outcomes[index] = Outcome("unchanged", f"{label}: no line to invoice")
            elif (item.row.id, invoice.boundary) not in ids:
                outcomes[index] = Outcome("unchanged", f"{label}: exists")
            else:
                invoice_id = ids[(item.row.id, invoice.boundary)]
                number = numbers.get(invoice_id)
                state = f"sent {number}" if number else "draft"
                outcomes[index] = applied(f"{label}: {state}, total {invoice.total}",
                                          deliver=(invoice_id,) if number else ())
    return outcomes


def issue_chunk(pairs: Sequence[tuple[str, date]], issued_at: datetime,
                now: datetime) -> list[Outcome]:
    """``issue`` in a transaction of its own (what one ``issue_invoices`` message does)."""
    with unit_of_work() as session:
        return issue(session, now, pairs, issued_at)


def _draft(session: Session, subscription: str, boundary: str,
           action: str) -> tuple[int, SubscriptionRow] | Outcome:
    try:
        day = parse_date(boundary, f"{action}.boundary")
    except Invalid as exc:
        return refused(str(exc))
    invoice = invoices_repo.find(session, subscription, day, lock=True)
    if invoice is None or invoice.id is None:
        return refused(f"{action}: no invoice of subscription {subscription!r} at {boundary}")
    if invoice.status != "draft":
        return refused(f"{action}: invoice {invoice.number} is {invoice.status}, not a draft")
    row = subs_repo.get(session, subscription)
    assert row is not None
    return invoice.id, row


def do_release(session: Session, now: datetime, subscription: str, boundary: str) -> Outcome:
    found = _draft(session, subscription, boundary, "release")
    if isinstance(found, Outcome):
        return found
    invoice_id, row = found
    entity = catalog_repo.entity(session, row.entity_id)
    assert entity is not None
    number = invoices_repo.send(session, invoice_id, entity.id, entity.invoice_prefix, now)
    return applied(f"sent as {number}", deliver=(invoice_id,))


def do_regenerate(session: Session, now: datetime, subscription: str, boundary: str) -> Outcome:
    found = _draft(session, subscription, boundary, "regenerate")
    if isinstance(found, Outcome):
        return found
    invoice_id, row = found
    plan = catalog_repo.plan(session, row.plan_id)
    entity = catalog_repo.entity(session, row.entity_id)
    assert plan is not None and entity is not None
    k = boundary_index(row.start, plan.interval, parse_date(boundary, "boundary"))
    assert k is not None
    composed = compute(session, row, plan, entity, k, now)
    if composed is None:
        return refused("regenerate: the invoice would have no line")
    invoices_repo.replace_draft(session, invoice_id, composed, now)
    return applied(f"recomputed, total {composed.total}")


@dataclass(frozen=True)
class BillRun:
    entity: str
    run_at: datetime
    due: list[tuple[str, date]]


def plan_bill_run(entity: str, local_date: date, now: datetime) -> BillRun | Outcome:
    """What the entity's bill run of ``local_date`` (08:15 local) must issue, or why it
    cannot run (an unknown entity, a run that has not come yet)."""
    with unit_of_work() as session:
        found = catalog_repo.entity(session, entity)
        if found is None:
            return refused(f"bill-run: {entity!r} is not a known entity")
        run_at = bill_run_instant(local_date, found.timezone)
        if run_at > now:
            return refused(f"bill-run: the {local_date} run is at {run_at.isoformat()}, "
                           "which has not come yet")
        return BillRun(entity, run_at, due_invoices(session, found, run_at))


def run_bill_run_now(entity: str, local_date: date,
                     now: datetime) -> tuple[list[Outcome], list[Outcome]]:
    """An entity's bill run of ``local_date`` done here and now, chunk by chunk, each sent
    invoice delivered right after its chunk commits (what ``billing bill-run`` does).
    Idempotent: what exists is not issued again. The outcomes of issuing, and of delivering.
    """
    planned = plan_bill_run(entity, local_date, now)
    if isinstance(planned, Outcome):
        return [planned], []
    due, run_at = planned.due, planned.run_at
    issued: list[Outcome] = []
    delivered: list[Outcome] = []
    for start in range(0, len(due), CHUNK):
        with unit_of_work() as session:
            chunk = issue(session, now, due[start:start + CHUNK], run_at)
        issued.extend(chunk)
        delivered.extend(deliveries.deliver_now(i) for o in chunk for i in o.deliver)
    return issued, delivered


def preview(subscription: str, at: datetime) -> ComposedInvoice:
    """SPEC §10: the invoice the next boundary after ``at`` would get if usage stopped now,
    from the events ingested up to ``at``. Nothing is stored."""
    with unit_of_work() as session:
        row = subs_repo.get(session, subscription)
        if row is None:
            raise Invalid("subscription", f"{subscription!r} is not a known subscription")
        plan = catalog_repo.plan(session, row.plan_id)
        entity = catalog_repo.entity(session, row.entity_id)
        assert plan is not None and entity is not None
        k, boundary = next_boundary_after(terms_of(row, plan), entity.timezone, at)
        if row.end is not None and boundary > row.end:
            raise Invalid("subscription", f"{subscription!r} ended on {row.end}")
        composed = compute(session, row, plan, entity, k, at)
    if composed is None:
        raise Invalid("subscription", f"the invoice at {boundary} would have no line")
    return composed
