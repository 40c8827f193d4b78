"""``/v1/invoices/{ref}/…``: whether a sent invoice was paid — record a payment, void it,
mark it uncollectible — and its PDF."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services import payments
from services.documents import PdfUnavailable, invoice_pdf
from web import schemas
from web.dependencies import (
    ApiError,
    IdempotencyKey,
    Key,
    answer_once,
    command,
    find_invoice,
    invoice_again,
)
from workers import actors

router = APIRouter(tags=["payments"])


def _change(ref: str, kind: str, handler: Any, key: Key, idempotency_key: str | None,
            request: Request, body: Any, status: int) -> Response:
    def run() -> dict[str, Any]:
        record = find_invoice(ref)
        outcome = command(kind, lambda s, now: handler(s, now, record.id), key,
                          idempotency_key, invoice=record.id)
        actors.enqueue_events(outcome.events)
        return invoice_again(record)

    return answer_once(key, idempotency_key, request, body, status, run)


@router.post("/v1/invoices/{ref}/payments", status_code=201, response_model=schemas.Invoice)
def pay(ref: str, body: schemas.PaymentIn, key: Key, request: Request,
        idempotency_key: IdempotencyKey = None) -> Response:
    """Record a payment of a sent invoice: never more than is still due, in its currency.
    It becomes ``paid`` or ``partially_paid``, and an ``invoice.paid`` (or
    ``invoice.partially_paid``) webhook event follows."""
    data = body.model_dump(mode="json", exclude_none=True)
    return _change(ref, "record_payment",
                   lambda s, now, invoice_id: payments.do_pay(s, now, invoice_id, data),
                   key, idempotency_key, request, data, 201)


@router.post("/v1/invoices/{ref}/void", response_model=schemas.Invoice)
def void(ref: str, key: Key, request: Request,
         idempotency_key: IdempotencyKey = None) -> Response:
    """Void a sent invoice nobody paid: its number stays used, it shows void, its usage
    stays billed."""
    return _change(ref, "void_invoice", payments.do_void, key, idempotency_key, request,
                   None, 200)


@router.post("/v1/invoices/{ref}/mark-uncollectible", response_model=schemas.Invoice)
def mark_uncollectible(ref: str, key: Key, request: Request,
                       idempotency_key: IdempotencyKey = None) -> Response:
    """Give up collecting a sent invoice (a later payment still counts)."""
    return _change(ref, "mark_uncollectible", payments.do_mark_uncollectible, key,
                   idempotency_key, request, None, 200)


@router.get("/v1/invoices/{ref}/pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
def pdf(ref: str, key: Key) -> Response:
    """The invoice as a PDF, from the same template as its HTML document."""
    record = find_invoice(ref)
    try:
        document = invoice_pdf(record)
    except PdfUnavailable as exc:
        raise ApiError(503, "unavailable", str(exc)) from None
    return Response(document, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{record.reference}.pdf"'})
