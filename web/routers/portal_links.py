"""``/v1/portal-links``: signed links to a customer's portal page, and their revocation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.validation import Invalid, check_text
from services import clock
from services import portal as portal_service
from services.commands import INVALID, NOT_FOUND
from web import schemas
from web.dependencies import (
    ApiError,
    IdempotencyKey,
    Key,
    answer_once,
    iso,
    message_id,
    storable_id,
)

router = APIRouter()


@router.post("/v1/portal-links", status_code=201, response_model=schemas.PortalLink,
          tags=["portal"])
def create_portal_link(body: schemas.PortalLinkIn, key: Key, request: Request,
                       idempotency_key: IdempotencyKey = None) -> Response:
    """A signed link to the customer's portal page (usage, estimated charges,
    invoices), valid for ``ttl`` (default 12h, at most 90d) unless revoked. A retry with
    the same Idempotency-Key gets the same link."""
    link_id = (portal_service.link_id_of(message_id(key, idempotency_key, "portal"))
               if idempotency_key is not None else None)
    try:
        check_text(body.customer, "customer")
    except Invalid as exc:  # an id no customer can have: the request is malformed
        raise ApiError(422, INVALID, str(exc), "customer") from None

    def run() -> dict[str, Any]:
        try:
            link = portal_service.create_link(body.customer, body.ttl, clock.now(),
                                              link_id)
        except Invalid as exc:
            if exc.field == "customer":
                raise ApiError(404, NOT_FOUND, exc.message, "customer") from None
            if exc.field == "BILLING_PORTAL_SECRET":
                raise ApiError(503, "unavailable",
                               f"the portal is not set up: {exc}") from None
            raise ApiError(422, INVALID, str(exc), exc.field) from None
        return _link_json(link)

    return answer_once(key, idempotency_key, request, body.model_dump(mode="json"), 201,
                       run)

@router.delete("/v1/portal-links/{link_id}", status_code=204, tags=["portal"])
def revoke_portal_link(link_id: str, key: Key) -> Response:
    """Revoke a link now: its page answers 403 from then on."""
    if not storable_id(link_id) or not portal_service.revoke(link_id=link_id,
                                                             now=clock.now()):
        raise ApiError(404, NOT_FOUND, f"no open portal link {link_id!r}", "link_id")
    return Response(status_code=204)


def _link_json(link: portal_service.Link) -> dict[str, Any]:
    return {"id": link.id, "customer": link.customer, "url": link.url,
            "expires_at": iso(link.expires_at)}
