"""``/v1/invoices``: list and read invoices (JSON or the readable document), release and
regenerate a draft."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from domain.validation import Invalid
from services import documents, invoicing
from services import invoices as invoices_service
from services.commands import INVALID
from web import schemas
from web.dependencies import (
    ApiError,
    IdempotencyKey,
    Key,
    answer_once,
    command,
    find_invoice,
    invoice_again,
    invoice_json,
)
from workers import actors

router = APIRouter()


@router.get("/v1/invoices", response_model=schemas.InvoicePage, tags=["invoices"])
def list_invoices(key: Key, customer: str | None = None,
                  subscription: str | None = None,
                  status: Annotated[str | None, Query(pattern="^(draft|sent)$")] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  after: Annotated[str | None, Query(max_length=600)] = None
                  ) -> dict[str, Any]:
    """Invoices in the order they were issued, a page at a time."""
    cursor = None
    if after is not None:  # the `next` of a page: the public reference of its last one
        try:
            last = invoices_service.find(after) if "@" in after else None
        except Invalid:
            last = None
        if last is None:
            raise ApiError(422, INVALID, "after: must be the `next` of a page", "after")
        cursor = last.id
    records = invoices_service.listing(customer=customer, subscription=subscription,
                                       status=status, limit=limit, after=cursor)
    nxt = (f"{records[-1].subscription}@{records[-1].boundary.isoformat()}"
           if len(records) == limit else None)
    return {"invoices": [invoice_json(r) for r in records], "next": nxt}

@router.get("/v1/invoices/{ref}", response_model=schemas.Invoice, tags=["invoices"],
         responses={200: {"content": {"text/html": {}}}})
def get_invoice(ref: str, request: Request, key: Key) -> Any:
    """An invoice by its number or SUBSCRIPTION@YYYY-MM-DD: JSON, or the readable
    document with ``Accept: text/html``."""
    record = find_invoice(ref)
    if "text/html" in request.headers.get("accept", "").split(",")[0]:
        return HTMLResponse(documents.html(record))
    return invoice_json(record)

@router.post("/v1/invoices/{ref}/release", response_model=schemas.Invoice, tags=["invoices"])
def release(ref: str, key: Key, request: Request,
            idempotency_key: IdempotencyKey = None) -> Response:
    """Send a draft: it gets the entity's next number and is delivered."""
    def run() -> dict[str, Any]:
        record = find_invoice(ref)
        outcome = command("release_invoice", lambda s, now: invoicing.do_release(
            s, now, record.subscription, record.boundary.isoformat()), key,
            idempotency_key, subscription=record.subscription)
        actors.enqueue_deliveries(list(outcome.deliver))
        return invoice_again(record)

    return answer_once(key, idempotency_key, request, None, 200, run)

@router.post("/v1/invoices/{ref}/regenerate", response_model=schemas.Invoice,
          tags=["invoices"])
def regenerate(ref: str, key: Key, request: Request,
               idempotency_key: IdempotencyKey = None) -> Response:
    """Recompute a draft from the data as it is now (late usage included)."""
    def run() -> dict[str, Any]:
        record = find_invoice(ref)
        command("regenerate_invoice", lambda s, now: invoicing.do_regenerate(
            s, now, record.subscription, record.boundary.isoformat()), key,
            idempotency_key, subscription=record.subscription)
        return invoice_again(record)

    return answer_once(key, idempotency_key, request, None, 200, run)
