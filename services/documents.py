"""The readable invoice — HTML, text and PDF from one template — as every channel shows it:
e-mail (with the PDF attached), the outbox folder, the portal, the API and the CLI.

One place gathers what a document needs beyond the invoice's own JSON: the entity's time
zone (the issue time), the customer's language and number format (its locale, else
English), each meter's display unit, each line's unit price or pricing in words, and the
discount's percent. The PDF is the HTML printed by WeasyPrint (the same template, its
print styles), so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from domain.catalog import Model, UsageCharge
from domain.documents import InvoiceRecord, detailed_document
from domain.periods import local_date
from domain.units import Unit
from persistence import catalog as catalog_repo
from persistence import plan_changes as plan_changes_repo
from persistence import subscriptions as subs_repo
from persistence.db import unit_of_work
from services import clock
from services.delivery.render import pricing_lines, render_html, render_text
from services.invoices import display_units_in

DEFAULT_LOCALE = "en_US"


@dataclass(frozen=True)
class Document:
    """An invoice's JSON document with what its readable forms need."""

    data: dict[str, Any]
    timezone: str | None
    locale: str
    units: dict[str, Unit]


def prepare(session: Session, record: InvoiceRecord, now: datetime) -> Document:
    """Everything a readable invoice shows, read in the caller's transaction."""
    entity = catalog_repo.entity(session, record.entity)
    today = local_date(now, entity.timezone) if entity else now.date()
    data = detailed_document(record, today)
    buyer = data.get("buyer") or {}
    customer = catalog_repo.customer(session, record.customer)
    locale = buyer.get("locale") or (customer.details.locale if customer else None) \
        or DEFAULT_LOCALE
    units = display_units_in(session, record.subscription)
    row = subs_repo.get(session, record.subscription)
    if row is not None:
        history = plan_changes_repo.histories(session, [row])[row.id]
        discount = row.discount or {}
        if "percent" in discount:
            data["discount_percent"] = str(discount["percent"])
        for line in data["lines"]:
            _price(line, history.in_force(
                datetime.fromisoformat(line["period_start"]).date()).plan.charges,
                   record.currency, units)
    return Document(data, entity.timezone if entity else None, locale, units)


def _price(line: dict[str, Any], charges: Any, currency: str, units: dict[str, Unit]) -> None:
    """A line's unit price (a recurring fee, a unit price) or its pricing in words."""
    charge = next((c for c in charges if c.id == line["charge"]), None)
    if charge is None or line["type"] not in ("recurring", "usage"):
        return
    if not isinstance(charge, UsageCharge):
        line["unit_price"] = line["amount"]
        return
    group = line.get("filter")
    pricing = dict(charge.groups).get(group or "", charge) if "filter" in line else charge
    if pricing.model is Model.UNIT and not (pricing.included or pricing.minimum or pricing.cap):
        line["unit_price"] = str(pricing.unit_price)
    else:
        line["pricing"] = "; ".join(pricing_lines(pricing, currency, units.get(charge.id)))


def html(record: InvoiceRecord, now: datetime | None = None) -> str:
    with unit_of_work() as session:
        doc = prepare(session, record, now or clock.now())
    return html_of(doc)


def html_of(doc: Document) -> str:
    return render_html(doc.data, timezone=doc.timezone, locale=doc.locale, units=doc.units)


def text_of(doc: Document) -> str:
    return render_text(doc.data, timezone=doc.timezone, locale=doc.locale, units=doc.units)


class PdfUnavailable(Exception):
    """WeasyPrint cannot run on this host (its Pango library is missing)."""


def pdf_of(doc: Document) -> bytes:
    """The HTML printed to PDF (WeasyPrint: imported here, it needs the Pango library);
    ``PdfUnavailable`` where it cannot run."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:
        raise PdfUnavailable(f"PDFs cannot be made on this host: {exc}") from None
    result: bytes = HTML(string=html_of(doc)).write_pdf()
    return result


def invoice_pdf(record: InvoiceRecord, now: datetime | None = None) -> bytes:
    with unit_of_work() as session:
        doc = prepare(session, record, now or clock.now())
    return pdf_of(doc)
