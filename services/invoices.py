"""Reading invoices: naming one by its public reference — its number (``EU-000002``) once
sent, ``SUBSCRIPTION@BOUNDARY`` (stable, and still accepted after it is sent) — and listing
them with filters, page by page. The database id is internal: no reference is read as
one, and no output shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from domain.documents import InvoiceRecord, detailed_document
from domain.invoices import InvoiceStatus
from domain.periods import local_date
from domain.units import Unit
from domain.validation import Invalid, parse_date
from persistence import catalog as catalog_repo
from persistence import invoices as invoices_repo
from persistence import subscriptions as subs_repo
from persistence.db import unit_of_work

STATUSES = tuple(InvoiceStatus)


def find(reference: str) -> InvoiceRecord | None:
    """The invoice a public reference names — its number, or SUBSCRIPTION@YYYY-MM-DD —
    or None; ``Invalid`` for a malformed reference. A bare integer is a number like any
    other (never the database id)."""
    reference = reference.strip()
    if not reference or len(reference) > 600:
        raise Invalid("invoice", HOW)
    with unit_of_work() as session:
        if "@" in reference:
            subscription, _, boundary = reference.rpartition("@")
            day = parse_date(boundary, "boundary")
            found = invoices_repo.records(session, subscription=subscription, boundary=day)
        else:
            found = invoices_repo.records(session, number=reference)
    return found[0] if found else None


HOW = "give its number, or SUBSCRIPTION@YYYY-MM-DD"


def by_id(invoice_id: int) -> InvoiceRecord | None:
    """An invoice by its internal id: for code that holds one, never for a reference."""
    with unit_of_work() as session:
        found = invoices_repo.records(session, ids=[invoice_id])
    return found[0] if found else None


def parse_reference(reference: str, boundary: str | None = None) -> tuple[str, str] | None:
    """(subscription, boundary) of a reference, for the commands on drafts (release,
    regenerate); ``REF`` alone, or the older ``SUBSCRIPTION BOUNDARY`` pair."""
    if boundary is not None:
        return reference, boundary
    found = find(reference)
    return None if found is None else (found.subscription, found.boundary.isoformat())


def listing(*, entity: str | None = None, customer: str | None = None,
            subscription: str | None = None, status: str | None = None,
            limit: int | None = None, after: int | None = None) -> list[InvoiceRecord]:
    """Invoices sorted by (subscription, boundary); ``after`` an invoice id, for pages."""
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"must be draft or sent, got {status!r}")
    with unit_of_work() as session:
        return invoices_repo.records(session, entity=entity, customer=customer,
                                     subscription=subscription, status=status, limit=limit,
                                     after=after)


def document(record: InvoiceRecord, now: datetime) -> dict[str, Any]:
    """The invoice's detailed document, overdue judged on the entity's local date."""
    with unit_of_work() as session:
        entity = catalog_repo.entity(session, record.entity)
    today = local_date(now, entity.timezone) if entity else now.date()
    return detailed_document(record, today)


def display_units(subscription: str) -> dict[str, Unit]:
    """Charge id → the display unit of the meter it prices, for the plan version the
    subscription is on: how its invoices write quantities and unit prices."""
    with unit_of_work() as session:
        return display_units_in(session, subscription)


def display_units_in(session: Session, subscription: str) -> dict[str, Unit]:
    """``display_units`` inside a transaction that is already open (of the plan the
    subscription was sold on)."""
    row = subs_repo.get(session, subscription)
    plan = catalog_repo.plan(session, row.plan_id, row.plan_version) if row else None
    if plan is None:
        return {}
    meters = catalog_repo.meters(session)
    return {c.id: unit for c in plan.usage_charges
            if (unit := meters[c.meter].unit if c.meter in meters else None) is not None}


def timezone_of(entity_id: str) -> str | None:
    """The entity's time zone: how its people read an instant."""
    with unit_of_work() as session:
        entity = catalog_repo.entity(session, entity_id)
    return entity.timezone if entity else None


def entity_of(subscription: str) -> str | None:
    with unit_of_work() as session:
        row = subs_repo.get(session, subscription)
    return row.entity_id if row else None
