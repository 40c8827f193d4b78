"""``/v1/credit-grants`` and a customer's credits (SPEC §12): grant, void, read the ledger
and the balance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.money import format_money
from domain.validation import Invalid
from services import clock
from services import credits as credits_service
from services.commands import NOT_FOUND
from web import schemas
from web.dependencies import ApiError, IdempotencyKey, Key, answer_once, command
from web.dependencies import storable_id as _storable

router = APIRouter(tags=["credits"])


def _grant(grant_id: str) -> dict[str, Any]:
    view = credits_service.grant(grant_id, clock.now()) if _storable(grant_id) else None
    if view is None:
        raise ApiError(404, NOT_FOUND, f"{grant_id!r} is not a known credit grant", "grant")
    return view.document()


@router.post("/v1/credit-grants", status_code=201, response_model=schemas.CreditGrant)
def grant(body: schemas.CreditGrantIn, key: Key, request: Request,
          idempotency_key: IdempotencyKey = None) -> Response:
    """Grant a customer prepaid credit, usable by the invoices sent after it (SPEC §12).
    Refused, naming the field: an unknown customer (404), a taken or reserved id (409), an
    amount or currency that is not valid, an expiry not later than now (422)."""
    request_body = body.model_dump(mode="json")

    def run() -> dict[str, Any]:
        command("grant_credits",
                lambda s, now: credits_service.do_grant(s, now, request_body), key,
                idempotency_key, grant=body.id)
        return _grant(body.id)

    return answer_once(key, idempotency_key, request, request_body, 201, run)


@router.get("/v1/credit-grants/{grant_id}", response_model=schemas.CreditGrant)
def get_grant(grant_id: str, key: Key) -> dict[str, Any]:
    """A grant with its ledger: what it paid, voided, lost to expiry, and has left."""
    return _grant(grant_id)


@router.post("/v1/credit-grants/{grant_id}/void", response_model=schemas.CreditGrant)
def void(grant_id: str, key: Key, request: Request,
         idempotency_key: IdempotencyKey = None) -> Response:
    """Void a grant: it pays nothing sent from now on; what it paid stays paid. Voiding a
    voided or expired grant changes nothing."""
    def run() -> dict[str, Any]:
        _grant(grant_id)  # 404 when unknown
        command("void_credits", lambda s, now: credits_service.do_void(s, now, grant_id),
                key, idempotency_key, grant=grant_id)
        return _grant(grant_id)

    return answer_once(key, idempotency_key, request, None, 200, run)


@router.get("/v1/customers/{customer_id}/credit-grants", response_model=schemas.CreditGrants)
def customer_grants(customer_id: str, key: Key) -> dict[str, Any]:
    """Every grant of a customer, with its ledger."""
    try:
        views = credits_service.grants(clock.now(), customer=customer_id) \
            if _storable(customer_id) else None
    except Invalid:
        views = None
    if views is None:
        raise ApiError(404, NOT_FOUND, f"{customer_id!r} is not a known customer", "customer")
    return {"customer": customer_id, "grants": [v.document() for v in views]}


@router.get("/v1/customers/{customer_id}/credit-balance", response_model=schemas.CreditBalance)
def customer_balance(customer_id: str, key: Key) -> dict[str, Any]:
    """A customer's prepaid credit per currency, usable now."""
    try:
        balances = credits_service.balance(customer_id, clock.now()) \
            if _storable(customer_id) else None
    except Invalid:
        balances = None
    if balances is None:
        raise ApiError(404, NOT_FOUND, f"{customer_id!r} is not a known customer", "customer")
    return {"customer": customer_id, "balances": [
        {"currency": c, "balance": format_money(b, c)} for c, b in balances.items()]}
