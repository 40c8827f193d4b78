"""``/v1/usage``: usage sent as batches for the ingest workers, and each batch's outcome."""

from __future__ import annotations

from typing import Any

import simplejson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from services import clock
from services import usage as usage_service
from services.commands import INVALID, NOT_FOUND
from web import schemas, usage_body
from web.dependencies import ApiError, IdempotencyKey, Key, answer_once, message_id, storable_id
from workers import actors

MAX_EVENTS = 1000  # events of one usage request

router = APIRouter()


@router.post("/v1/usage", status_code=202, response_model=schemas.BatchAccepted,
          tags=["usage"], openapi_extra={"requestBody": {"required": True, "content": {
              "application/json": {"schema": {
                  "type": "object", "required": ["events"],
                  "properties": {"events": {
                      "type": "array", "minItems": 1, "maxItems": MAX_EVENTS,
                      "description": "events of the scenario format's shape; anything "
                                     "else is rejected with a reason when processed "
                                     "(nothing is lost)",
                      "items": {}}}}}}}})
async def send_usage(request: Request, key: Key,
                     idempotency_key: IdempotencyKey = None) -> Response:
    """Up to 1,000 events (the scenario format's event shape) for the ingest workers, as
    one batch. Each event gets its outcome when processed (GET the batch). Event keys
    make a re-send safe: a duplicate is never counted twice."""
    events, raw = _events(await request.body())
    batch = message_id(key, idempotency_key, "usage")

    def enqueue() -> dict[str, Any]:
        _enqueue_usage(batch, events, raw)
        return {"batch": batch, "events": len(events)}

    # the database and the broker off the event loop: other requests parse meanwhile
    return await run_in_threadpool(answer_once, key, idempotency_key, request,
                                   {"events": events}, 202, enqueue)

@router.get("/v1/usage/batches/{batch}", response_model=schemas.BatchStatus, tags=["usage"])
def batch_status(batch: str, key: Key) -> dict[str, Any]:
    """A batch's outcome: queued, or processed with each outcome's count and every
    rejection's key and reason."""
    found = usage_service.batch_status(batch) if storable_id(batch) else None
    if found is None:
        raise ApiError(404, NOT_FOUND, f"no batch {batch!r}", "batch")
    return found


def _events(body: bytes) -> tuple[list[Any], str]:
    """The events of a usage request (numbers as exact decimals) and their JSON text."""
    try:
        events, raw = usage_body.parse(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, INVALID, f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(events, list) or raw is None:
        raise ApiError(422, INVALID, 'the body must be {"events": [...]}', "events")
    if not events:
        raise ApiError(422, INVALID, "events: must hold at least one event", "events")
    if len(events) > MAX_EVENTS:
        raise ApiError(413, "too_large", f"events: at most {MAX_EVENTS} per request, got "
                                         f"{len(events)} (send several requests)", "events")
    return events, raw


def _enqueue_usage(batch: str, events: list[Any], raw: str) -> None:
    """The batch for the ingest workers: its events' JSON text as it came when it is ASCII
    (checked above; not encoded a second time), else re-encoded (escaped) from the values."""
    usage_service.receive_batch(batch, len(events), clock.now())
    arg: Any = simplejson.RawJSON(raw) if raw.isascii() else events
    message = actors.record_usage.message_with_options(args=(arg,)).copy(message_id=batch)
    actors.record_usage.broker.enqueue(message)
