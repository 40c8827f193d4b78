"""Delivering sent invoices: carry out the delivery that sending an invoice recorded.

The delivery row is written in the transaction that sends the invoice; this actor runs after
that commit. A crash before the channel accepts the invoice leaves the delivery pending and
the message is redelivered; a delivery recorded as done is never repeated. A webhook keeps
its ``webhook-id`` on every attempt, so a receiver can drop a repeat after a crash between
its 2xx and our record of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from domain.catalog import Customer, Delivery
from persistence import catalog as catalog_repo
from persistence import deliveries as deliveries_repo
from persistence import invoices as invoices_repo
from persistence.db import unit_of_work
from services import clock, documents
from services.commands import Outcome, applied, refused, unchanged
from services.delivery import (
    Result,
    SmtpSettings,
    email_subject,
    send_email,
    send_webhook,
    webhook_body,
    webhook_id_for,
    write_outbox,
)
from services.delivery.events import record_attempt
from services.settings import settings

EVENT = "invoice.sent"
LOST_AFTER = timedelta(minutes=5)
_outbox_override: Path | None = None


def use_outbox(directory: Path | None) -> Path | None:
    """Where the outbox channel writes (None: BILLING_OUTBOX_DIR); the previous choice."""
    global _outbox_override
    previous, _outbox_override = _outbox_override, directory
    return previous


def default_delivery() -> Delivery:
    config = settings()
    return Delivery(config.delivery_channel, url=config.webhook_url,
                    secret=config.webhook_secret, sender=config.email_from)


def _send(delivery: Delivery, doc: documents.Document, customer: Customer
          ) -> tuple[Result, str]:
    """Deliver through the channel; the result and where it went."""
    config = settings()
    document = doc.data
    if delivery.channel == "webhook":
        if not delivery.url or not delivery.secret:
            return Result(ok=False, retry=False,
                          detail="webhook channel without url or secret"), "—"
        if "@" in urlsplit(delivery.url).netloc:  # a secret in the URL: refused, not retried
            return Result(ok=False, retry=False, detail="refused: the webhook URL carries a "
                          "user or password (user:password@); sign with the secret instead"), "—"
        result = send_webhook(delivery.url, delivery.secret, webhook_id_for(document, EVENT),
                              webhook_body(document, EVENT), timeout=config.webhook_timeout_s)
        return result, delivery.url
    html = documents.html_of(doc)
    if delivery.channel == "email":
        if not customer.email:
            return Result(ok=False, retry=False,
                          detail=f"customer {customer.id!r} has no email address"), "—"
        smtp = SmtpSettings(host=config.smtp_host, port=config.smtp_port,
                            username=config.smtp_username, password=config.smtp_password,
                            starttls=config.smtp_starttls)
        sender = delivery.sender or config.email_from
        reference = str(document.get("number") or f"{document['subscription']}@"
                        f"{document['boundary']}")
        result = send_email(smtp, sender, customer.email, email_subject(document),
                            documents.text_of(doc), html,
                            message_id=f"<invoice-{reference.replace('@', '.')}@"
                                       f"{sender.split('@')[-1]}>",
                            attachment=_pdf(doc, f"{reference}.pdf"))
        return result, customer.email
    directory = _outbox_override or Path(delivery.directory or config.outbox_dir)
    return write_outbox(directory, document, html), str(directory)


def _pdf(doc: documents.Document, name: str) -> tuple[str, bytes] | None:
    """The invoice's PDF to attach, or None where WeasyPrint cannot run (no Pango library):
    the e-mail still carries the invoice, as text and HTML."""
    try:
        return name, documents.pdf_of(doc)
    except (documents.PdfUnavailable, OSError):
        return None


def attempt(session: Session, invoice_id: int, now: datetime,
            context: dict[str, str] | None = None) -> tuple[Outcome, Result | None]:
    """One delivery attempt, recorded in the session's transaction."""
    row = deliveries_repo.claim(session, invoice_id)
    found = invoices_repo.records(session, ids=[invoice_id])
    if not found:
        return refused("that invoice does not exist"), None
    record = found[0]
    if row is None:
        return unchanged(f"{record.reference}: no pending delivery here"), None
    if row.status != "pending":
        return unchanged(f"{record.reference}: delivery {row.status}"), None
    if context is not None:  # what a log line about this delivery should name
        context.update(number=record.number or "", entity=record.entity,
                       customer=record.customer, subscription=record.subscription)
    entity = catalog_repo.entity(session, record.entity)
    customer = catalog_repo.customer(session, record.customer)
    assert entity is not None and customer is not None
    delivery = entity.delivery or default_delivery()
    if delivery.channel == "none":  # nothing is sent, so no document is read
        result, target = Result(ok=True, retry=False, detail="no delivery channel"), "—"
    else:
        result, target = _send(delivery, documents.prepare(session, record, now), customer)
    row.channel, row.target, row.updated_at = delivery.channel, target, now
    if record_attempt(row, result):
        return applied(f"{record.reference} delivered by {delivery.channel} to {target}"), result
    return refused(f"{record.reference} by {delivery.channel}: {result.detail}"), result


def deliver(invoice_id: int, now: datetime
            ) -> tuple[Outcome, Result | None, dict[str, str]]:
    """One delivery attempt in its own transaction; with what a log line should name (the
    invoice's number, entity, customer and subscription)."""
    context: dict[str, str] = {}
    with unit_of_work() as session:
        outcome, result = attempt(session, invoice_id, now, context)
    return outcome, result, context


def deliver_now(invoice_id: int) -> Outcome:
    """Attempt one delivery here and now (the CLI's way; no retry loop)."""
    return deliver(invoice_id, clock.now())[0]


def lost(now: datetime) -> list[int]:
    """Pending deliveries never attempted for a while: their message was lost between a
    commit and its enqueue (a crash). The scheduler sends them again every tick."""
    with unit_of_work() as session:
        return list(deliveries_repo.stale_pending(session, now - LOST_AFTER))
