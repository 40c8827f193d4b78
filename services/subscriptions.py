"""Subscription commands: subscribe, cancel, uncancel, and the customer's draft setting.

Two rules keep a customer from being billed twice (issue #8):

- **Serialized per customer.** Every command that can make two subscriptions of a
  customer overlap (subscribe, and any cancel or uncancel that lengthens a lifetime) first
  locks the customer's row, then checks for overlaps and writes. Two such commands for one
  customer never interleave, on any number of workers.
- **In the order sent.** A command carries the instant the application sent it
  (``sent_at``). A subscription's end is derived from all its cancels and uncancels taken
  in that order (``domain.subscriptions.end_from_commands``), so a command processed late
  cannot undo a newer one; the latest draft setting sent wins the same way. A cancel or
  uncancel that arrives before its subscription's subscribe is kept and applies once the
  subscription exists (if it was sent after the subscribe).

A change that would contradict an invoice already issued (an uncancel processed after the
final invoice, a cancel whose end falls before an issued invoice) is refused with that
reason: issued invoices are facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.catalog import Plan
from domain.invoices import Terms
from domain.periods import bill_run_instant, local_date, midnight, next_run_at, zone
from domain.plan_history import PlanHistory
from domain.subscriptions import (
    CANCEL,
    UNCANCEL,
    LifecycleCommand,
    SubscribeRequest,
    end_from_commands,
    lifetimes_overlap,
    parse_subscribe,
)
from domain.validation import Invalid
from persistence import catalog as catalog_repo
from persistence import plan_changes as plan_changes_repo
from persistence import subscriptions as subs_repo
from persistence.tables import SubscriptionRow
from services.commands import (
    INVALID,
    Outcome,
    applied,
    invalid,
    not_found,
    pending,
    refused,
    unchanged,
)


def _overlap(session: Session, customer: str, plan: Plan, start: date, end: date | None,
             exclude: str | None = None) -> str | None:
    """Why a lifetime ``[start, end)`` on ``plan`` would overlap another subscription of the
    customer that charges a same meter, or None."""
    for other, shared in subs_repo.sharing_meters(session, customer, plan.meters, exclude):
        if lifetimes_overlap(start, end, other.start, other.end):
            until = f"until {other.end}" if other.end else "with no end"
            return (f"overlaps subscription {other.id!r} (from {other.start} {until}) "
                    f"on meter {', '.join(shared)}")
    return None


def do_subscribe(session: Session, now: datetime, request: dict[str, Any],
                 sent_at: datetime | None = None, message_id: str = "") -> Outcome:
    try:
        req = parse_subscribe(request)
    except Invalid as exc:
        return invalid(exc)
    sent_at = sent_at or now
    try:
        with session.begin_nested():
            return _subscribe(session, now, req, sent_at, message_id)
    except IntegrityError:
        # the same id subscribed at the same time for another customer (whose lock this
        # one does not wait for): that one committed first; this one is a second subscribe
        pass
    return _subscribe(session, now, req, sent_at, message_id)


def _subscribe(session: Session, now: datetime, req: SubscribeRequest, sent_at: datetime,
               message_id: str) -> Outcome:
    customer = catalog_repo.customer(session, req.customer, lock=True)
    if customer is None:
        return not_found(f"subscribe.customer: {req.customer!r} is not a known customer",
                         "customer")
    existing = subs_repo.get(session, req.id)
    if existing is not None:
        same = (existing.customer_id, existing.plan_id, existing.start, existing.discount) == (
            req.customer, req.plan, req.start, req.discount.to_dict() if req.discount else None)
        if same and sent_at < existing.sent_at:
            return _subscribed_earlier(session, existing.id, sent_at, message_id)
        if same:
            return unchanged(f"subscription {req.id!r} exists with these terms")
        return refused(f"subscribe.id: subscription {req.id!r} exists with other terms")
    latest = catalog_repo.latest_plan(session, req.plan)
    if latest is None:
        return not_found(f"subscribe.plan: {req.plan!r} is not a known plan", "plan")
    version, plan = latest
    # share-locked, after the customer, in this order (persistence/catalog.py, "locks"): a
    # catalog change waits for this subscribe, or this subscribe for it — so the entity's
    # zone and the meters' aggregations it is sold on are the ones that stay
    entity = catalog_repo.entity(session, customer.entity, share=True)
    assert entity is not None
    catalog_repo.lock_meters(session, plan.meters, share=True)
    reason = _overlap(session, customer.id, plan, req.start, None)
    if reason:
        return refused(f"subscribe {req.id!r} {reason}", field="plan")
    start_at = midnight(req.start, entity.timezone)
    row = SubscriptionRow(
        id=req.id, customer_id=customer.id, entity_id=entity.id, plan_id=plan.id,
        plan_version=version, start=req.start, start_at=start_at,
        discount=req.discount.to_dict() if req.discount else None, sent_at=sent_at,
        created_at=now, next_k=0, next_boundary=req.start, next_boundary_at=start_at,
    )
    subs_repo.add(session, row)
    subs_repo.add_command(session, req.id, subs_repo.SUBSCRIBE, sent_at, message_id)
    detail = f"{req.id} on {plan.id} (version {version}) from {req.start}"
    # cancels and uncancels sent after this subscribe that were processed before it
    later = subs_repo.lifecycle(session, req.id)
    if later:
        row.end = end_from_commands(row.start, plan.interval, entity.timezone, later)
        row.end_at = None if row.end is None else midnight(row.end, entity.timezone)
        detail += f", ends {row.end}" if row.end else ""
    return applied(detail)


def _subscribed_earlier(session: Session, subscription: str, sent_at: datetime,
                        message_id: str) -> Outcome:
    """The same subscribe, sent before the one that created the subscription (the first
    of two sends, processed last). The subscription then dates from this one: a cancel or
    uncancel sent between the two was kept pending as "before the subscribe" and applies
    now — the outcome depends on the order the commands were sent, not processed."""
    row = subs_repo.get(session, subscription, lock=True)
    assert row is not None
    plan = catalog_repo.plan(session, row.plan_id, row.plan_version)
    entity = catalog_repo.entity(session, row.entity_id)
    assert plan is not None and entity is not None
    commands = subs_repo.lifecycle_after(session, subscription, sent_at)
    new_end = end_from_commands(row.start, plan.interval, entity.timezone, commands)
    if new_end != row.end:
        problem = _why_not_end(session, row, plan, new_end)
        if problem:
            return unchanged(f"subscription {subscription!r} exists with these terms; the "
                             f"commands sent after this earlier send cannot apply: {problem}")
    subs_repo.add_command(session, subscription, subs_repo.SUBSCRIBE, sent_at, message_id)
    row.sent_at = sent_at
    if new_end == row.end:
        return unchanged(f"subscription {subscription!r} exists with these terms (now dated "
                         "from this earlier send)")
    row.end = new_end
    row.end_at = None if new_end is None else midnight(new_end, entity.timezone)
    return applied(f"subscription {subscription!r} dated from this earlier send: "
                   + (f"ends {new_end}" if new_end else "cancellation removed"))


def _why_not_end(session: Session, row: SubscriptionRow, plan: Plan,
                 new_end: date | None) -> str | None:
    """Why ``row`` cannot end on ``new_end`` (None: no end): an issued invoice it would
    contradict, or — when its lifetime grows — an overlap on a meter it would create."""
    problem = _contradiction(session, row, new_end)
    if problem is None and (new_end is None or (row.end is not None and new_end > row.end)):
        reason = _overlap(session, row.customer_id, plan, row.start, new_end, exclude=row.id)
        problem = reason and f"{row.id!r} {reason}"
    return problem


def _contradiction(session: Session, row: SubscriptionRow, new_end: date | None) -> str | None:
    """Why moving the end of ``row`` to ``new_end`` would contradict an issued invoice."""
    old_end = row.end
    earliest = min(d for d in (old_end, new_end) if d is not None)
    for boundary, final in subs_repo.invoiced_from(session, row.id, earliest):
        if final:
            return f"its final invoice at {boundary} was already issued"
        if new_end is not None and boundary >= new_end:
            return (f"its invoice at {boundary} was already issued as a regular invoice, "
                    f"so it cannot end on {new_end}")
    if row.next_boundary > earliest:
        # a bill run has dealt with that boundary without an invoice to show for it (the
        # final invoice of a plan without usage charges has no line): as final
        return (f"a bill run has dealt with its boundary {earliest} already (as its end: "
                "the final invoice had no line)")
    return None


def do_lifecycle(session: Session, now: datetime, subscription: str, kind: str,
                 sent_at: datetime | None = None, message_id: str = "",
                 keep_pending: bool = True) -> Outcome:
    """A cancel or an uncancel sent at ``sent_at``. For an unknown subscription it is kept
    pending (a message may arrive before its subscribe) unless ``keep_pending`` is False
    (an HTTP request is answered now: not found)."""
    sent_at = sent_at or now
    found = subs_repo.get(session, subscription)
    if found is None and not keep_pending:
        return not_found(f"{kind}.subscription: {subscription!r} is not a known subscription")
    if found is None:
        subs_repo.add_command(session, subscription, kind, sent_at, message_id)
        return pending(f"refused for now: {kind}.subscription: {subscription!r} is not a "
                       "known subscription (kept: it applies if a subscribe sent before it "
                       "arrives later)")
    catalog_repo.customer(session, found.customer_id, lock=True)  # serialize per customer
    row = subs_repo.get(session, subscription, lock=True)
    assert row is not None
    plan = catalog_repo.plan(session, row.plan_id, row.plan_version)
    entity = catalog_repo.entity(session, row.entity_id)
    assert plan is not None and entity is not None
    commands = subs_repo.lifecycle(session, subscription)
    if sent_at < row.sent_at:
        return refused(f"{kind}: sent before subscription {subscription!r} was subscribed")
    commands.append(LifecycleCommand(kind, sent_at))
    commands.sort(key=lambda c: c.sent_at)  # stable: a tie goes after those processed before
    new_end = end_from_commands(row.start, plan.interval, entity.timezone, commands)
    if new_end == row.end:
        subs_repo.add_command(session, subscription, kind, sent_at, message_id)
        if kind == CANCEL:
            state = f"ends {row.end}" if row.end else "not cancelled (a later uncancel wins)"
        else:
            state = f"still ends {row.end}" if row.end else "not cancelled"
        return unchanged(state)
    problem = _why_not_end(session, row, plan, new_end)
    if problem:
        return refused(f"{kind} {problem}")
    subs_repo.add_command(session, subscription, kind, sent_at, message_id)
    row.end = new_end
    row.end_at = None if new_end is None else midnight(new_end, entity.timezone)
    return applied(f"ends {new_end}" if new_end else "cancellation removed")


def do_cancel(session: Session, now: datetime, subscription: str,
              sent_at: datetime | None = None, message_id: str = "",
              keep_pending: bool = True) -> Outcome:
    return do_lifecycle(session, now, subscription, CANCEL, sent_at, message_id, keep_pending)


def do_uncancel(session: Session, now: datetime, subscription: str,
                sent_at: datetime | None = None, message_id: str = "",
                keep_pending: bool = True) -> Outcome:
    return do_lifecycle(session, now, subscription, UNCANCEL, sent_at, message_id,
                        keep_pending)


def do_set_draft_invoices(session: Session, now: datetime, customer: str, value: Any,
                          sent_at: datetime | None = None) -> Outcome:
    if not isinstance(value, bool):
        return refused(f"set_draft_invoices.value: must be true or false, got {value!r}",
                       INVALID, "value")
    if catalog_repo.customer(session, customer, lock=True) is None:
        return not_found(f"set_draft_invoices.customer: {customer!r} is not a known customer")
    catalog_repo.add_draft_setting(session, customer, value, sent_at or now)
    current = catalog_repo.customer(session, customer)
    assert current is not None
    if current.draft_invoices != value:
        return unchanged(f"draft_invoices stays {current.draft_invoices} (set by a command "
                         "sent later)")
    return applied(f"draft_invoices = {value}")


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription as an operator (or the API) sees it."""

    id: str
    customer: str
    entity: str
    plan: str
    plan_version: int
    start: date
    end: date | None
    status: str  # scheduled | active | cancelled | ended
    next_boundary: date | None  # the next invoice's boundary (None once ended)
    next_run: datetime | None  # the bill run that will issue it (None: ended, or overdue)
    discount: dict[str, Any] | None
    created_at: datetime
    note: str | None = None  # why the next invoice comes when it does, if not obvious


def view(row: SubscriptionRow, plan: Plan, timezone: str, now: datetime,
         history: PlanHistory | None = None) -> SubscriptionView:
    """Where a subscription stands at ``now``: its status, the plan in force (SPEC §14),
    its next invoice and the run that will issue it (a subscription created after its
    boundary's 08:15 run gets that invoice at the next day's run)."""
    if row.end_at is not None and now >= row.end_at:
        status = "ended"
    elif row.end is not None:
        status = "cancelled"
    elif now < row.start_at:
        status = "scheduled"
    else:
        status = "active"
    terms = Terms(row.start, row.end, plan, history=history, version=row.plan_version)
    in_force = terms.plans.in_force(local_date(now, timezone))
    k = row.next_k
    while terms.reaches(terms.boundary(k)) and not terms.has_lines(k):
        k += 1  # e.g. the opening invoice of a usage-only plan is not issued
    next_boundary = terms.boundary(k) if terms.reaches(terms.boundary(k)) else None
    next_run = note = None
    if next_boundary is not None:
        own_run = bill_run_instant(next_boundary, timezone)
        next_run = next_run_at(timezone, max(own_run, row.created_at, now))
        if row.created_at > own_run:
            note = (f"created after the 08:15 run of {next_boundary}: the next run issues "
                    "its invoice")
        elif now > own_run:
            next_run = None  # the scheduler's next tick: it catches up what is due
            note = (f"overdue: the run of {next_boundary} has passed without issuing it; the "
                    "scheduler's next tick catches up (or `billing bill-run "
                    f"{row.entity_id} --date {now.astimezone(zone(timezone)).date()}`)")
    return SubscriptionView(row.id, row.customer_id, row.entity_id, in_force.plan.id,
                            in_force.version, row.start, row.end, status, next_boundary,
                            next_run, row.discount, row.created_at, note)


def views(now: datetime, *, customer: str | None = None, entity: str | None = None,
          ids: list[str] | None = None, limit: int = 1000) -> list[SubscriptionView]:
    from persistence.db import unit_of_work

    with unit_of_work() as session:
        rows = (list(subs_repo.get_many(session, ids).values()) if ids is not None else
                subs_repo.listing(session, customer=customer, entity=entity, limit=limit))
        zones = {e.id: e.timezone for e in catalog_repo.entities(session)}
        plans = catalog_repo.plans(session, {(r.plan_id, r.plan_version) for r in rows})
        changed = plan_changes_repo.with_changes(session, [r.id for r in rows])
        histories = plan_changes_repo.histories(session, [r for r in rows if r.id in changed])
    return [view(r, plans[(r.plan_id, r.plan_version)], zones[r.entity_id], now,
                 histories.get(r.id)) for r in sorted(rows, key=lambda r: r.id)]
