"""Subscription commands: subscribe, cancel, uncancel, and the customer's draft setting."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from domain.catalog import Plan
from domain.periods import cancellation_end, midnight
from domain.subscriptions import lifetimes_overlap, parse_subscribe
from domain.validation import Invalid
from persistence import catalog as catalog_repo
from persistence import subscriptions as subs_repo
from persistence.tables import SubscriptionRow
from services.commands import Outcome, applied, refused, unchanged


def _overlap(session: Session, customer: str, plan: Plan, start: Any, end: Any,
             exclude: str | None = None) -> str | None:
    """Why a lifetime ``[start, end)`` on ``plan`` would overlap another subscription of the
    customer that charges a same meter, or None."""
    for other in subs_repo.sharing_meters(session, customer, plan.meters, exclude):
        if lifetimes_overlap(start, end, other.start, other.end):
            other_plan = catalog_repo.plan(session, other.plan_id)
            shared = sorted(plan.meters & (other_plan.meters if other_plan else frozenset()))
            until = f"until {other.end}" if other.end else "with no end"
            return (f"overlaps subscription {other.id!r} (from {other.start} {until}) "
                    f"on meter {', '.join(shared)}")
    return None


def do_subscribe(session: Session, now: datetime, request: dict[str, Any]) -> Outcome:
    try:
        req = parse_subscribe(request)
    except Invalid as exc:
        return refused(str(exc))
    existing = subs_repo.get(session, req.id)
    if existing is not None:
        same = (existing.customer_id, existing.plan_id, existing.start, existing.discount) == (
            req.customer, req.plan, req.start, req.discount.to_dict() if req.discount else None)
        if same:
            return unchanged(f"subscription {req.id!r} exists with these terms")
        return refused(f"subscribe.id: subscription {req.id!r} exists with other terms")
    customer = catalog_repo.customer(session, req.customer, lock=True)
    if customer is None:
        return refused(f"subscribe.customer: {req.customer!r} is not a known customer")
    plan = catalog_repo.plan(session, req.plan)
    if plan is None:
        return refused(f"subscribe.plan: {req.plan!r} is not a known plan")
    entity = catalog_repo.entity(session, customer.entity)
    assert entity is not None
    reason = _overlap(session, customer.id, plan, req.start, None)
    if reason:
        return refused(f"subscribe {req.id!r} {reason}")
    subs_repo.add(session, SubscriptionRow(
        id=req.id, customer_id=customer.id, entity_id=entity.id, plan_id=plan.id,
        start=req.start, start_at=midnight(req.start, entity.timezone),
        discount=req.discount.to_dict() if req.discount else None, created_at=now,
    ))
    return applied(f"{req.id} on {plan.id} from {req.start}")


def do_cancel(session: Session, now: datetime, subscription: str) -> Outcome:
    row = subs_repo.get(session, subscription, lock=True)
    if row is None:
        return refused(f"cancel.subscription: {subscription!r} is not a known subscription")
    if row.end is not None:
        return unchanged(f"already cancelled: ends {row.end}")
    plan = catalog_repo.plan(session, row.plan_id)
    entity = catalog_repo.entity(session, row.entity_id)
    assert plan is not None and entity is not None
    row.end = cancellation_end(row.start, plan.interval, entity.timezone, now)
    row.end_at = midnight(row.end, entity.timezone)
    return applied(f"ends {row.end}")


def do_uncancel(session: Session, now: datetime, subscription: str) -> Outcome:
    row = subs_repo.get(session, subscription, lock=True)
    if row is None:
        return refused(f"uncancel.subscription: {subscription!r} is not a known subscription")
    if row.end is None or row.end_at is None:
        return unchanged("not cancelled")
    if now >= row.end_at:
        return unchanged(f"already ended on {row.end}")
    plan = catalog_repo.plan(session, row.plan_id)
    assert plan is not None
    reason = _overlap(session, row.customer_id, plan, row.start, None, exclude=row.id)
    if reason:
        return refused(f"uncancel {row.id!r} {reason}")
    row.end = None
    row.end_at = None
    return applied("cancellation removed")


def do_set_draft_invoices(session: Session, customer: str, value: Any) -> Outcome:
    if not isinstance(value, bool):
        return refused(f"set_draft_invoices.value: must be true or false, got {value!r}")
    if not catalog_repo.set_draft_invoices(session, customer, value):
        return refused(f"set_draft_invoices.customer: {customer!r} is not a known customer")
    return applied(f"draft_invoices = {value}")
