"""Delivering ``alert.triggered`` (docs/billing-rules.md §19): the outbox rows
``services.alerts`` writes with the crossings they report, sent after the commit as signed
webhooks (Standard Webhooks, through the customer's entity's webhook channel or the
deployment's), at least once — each with a ``webhook-id`` of its own (``alert_evt_{id}``),
the same on every attempt. Like invoice events (services/invoice_events.py), a channel
that is not a webhook carries documents only: the event is recorded as done, not sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from persistence import alerts as alerts_repo
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from persistence.sql import storable
from persistence.tables import AlertRow
from services.commands import Outcome, applied, refused, unchanged
from services.deliveries import default_delivery
from services.delivery.channels import Result, event_body, send_webhook
from services.settings import settings

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
        channel = entity.delivery or default_delivery()
        if channel.channel != "webhook":
            row.status, row.last_error = "done", f"not sent: the {channel.channel} channel " \
                                                 "carries invoice documents only"
            return applied(f"alert event {event_id}: {row.last_error}"), None
        if not channel.url or not channel.secret or "@" in urlsplit(channel.url).netloc:
            row.status, row.last_error = "failed", "webhook channel without a usable url or " \
                                                   "secret"
            return refused(f"alert event {event_id}: {row.last_error}"), None
        result = send_webhook(channel.url, channel.secret, webhook_id(event_id),
                              event_body(row.type, row.created_at.strftime(
                                  "%Y-%m-%dT%H:%M:%SZ"), {"id": webhook_id(event_id),
                                                           **row.payload}),
                              timeout=settings().webhook_timeout_s)
        row.attempts += 1
        if result.ok:
            row.status, row.last_error = "done", ""
            return applied(f"alert event {event_id} delivered to {channel.url}"), result
        row.last_error = storable(result.detail)
        if not result.retry:
            row.status = "failed"
        return refused(f"alert event {event_id}: {result.detail}"), result


def lost(now: datetime) -> list[int]:
    """Pending events not attempted for a while (an enqueue lost to a crash)."""
    with unit_of_work() as session:
        return alerts_repo.stale_events(session, now - LOST_AFTER)
