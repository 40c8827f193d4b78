"""Changing a subscription's plan (SPEC §14): the ``change_plan`` command and its preview.

A change is serialized per customer like subscribe, cancel and uncancel (the customer's
row is locked first, then the subscription's), judged at the instant it was sent, and
stored as a row of the plan history (``persistence.plan_changes``). A bill run computes
each period's segments and prorations from the history as it is when the invoice is
computed (``services.invoicing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from domain.invoices import ComposedInvoice, Terms
from domain.periods import Interval, boundary, midnight, period_of
from domain.plan_history import PlanHistory, why_refused
from domain.subscriptions import lifetimes_overlap
from domain.validation import Invalid, check_text, parse_date
from persistence import catalog as catalog_repo
from persistence import plan_changes as plan_changes_repo
from persistence import subscriptions as subs_repo
from persistence.db import unit_of_work
from persistence.tables import SubscriptionRow
from services import invoicing
from services.commands import INVALID, Outcome, applied, invalid, not_found, refused


def current_period(row: SubscriptionRow, interval: Interval, tz: str,
                   at: datetime) -> tuple[int, date, date]:
    """The period that contains ``at`` (before the start: period 0): (k, b_k, b_(k+1))."""
    k = period_of(row.start, interval, tz, at) or 0
    return k, boundary(row.start, interval, k), boundary(row.start, interval, k + 1)


def do_change_plan(session: Session, now: datetime, subscription: Any, plan_id: Any,
                   since: Any, sent_at: datetime | None = None) -> Outcome:
    """Move ``subscription`` to the latest version of ``plan_id`` from the local date
    ``since`` (SPEC §14), or refuse with the reason and change nothing."""
    t = sent_at or now
    for name, value in (("subscription", subscription), ("plan", plan_id)):
        if not isinstance(value, str) or not value:
            return refused(f"change_plan.{name}: must be an id, got {value!r}", INVALID, name)
        try:
            check_text(value, name)
        except Invalid as exc:
            return invalid(exc)
    try:
        day = parse_date(since, "from")
    except Invalid as exc:
        return invalid(exc)
    found = subs_repo.get(session, subscription)
    if found is None:
        return not_found(f"change_plan.subscription: {subscription!r} is not a known "
                         "subscription", "subscription")
    catalog_repo.customer(session, found.customer_id, lock=True)  # serialize per customer
    latest = catalog_repo.latest_plan(session, plan_id)
    if latest is None:
        return not_found(f"change_plan.plan: {plan_id!r} is not a known plan", "plan")
    version, plan = latest
    # as a subscribe does, after the customer and before the subscription (the order of
    # every lock, persistence/catalog.py): the entity share-locked (its zone, from which
    # ``since_at`` is computed, stays) and the new plan's meters (a catalog change that
    # counted who is charged for them waits for this change, or this change for it)
    entity = catalog_repo.entity(session, found.entity_id, share=True)
    assert entity is not None
    catalog_repo.lock_meters(session, plan.meters, share=True)
    row = subs_repo.get(session, subscription, lock=True)
    assert row is not None
    history = plan_changes_repo.histories(session, [row])[row.id]
    interval = history.start.plan.interval
    k, period_start, next_boundary = current_period(row, interval, entity.timezone, t)
    reason = why_refused(history, plan, day, (period_start, next_boundary),
                         ended=row.end_at is not None and row.end_at <= t,
                         cancelled=row.end is not None)
    if reason is None:
        reason = _invoiced_after(session, row, day)
    after = history.with_change(day, plan, version) if reason is None else history
    if reason is None:
        reason = _overlap(session, row, after, day)
    if reason is not None:
        return refused(f"change_plan {subscription!r} to {plan_id!r} from {day}: {reason}")
    plan_changes_repo.store(session, row.id, history, after, midnight(day, entity.timezone),
                            t, now)
    _reconsider(session, row, after, k, period_start, entity.timezone)
    in_force = after.in_force(day)
    if in_force.plan.id != plan.id:
        return applied(f"{row.id}: the change from {day} is called off; {in_force.plan.id} "
                       "stays in force")
    return applied(f"{row.id} on {plan.id} (version {version}) from {day}")


def _invoiced_after(session: Session, row: SubscriptionRow, since: date) -> str | None:
    """A change judged at the instant it was sent may be processed after the bill run that
    invoiced the period it falls in (sent before the run, processed after): it would change
    the days of an issued invoice. An invoice at a boundary later than ``since`` refuses
    it. (One at ``since`` itself billed the fee in advance: the next invoice prorates it.)"""
    for day, _ in subs_repo.invoiced_from(session, row.id, since):
        if day > since:
            return f"the invoice at {day} already billed the days from {since}"
    return None


def _overlap(session: Session, row: SubscriptionRow, after: PlanHistory,
             since: date) -> str | None:
    """Why the new plan would make the customer's subscriptions overlap on a meter from
    ``since`` on (SPEC §1, §14), or None."""
    meters = after.in_force(since).plan.meters
    if not meters:
        return None
    others = [r for r in subs_repo.listing(session, customer=row.customer_id) if r.id != row.id]
    histories = plan_changes_repo.histories(session, others)
    for other in others:
        shared = meters & histories[other.id].meters(other.end)
        if shared and lifetimes_overlap(since, row.end, other.start, other.end):
            until = f"until {other.end}" if other.end else "with no end"
            return (f"it would overlap subscription {other.id!r} (from {other.start} {until}) "
                    f"on meter {', '.join(sorted(shared))}")
    return None


def _reconsider(session: Session, row: SubscriptionRow, history: PlanHistory, k: int,
                period_start: date, tz: str) -> None:
    """SPEC §7: an invoice skipped for having no line is considered again by later runs.
    A change from the current period's first day may give the invoice there a line (the
    new plan's fee in advance): when it was skipped, the next run deals with it again."""
    if row.next_k <= k or history.latest_change != period_start:
        return
    if any(b == period_start for b, _ in subs_repo.invoiced_from(session, row.id,
                                                                 period_start)):
        return
    terms = Terms(row.start, row.end, history.start.plan, history=history)
    if terms.has_lines(k):
        row.next_k, row.next_boundary = k, period_start
        row.next_boundary_at = midnight(period_start, tz)


@dataclass(frozen=True)
class ChangePreview:
    outcome: Outcome  # what the change would do (refused: why)
    invoice: ComposedInvoice | None  # the next invoice's estimate with the change made


def preview_change(subscription: str, plan_id: str, since: str,
                   now: datetime) -> ChangePreview:
    """What ``change_plan`` would do now, and the estimate of the next invoice with it —
    its segments and prorations (SPEC §14); nothing is stored (the change is made in a
    savepoint that is rolled back)."""
    with unit_of_work() as session:
        savepoint = session.begin_nested()
        try:
            outcome = do_change_plan(session, now, subscription, plan_id, since, now)
            invoice = None
            if outcome.status == "applied":
                invoice = invoicing.estimate(session, subscription, now, latest=True)
        finally:
            savepoint.rollback()
    return ChangePreview(outcome, invoice)


@dataclass(frozen=True)
class PlanPeriod:
    """One entry of a subscription's plan history, for people: a plan from a date."""

    plan: str
    version: int
    since: date


def history_of(subscription: str) -> list[PlanPeriod]:
    """The subscription's plan history: its first plan from its start, then each change."""
    with unit_of_work() as session:
        row = subs_repo.get(session, subscription)
        if row is None:
            raise Invalid("subscription", f"{subscription!r} is not a known subscription")
        history = plan_changes_repo.histories(session, [row])[row.id]
    return [PlanPeriod(e.plan.id, e.version, e.since) for e in history.entries]

