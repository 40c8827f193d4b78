"""``/v1/alerts`` (docs/billing-rules.md §18): create, list, read and delete spend and
usage alerts. What they fire is delivered as ``alert.triggered`` webhooks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services import alerts as alerts_service
from services import clock
from services.commands import NOT_FOUND
from web import schemas
from web.dependencies import ApiError, IdempotencyKey, Key, answer_once, command
from web.dependencies import storable_id as _storable
from workers import actors

router = APIRouter(tags=["alerts"])


def _alert(alert_id: str) -> dict[str, Any]:
    found = alerts_service.get(alert_id) if _storable(alert_id) else None
    if found is None:
        raise ApiError(404, NOT_FOUND, f"{alert_id!r} is not a known alert", "alert")
    return found


@router.post("/v1/alerts", status_code=201, response_model=schemas.Alert)
def create(body: schemas.AlertIn, key: Key, request: Request,
           idempotency_key: IdempotencyKey = None) -> Response:
    """Create an alert. Refused, naming the field: a threshold ≤ 0 or not greater than the
    one before, a bad kind, step or currency (422); an unknown customer, subscription or
    meter (404); a taken id (409). A value already past a threshold fires it at once."""
    request_body = {k: v for k, v in body.model_dump(mode="json").items() if v is not None}

    def run() -> dict[str, Any]:
        command("create_alert", lambda s, now: alerts_service.do_create(s, now, request_body),
                key, idempotency_key, alert=body.id)
        actors.enqueue_alert_events(alerts_service.evaluate_customers([body.customer],
                                                                      clock.now()))
        return _alert(body.id)

    return answer_once(key, idempotency_key, request, request_body, 201, run)


@router.get("/v1/alerts", response_model=schemas.Alerts)
def listing(key: Key, customer: str | None = Query(None),
            subscription: str | None = Query(None)) -> dict[str, Any]:
    """The live alerts, of a customer or a subscription."""
    if any(v is not None and not _storable(v) for v in (customer, subscription)):
        return {"alerts": []}
    return {"alerts": alerts_service.listing(customer=customer, subscription=subscription)}


@router.get("/v1/alerts/{alert_id}", response_model=schemas.Alert)
def get(alert_id: str, key: Key) -> dict[str, Any]:
    return _alert(alert_id)


@router.delete("/v1/alerts/{alert_id}", response_model=schemas.AlertDeleted)
def delete(alert_id: str, key: Key, request: Request,
           idempotency_key: IdempotencyKey = None) -> Response:
    """Delete an alert: it fires nothing more; what it fired stays delivered. Its id stays
    taken."""
    def run() -> dict[str, Any]:
        command("delete_alert", lambda s, now: alerts_service.do_delete(s, now, alert_id),
                key, idempotency_key, alert=alert_id)
        return {"id": alert_id, "deleted": True}

    return answer_once(key, idempotency_key, request, None, 200, run)
