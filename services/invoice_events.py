"""Delivering an invoice's status changes (``invoice.paid``, ``invoice.voided``, …): the
outbox rows ``services.payments`` writes with each change, sent after the commit as signed
webhooks (Standard Webhooks, the entity's webhook channel or the deployment's), at least
once — each with a ``webhook-id`` of its own, the same on every attempt — and in order per
invoice: an event waits for the invoice's own delivery (``invoice.sent``) and for the
invoice's earlier events. Other channels (e-mail, outbox folder) carry invoice documents,
not status events: an event for them is recorded as done, not sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from persistence import catalog as catalog_repo
from persistence import deliveries as deliveries_repo
from persistence import payments as payments_repo
from persistence.db import unit_of_work
from persistence.tables import InvoiceRow
from services.commands import Outcome, pending, unchanged
from services.deliveries import default_delivery
from services.delivery.channels import Result
from services.delivery.events import send_event

LOST_AFTER = timedelta(minutes=5)


def deliver(event_id: int, now: datetime) -> tuple[Outcome, Result | None]:
    """One attempt at delivering an event, recorded; ``pending`` when it must wait for an
    earlier one of its invoice (try again later)."""
    with unit_of_work() as session:
        row = payments_repo.claim_event(session, event_id)
        if row is None:
            return unchanged(f"event {event_id}: none here (or another worker has it)"), None
        if row.status != "pending":
            return unchanged(f"event {event_id}: {row.status}"), None
        row.updated_at = now
        if payments_repo.earlier_pending(session, row) or \
                deliveries_repo.status_of(session, row.invoice_id) == "pending":
            return pending(f"event {event_id} waits for the earlier ones of its invoice"), None
        invoice = session.get(InvoiceRow, row.invoice_id)
        assert invoice is not None
        entity = catalog_repo.entity(session, invoice.entity_id)
        assert entity is not None
        return send_event(row, entity.delivery or default_delivery(), f"evt_{row.id}",
                          row.payload, f"event {event_id} ({row.type})", f"event {event_id}")


def lost(now: datetime) -> list[int]:
    """Pending events not attempted for a while: their message was lost (a crash between
    a commit and its enqueue). The scheduler sends them again."""
    with unit_of_work() as session:
        return payments_repo.stale_events(session, now - LOST_AFTER)
