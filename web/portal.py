"""The customer portal's pages: ``/portal/{token}`` and the customer's invoice documents.

Thin: the token is checked and the page's numbers computed by ``services.portal``; here they
are laid out (Jinja2, autoescaped) with a server-drawn SVG chart. The page loads nothing
from another host (one inline stylesheet, no script), and is never cached, indexed or
sent on as a referrer: its address is the customer's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from domain.documents import InvoiceRecord
from services import clock, documents
from services import portal as portal_service
from services.delivery.render import format_in_unit
from web.dependencies import storable_id

router = APIRouter(include_in_schema=False)

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}
WIDTH, HEIGHT, GAP = 600, 160, 2  # the chart's drawing box


@cache
def _env() -> Environment:
    return Environment(loader=PackageLoader("web", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # "2026-03-04: 1,250 tokens"


@dataclass(frozen=True)
class Chart:
    bars: tuple[Bar, ...]
    top: str  # the value of the chart's top line
    first: str
    last: str
    label: str


def chart(view: portal_service.MeterView) -> Chart:
    """Bars of the meter's daily usage, scaled to the largest day."""
    days = view.days
    largest = max((d.value for d in days), default=Decimal(0))
    count = max(len(days), 1)
    width = WIDTH / count
    bars = []
    for index, d in enumerate(days):
        height = float(d.value / largest) * (HEIGHT - 10) if largest > 0 else 0.0
        bars.append(Bar(x=round(index * width, 2), y=round(HEIGHT - height, 2),
                        width=round(max(width - GAP, 1), 2), height=round(height, 2),
                        title=f"{d.day.isoformat()}: {format_in_unit(d.value, view.unit)}"))
    return Chart(bars=tuple(bars), top=format_in_unit(largest, view.unit),
                 first=days[0].day.isoformat() if days else "",
                 last=days[-1].day.isoformat() if days else "", label=view.chart_label)


def _refused(exc: portal_service.Refused) -> HTMLResponse:
    """403 with the reason; 503 when the portal is not set up (the operator's to fix)."""
    unavailable = isinstance(exc, portal_service.Unavailable)
    reason = "The billing portal is not available right now." if unavailable else exc.reason
    html = _env().get_template("portal_refused.html.j2").render(reason=reason)
    return HTMLResponse(html, status_code=503 if unavailable else 403, headers=HEADERS)


@router.get("/portal/{token}", response_class=HTMLResponse)
def portal_page(token: str) -> HTMLResponse:
    now = clock.now()
    try:
        customer = portal_service.check_token(token, now)
    except portal_service.Refused as exc:
        return _refused(exc)
    page = portal_service.page(customer, now)
    charts = {(s.id, m.charge): chart(m) for s in page.subscriptions for m in s.meters}
    html = _env().get_template("portal.html.j2").render(page=page, charts=charts,
                                                         token=token, width=WIDTH,
                                                         height=HEIGHT)
    return HTMLResponse(html, headers=HEADERS)


def _invoice_of(token: str, number: str, now: datetime) -> InvoiceRecord | Response:
    """The invoice ``number`` of the link's customer, or the page that refuses it (403 for
    a bad link, 404 for an invoice that is not the customer's)."""
    try:
        customer = portal_service.check_token(token, now)
    except portal_service.Refused as exc:
        return _refused(exc)
    record = portal_service.invoice_of(customer, number) if storable_id(number) else None
    if record is None:
        html = _env().get_template("portal_refused.html.j2").render(
            reason="There is no such invoice on this account.")
        return HTMLResponse(html, status_code=404, headers=HEADERS)
    return record


@router.get("/portal/{token}/invoices/{number}", response_class=HTMLResponse)
def portal_invoice(token: str, number: str) -> Response:
    now = clock.now()
    record = _invoice_of(token, number, now)
    if isinstance(record, Response):
        return record
    return HTMLResponse(documents.html(record, now), headers=HEADERS)


@router.get("/portal/{token}/invoices/{number}/pdf", response_class=Response)
def portal_invoice_pdf(token: str, number: str) -> Response:
    """The invoice's PDF, for the portal's "Download PDF"."""
    now = clock.now()
    record = _invoice_of(token, number, now)
    if isinstance(record, Response):
        return record
    try:
        pdf = documents.invoice_pdf(record, now)
    except documents.PdfUnavailable:
        html = _env().get_template("portal_refused.html.j2").render(
            reason="The PDF cannot be made right now; the invoice page has everything.")
        return HTMLResponse(html, status_code=503, headers=HEADERS)
    return Response(pdf, media_type="application/pdf",
                    headers={**HEADERS, "Content-Disposition":
                             f'attachment; filename="{record.reference}.pdf"'})
