"""Sending one outbox event as a signed webhook (Standard Webhooks) and recording the
attempt on its row — what invoice events (``services/invoice_events.py``) and alert events
(``services/alert_events.py``) share. A channel that is not a webhook carries documents
only: the event is recorded as done, not sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from domain.catalog import Delivery
from persistence.sql import storable
from services.commands import Outcome, applied, refused
from services.delivery.channels import Result, event_body, send_webhook
from services.settings import settings


class Attempted(Protocol):
    """An outbox row something is sent for (``deliveries``, ``invoice_events``,
    ``alert_events``)."""

    status: str
    attempts: int
    last_error: str


class EventRow(Attempted, Protocol):
    """An outbox row of an event (``invoice_events``, ``alert_events``)."""

    type: str
    payload: dict[str, Any]
    created_at: datetime


def record_attempt(row: Attempted, result: Result) -> bool:
    """One more attempt on an outbox row: done when it went through; otherwise its reason
    kept, and failed when trying again cannot help. True when done."""
    row.attempts += 1
    if result.ok:
        row.status, row.last_error = "done", ""
        return True
    row.last_error = storable(result.detail)
    if not result.retry:
        row.status = "failed"
    return False


def send_event(row: EventRow, channel: Delivery, webhook_id: str, payload: dict[str, Any],
               name: str, short: str | None = None) -> tuple[Outcome, Result | None]:
    """One attempt at sending ``row`` (with ``payload``) through ``channel``, recorded on
    the row (status, attempts, last error); ``name`` (and ``short``, for a channel that
    cannot send) say which event in the outcome."""
    if channel.channel != "webhook":
        row.status, row.last_error = "done", f"not sent: the {channel.channel} channel " \
                                             "carries invoice documents only"
        return applied(f"{name}: {row.last_error}"), None
    if not channel.url or not channel.secret or "@" in urlsplit(channel.url).netloc:
        row.status, row.last_error = "failed", "webhook channel without a usable url or " \
                                               "secret"
        return refused(f"{short or name}: {row.last_error}"), None
    result = send_webhook(channel.url, channel.secret, webhook_id,
                          event_body(row.type, row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     payload),
                          timeout=settings().webhook_timeout_s)
    if record_attempt(row, result):
        return applied(f"{name} delivered to {channel.url}"), result
    return refused(f"{name}: {result.detail}"), result
