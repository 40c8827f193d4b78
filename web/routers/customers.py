"""``/v1/customers``: create or update a customer, read it, and its estimated charges."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from domain.documents import pending_document, preview_document
from domain.parties import BUYER
from domain.validation import Invalid
from services import catalog as catalog_service
from services import clock, invoicing
from services.commands import CONFLICT, INVALID, NOT_FOUND
from web import schemas
from web.dependencies import ApiError, Key, instant_param, iso, storable_id

router = APIRouter()


@router.put("/v1/customers/{customer_id}", response_model=schemas.Customer,
         tags=["customers"], responses={201: {"model": schemas.Customer}})
def put_customer(customer_id: str, body: schemas.CustomerIn, key: Key) -> JSONResponse:
    """Create or update a customer of an entity."""
    try:
        customer, new = catalog_service.put_customer(
            customer_id, body.model_dump(exclude_none=True), clock.now())
    except Invalid as exc:
        field = exc.field.replace("customers[0].", "") if exc.field else None
        raise ApiError(404 if "is not a known entity" in exc.message else 422,
                       NOT_FOUND if "is not a known entity" in exc.message else INVALID,
                       exc.message, field) from None
    except catalog_service.CatalogRefused as exc:
        raise ApiError(409, CONFLICT, exc.diff.refused[0].detail, "entity") from None
    return JSONResponse(_customer_json(customer), status_code=201 if new else 200)

@router.get("/v1/customers/{customer_id}", response_model=schemas.Customer,
         tags=["customers"])
def get_customer(customer_id: str, key: Key) -> dict[str, Any]:
    customer = catalog_service.customer(customer_id) if storable_id(customer_id) else None
    if customer is None:
        raise ApiError(404, NOT_FOUND, f"{customer_id!r} is not a known customer")
    return _customer_json(customer)

@router.get("/v1/customers/{customer_id}/estimate", response_model=schemas.CustomerEstimate,
         tags=["estimates"])
def customer_estimate(customer_id: str, key: Key,
                      at: Annotated[str | None, Query(description="an instant (default: "
                                                                   "now)")] = None
                      ) -> dict[str, Any]:
    """Estimated charges (the next invoice of every live subscription, as if usage
    stopped now), after the invoices due but not issued yet (``pending``: their
    boundary passed, the next bill run issues them)."""
    when = instant_param(at)
    if not storable_id(customer_id):
        raise ApiError(404, NOT_FOUND, "no such customer")
    try:
        waiting = invoicing.pending_of_customer(customer_id, when, latest=at is None)
        estimates = invoicing.preview_customer(customer_id, when, latest=at is None)
    except Invalid as exc:
        raise ApiError(404, NOT_FOUND, exc.message) from None
    return {"customer": customer_id, "at": iso(when),
            "pending": [pending_document(p.invoice, p.subscription) for p in waiting],
            "estimates": [preview_document(inv, sub, when) for sub, inv in estimates]}


def _customer_json(customer: Any) -> dict[str, Any]:
    return {"id": customer.id, "entity": customer.entity, "email": customer.email,
            "draft_invoices": bool(customer.draft_invoices),
            **{k: getattr(customer.details, k) for k in BUYER},
            "taxes": list(customer.taxes) if customer.taxes is not None else None,
            "tax_exempt": bool(customer.tax_exempt)}
