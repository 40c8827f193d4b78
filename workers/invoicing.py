"""Bill runs and invoices: ``bill_run`` fans out ``issue_invoice`` for every due
(subscription, boundary); ``release_invoice`` and ``regenerate_invoice`` act on drafts."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import structlog
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
from domain.validation import Invalid, parse_date, parse_instant
from persistence import catalog as catalog_repo
from persistence import invoices as invoices_repo
from persistence import subscriptions as subs_repo
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import SubscriptionRow
from workers import clock
from workers.broker import actor
from workers.commands import Outcome, applied, refused, run_command

log = structlog.get_logger("billing")


def terms_of(row: SubscriptionRow, plan: Plan) -> Terms:
    discount = parse_discount(row.discount, "discount") if row.discount else None
    return Terms(start=row.start, end=row.end, plan=plan, discount=discount)


def compute(session: Session, row: SubscriptionRow, plan: Plan, entity: Entity, k: int,
            ingested_by: datetime) -> ComposedInvoice | None:
    """Aggregate period k−1 in SQL and compose the invoice at ``b_k``."""
    terms = terms_of(row, plan)
    usage: dict[str, Decimal] = {}
    if k >= 1:
        meters = catalog_repo.meters(session)
        start_at = midnight(terms.boundary(k - 1), entity.timezone)
        end_at = midnight(terms.boundary(k), entity.timezone)
        by_meter: dict[str, Decimal] = {}
        for charge in plan.usage_charges:
            if charge.meter not in by_meter:
                by_meter[charge.meter] = usage_repo.aggregate(
                    session, row.customer_id, meters[charge.meter], start_at, end_at, ingested_by)
            usage[charge.id] = by_meter[charge.meter]
    return compose_invoice(terms, k, usage)


def due_invoices(session: Session, entity: Entity, run_at: datetime) -> list[tuple[str, date]]:
    """(subscription, boundary) pairs the run at ``run_at`` must issue and that do not exist."""
    subs = subs_repo.billable(session, entity.id, run_at)
    invoiced = invoices_repo.invoiced_boundaries(session, [s.id for s in subs])
    plans: dict[str, Plan] = {}
    due: list[tuple[str, date]] = []
    for sub in subs:
        if sub.plan_id not in plans:
            found = catalog_repo.plan(session, sub.plan_id)
            assert found is not None
            plans[sub.plan_id] = found
        for _, b in due_boundaries(terms_of(sub, plans[sub.plan_id]), entity.timezone, run_at):
            if b not in invoiced.get(sub.id, set()):
                due.append((sub.id, b))
    return due


@actor
def bill_run(entity: str, local_date: str) -> None:
    """The entity's bill run of ``local_date`` (at 08:15 local): issue what is due."""
    now = clock.now()
    with unit_of_work() as session:
        found = catalog_repo.entity(session, entity)
        if found is None:
            log.error("bill run for an unknown entity", actor="bill_run", entity=entity)
            return
        run_at = bill_run_instant(parse_date(local_date, "local_date"), found.timezone)
        if run_at > now:
            log.warning("bill run is not due yet", entity=entity, run_at=run_at.isoformat())
            return
        due = due_invoices(session, found, run_at)
    log.info("bill run", actor="bill_run", entity=entity, local_date=local_date,
             run_at=run_at.isoformat(), due=len(due))
    for subscription, boundary in due:
        issue_invoice.send(subscription, boundary.isoformat(), run_at.isoformat())


def do_issue(session: Session, now: datetime, subscription: str, boundary: date,
             issued_at: datetime) -> Outcome:
    row = subs_repo.get(session, subscription)
    if row is None:
        return refused(f"subscription {subscription!r} is not known")
    if row.created_at > issued_at:
        return refused(f"subscription {subscription!r} did not exist at {issued_at.isoformat()}")
    if invoices_repo.find(session, subscription, boundary) is not None:
        return Outcome("unchanged", "invoice exists")
    plan = catalog_repo.plan(session, row.plan_id)
    entity = catalog_repo.entity(session, row.entity_id)
    customer = catalog_repo.customer(session, row.customer_id)
    assert plan is not None and entity is not None and customer is not None
    k = boundary_index(row.start, plan.interval, boundary)
    if k is None or (row.end is not None and boundary > row.end):
        return refused(f"{boundary} is not a boundary that subscription {subscription!r} reaches")
    composed = compute(session, row, plan, entity, k, now)
    if composed is None:
        return Outcome("unchanged", "no line to invoice")
    invoice_id = invoices_repo.add(
        session, subscription_id=row.id, entity_id=entity.id, customer_id=customer.id,
        invoice=composed, status="draft", issued_at=issued_at, computed_at=now,
    )
    if invoice_id is None:
        return Outcome("unchanged", "invoice exists")
    if customer.draft_invoices:
        return applied(f"draft at {boundary}, total {composed.total}")
    number = invoices_repo.send(session, invoice_id, entity.id, entity.invoice_prefix, now)
    return applied(f"sent {number} at {boundary}, total {composed.total}")


@actor
def issue_invoice(subscription: str, boundary: str, issued_at: str) -> None:
    """Issue the invoice of ``subscription`` at ``boundary`` (once, however often sent)."""
    day = parse_date(boundary, "boundary")
    run_at = parse_instant(issued_at, "issued_at")
    now = clock.now()
    with unit_of_work() as session:
        outcome = do_issue(session, now, subscription, day, run_at)
    level = log.warning if outcome.status == "refused" else log.info
    level("issue_invoice " + outcome.status, actor="issue_invoice", subscription=subscription,
          boundary=boundary, detail=outcome.detail)


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
    return applied(f"sent as {number}")


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


@actor
def release_invoice(subscription: str, boundary: str) -> None:
    run_command("release_invoice", lambda s, now: do_release(s, now, subscription, boundary),
                subscription=subscription, boundary=boundary)


@actor
def regenerate_invoice(subscription: str, boundary: str) -> None:
    run_command("regenerate_invoice",
                lambda s, now: do_regenerate(s, now, subscription, boundary),
                subscription=subscription, boundary=boundary)


def run_bill_run_now(entity: str, local_date: date, now: datetime) -> list[Outcome]:
    """An entity's bill run of ``local_date`` done here and now, invoice by invoice (what
    ``billing bill-run`` does). Idempotent: what exists is not issued again."""
    with unit_of_work() as session:
        found = catalog_repo.entity(session, entity)
        if found is None:
            return [refused(f"bill-run: {entity!r} is not a known entity")]
        run_at = bill_run_instant(local_date, found.timezone)
        if run_at > now:
            return [refused(f"bill-run: the {local_date} run is at {run_at.isoformat()}, "
                            "which has not come yet")]
        due = due_invoices(session, found, run_at)
    outcomes: list[Outcome] = []
    for subscription, boundary in due:
        with unit_of_work() as session:
            outcomes.append(do_issue(session, now, subscription, boundary, run_at))
    return outcomes


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
