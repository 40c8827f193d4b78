"""Every actor of the engine, for ``dramatiq workers.actors`` and for applications that
enqueue messages::

    from workers.actors import record_usage
    record_usage.send([{"key": "evt-1", "customer": "c-1", "meter": "api-calls",
                        "quantity": "1", "timestamp": "2026-03-01T10:00:00Z"}])

Each actor is thin: it decodes its message, calls the service layer (``services``), and
enqueues follow-up messages after the service's transaction has committed.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import structlog

from domain.validation import parse_date, parse_instant
from services import (
    alert_events,
    alerts,
    clock,
    credits,
    deliveries,
    invoice_events,
    invoicing,
    payments,
    plan_changes,
    subscriptions,
    usage,
)
from services.commands import Outcome, run_command
from workers import deadletters
from workers.broker import RetryLater, actor, claim_undecodable, current_message, sent_at

log = structlog.get_logger("billing")


def current_message_id() -> str | None:
    message = current_message()
    return None if message is None else str(message.message_id)


def current_sent_at() -> datetime | None:
    """The instant the application sent the message being processed."""
    message = current_message()
    return None if message is None else sent_at(message)


class DeliveryFailed(RetryLater):
    """A delivery failed in a way worth retrying (timeout, 5xx, SMTP 4xx)."""


# ---------------------------------------------------------------------------- usage


@actor
def record_usage(events: list[dict[str, Any]]) -> None:
    """Ingest a batch of usage events. Redelivering the message changes nothing: the batch
    is recorded under the message id in the same transaction as its events, and a batch
    already recorded rolls the whole transaction back."""
    message_id = current_message_id() or f"direct-{uuid.uuid4()}"
    counts = usage.ingest_message(events, message_id, clock.now())
    if counts is None:
        log.info("usage batch already processed", actor="record_usage", message_id=message_id)
    else:
        log.info("usage recorded", actor="record_usage", message_id=message_id, **counts)
        if counts["accepted"]:  # where nothing folds (SQLite) and in replays
            enqueue_alert_events(alerts.after_ingest(events, clock.now()))


# ---------------------------------------------------------------------------- commands


@actor
def subscribe(id: str, customer: str, plan: str, start: str,
              discount: dict[str, Any] | None = None) -> None:
    request: dict[str, Any] = {"id": id, "customer": customer, "plan": plan, "start": start}
    if discount is not None:
        request["discount"] = discount
    message_id, at = current_message_id(), current_sent_at()
    run_command("subscribe",
                lambda s, now: subscriptions.do_subscribe(s, now, request, at, message_id or ""),
                message_id=message_id, subscription=id)


@actor
def cancel(subscription: str) -> None:
    """Cancel at the end of the current period, as of the instant the message was sent."""
    message_id, at = current_message_id(), current_sent_at()
    run_command("cancel", lambda s, now: subscriptions.do_cancel(
        s, now, subscription, at, message_id or ""), message_id=message_id,
        subscription=subscription)


@actor
def uncancel(subscription: str) -> None:
    message_id, at = current_message_id(), current_sent_at()
    run_command("uncancel", lambda s, now: subscriptions.do_uncancel(
        s, now, subscription, at, message_id or ""), message_id=message_id,
        subscription=subscription)


@actor
def set_draft_invoices(customer: str, value: bool) -> None:
    at = current_sent_at()
    run_command("set_draft_invoices",
                lambda s, now: subscriptions.do_set_draft_invoices(s, now, customer, value, at),
                message_id=current_message_id(), customer=customer)


@actor
def change_plan(subscription: str, plan: str, from_: str) -> None:
    """Move a subscription to another plan from a local date (SPEC §14), as of the
    instant the message was sent."""
    at = current_sent_at()
    run_command("change_plan", lambda s, now: plan_changes.do_change_plan(
        s, now, subscription, plan, from_, at), message_id=current_message_id(),
        subscription=subscription)


@actor
def grant_credits(id: str, customer: str, currency: str, amount: Any,
                  expires_at: str | None = None, priority: Any = None) -> None:
    """Grant prepaid credit (SPEC §12), granted at the instant it is applied."""
    request: dict[str, Any] = {"id": id, "customer": customer, "currency": currency,
                               "amount": amount, "expires_at": expires_at,
                               "priority": priority}
    run_command("grant_credits", lambda s, now: credits.do_grant(s, now, request),
                message_id=current_message_id(), grant=id)


@actor
def create_alert(alert: dict[str, Any]) -> None:
    """Create a spend or usage alert (docs/billing-rules.md §18); a value already past a
    threshold fires it at once."""
    outcome = run_command("create_alert", lambda s, now: alerts.do_create(s, now, alert),
                          message_id=current_message_id(),
                          alert=alert.get("id") if isinstance(alert, dict) else None)
    if outcome.status == "applied" and isinstance(alert, dict):
        enqueue_alert_events(alerts.evaluate_customers([str(alert.get("customer"))],
                                                       clock.now()))


@actor
def delete_alert(alert: str) -> None:
    run_command("delete_alert", lambda s, now: alerts.do_delete(s, now, alert),
                message_id=current_message_id(), alert=alert)


@actor
def void_credits(grant: str) -> None:
    """Void a credit grant: it pays nothing sent from then on."""
    run_command("void_credits", lambda s, now: credits.do_void(s, now, grant),
                message_id=current_message_id(), grant=grant)


@actor
def undecodable_message(raw: str, reason: str) -> None:
    """A message the broker held that nobody can read (see ``workers.broker``): kept as a
    dead letter with the reason, once, and acknowledged."""
    message = current_message()
    message_id = current_message_id() or f"undecodable-{uuid.uuid4()}"
    if message is not None:
        claim_undecodable(message, base64.b64decode(raw))
    deadletters.keep_undecodable(message_id, raw, reason, clock.now())
    log.error("undecodable message kept as a dead letter", message_id=message_id,
              reason=reason)


# ---------------------------------------------------------------------------- invoices


@actor
def bill_run(entity: str, local_date: str) -> None:
    """The entity's bill run of ``local_date`` (at 08:15 local): issue what is due, fanned
    out in chunks of about ``invoicing.CHUNK`` invoices per ``issue_invoices`` message (a
    customer's invoices in one chunk)."""
    _bill_run(entity, local_date)


@actor
def bill_runs(runs: list[list[str]]) -> None:
    """Several entities' bill runs, ``[[entity, local_date], …]``, one after the other: what
    the scheduler sends when many runs are due at once (thousands of entities share an
    08:15), so that handing them to the broker takes a few messages, not thousands."""
    for entity, local_date in runs:
        _bill_run(entity, local_date)


def _bill_run(entity: str, local_date: str) -> None:
    enqueue_events(payments.overdue_now(entity, clock.now()))  # invoice.overdue, once each
    planned = invoicing.plan_bill_run(entity, parse_date(local_date, "local_date"),
                                      clock.now())
    if isinstance(planned, Outcome):
        log.warning("bill run refused", actor="bill_run", entity=entity,
                    reason=planned.detail)
        return
    log.info("bill run", actor="bill_run", entity=entity, local_date=local_date,
             run_at=planned.run_at.isoformat(), due=len(planned.due))
    for pairs in planned.chunks():
        issue_invoices.send([[sub, b.isoformat()] for sub, b in pairs],
                            planned.run_at.isoformat())
    invoicing.finish_bill_run(entity, parse_date(local_date, "local_date"), clock.now())


@actor
def issue_invoices(pairs: list[list[str]], issued_at: str) -> None:
    """Issue the invoices of these (subscription, boundary) pairs, once however often sent."""
    run_at = parse_instant(issued_at, "issued_at")
    wanted = [(sub, parse_date(b, "boundary")) for sub, b in pairs]
    outcomes = invoicing.issue_chunk(wanted, run_at, clock.now())
    enqueue_deliveries([i for o in outcomes for i in o.deliver])
    for outcome in outcomes:
        if outcome.status == "refused":
            log.warning("issue_invoices refused", actor="issue_invoices", reason=outcome.detail)
    log.info("issue_invoices", actor="issue_invoices", issued=sum(
        o.status == "applied" for o in outcomes), of=len(outcomes))


@actor
def issue_invoice(subscription: str, boundary: str, issued_at: str) -> None:
    """Issue the invoice of ``subscription`` at ``boundary`` (once, however often sent)."""
    issue_invoices.fn([[subscription, boundary]], issued_at)


@actor
def release_invoice(subscription: str, boundary: str) -> None:
    outcome = run_command(
        "release_invoice", lambda s, now: invoicing.do_release(s, now, subscription, boundary),
        message_id=current_message_id(), subscription=subscription, boundary=boundary)
    enqueue_deliveries(list(outcome.deliver))


@actor
def regenerate_invoice(subscription: str, boundary: str) -> None:
    run_command(
        "regenerate_invoice",
        lambda s, now: invoicing.do_regenerate(s, now, subscription, boundary),
        message_id=current_message_id(), subscription=subscription, boundary=boundary)


# ---------------------------------------------------------------------------- delivery


@actor
def deliver_invoice(invoice_id: int) -> None:
    """Deliver a sent invoice through its entity's channel; retried while the failure is
    transient, recorded as failed when it is not."""
    outcome, result, context = deliveries.deliver(invoice_id, clock.now())
    bound = log.bind(actor="deliver_invoice", invoice=invoice_id, **context)
    if result is not None and not result.ok and result.retry:
        bound.warning("delivery will be retried", reason=result.detail)
        raise DeliveryFailed(result.detail)  # after the attempt was recorded
    if outcome.status == "refused":
        bound.warning("delivery failed", reason=outcome.detail)
    else:
        bound.info("deliver_invoice " + outcome.status, detail=outcome.detail)


def enqueue_deliveries(invoice_ids: list[int]) -> None:
    for invoice_id in invoice_ids:
        deliver_invoice.send(invoice_id)


@actor
def deliver_event(event_id: int) -> None:
    """Deliver an invoice's status change (invoice.paid, …) as a signed webhook, after the
    earlier ones of its invoice; retried while it waits or fails in a way worth retrying."""
    outcome, result = invoice_events.deliver(event_id, clock.now())
    bound = log.bind(actor="deliver_event", event=event_id)
    if outcome.status == "pending":
        raise DeliveryFailed(outcome.detail)  # its invoice's earlier events go first
    if result is not None and not result.ok and result.retry:
        bound.warning("event delivery will be retried", reason=result.detail)
        raise DeliveryFailed(result.detail)
    bound.info("deliver_event " + outcome.status, detail=outcome.detail)


def enqueue_events(event_ids: list[int] | tuple[int, ...]) -> None:
    for event_id in event_ids:
        deliver_event.send(event_id)


@actor
def deliver_alert_event(event_id: int) -> None:
    """Deliver an ``alert.triggered`` event as a signed webhook; retried while it fails
    in a way worth retrying."""
    outcome, result = alert_events.deliver(event_id, clock.now())
    bound = log.bind(actor="deliver_alert_event", alert_event=event_id)
    if result is not None and not result.ok and result.retry:
        bound.warning("alert event delivery will be retried", reason=result.detail)
        raise DeliveryFailed(result.detail)
    bound.info("deliver_alert_event " + outcome.status, detail=outcome.detail)


def enqueue_alert_events(event_ids: list[int] | tuple[int, ...]) -> None:
    for event_id in event_ids:
        deliver_alert_event.send(event_id)


def requeue_lost_deliveries(now: datetime) -> list[int]:
    """Deliveries, invoice events and alert events whose message was lost between a
    commit and its enqueue: sent again."""
    lost = deliveries.lost(now)
    enqueue_deliveries(lost)
    events = invoice_events.lost(now)
    enqueue_events(events)
    alerted = alert_events.lost(now)
    enqueue_alert_events(alerted)
    return [*lost, *events, *alerted]


__all__ = [
    "bill_run",
    "cancel",
    "change_plan",
    "create_alert",
    "delete_alert",
    "deliver_alert_event",
    "deliver_event",
    "deliver_invoice",
    "grant_credits",
    "issue_invoice",
    "issue_invoices",
    "record_usage",
    "regenerate_invoice",
    "release_invoice",
    "set_draft_invoices",
    "subscribe",
    "uncancel",
    "undecodable_message",
    "void_credits",
]
