"""Delivering ``alert.triggered`` (docs/billing-rules.md §19): the outbox rows
``services.alerts`` writes with the crossings they report, sent after the commit as signed
webhooks (Standard Webhooks, through the customer's entity's webhook channel or the
deployment's), at least once — each with a ``webhook-id`` of its own (``alert_evt_{id}``),
the same on every attempt. Like invoice events (services/invoice_events.py), a channel
that is not a webhook carries documents only: the event is recorded as done, not sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from persistence import alerts as alerts_repo
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from persistence.tables import AlertRow
from services.commands import Outcome, unchanged
from services.deliveries import default_delivery
from services.delivery.channels import Result
from services.delivery.events import send_event

LOST_AFTER = timedelta(minutes=5)


def webhook_id(event_id: int) -> str:
    return f"alert_evt_{event_id}"


def deliver(event_id: int, now: datetime) -> tuple[Outcome, Result | None]:
    """One attempt at delivering an event, recorded."""
    with unit_of_work() as session:
        row = alerts_repo.claim_event(session, event_id)
        if row is None:
            return unchanged(f"alert event {event_id}: none here (or another worker has it)"), \
                None
        if row.status != "pending":
            return unchanged(f"alert event {event_id}: {row.status}"), None
        row.updated_at = now
        alert = session.get(AlertRow, row.alert_id)
        assert alert is not None
        customer = catalog_repo.customer(session, alert.customer_id)
        assert customer is not None
        entity = catalog_repo.entity(session, customer.entity)
        assert entity is not None
        return send_event(row, entity.delivery or default_delivery(), webhook_id(event_id),
                          {"id": webhook_id(event_id), **row.payload}, f"alert event {event_id}")


def lost(now: datetime) -> list[int]:
    """Pending events not attempted for a while (an enqueue lost to a crash)."""
    with unit_of_work() as session:
        return alerts_repo.stale_events(session, now - LOST_AFTER)
