"""What the HTTP API's routers share: errors in one shape, the API key, and commands run
once per ``Idempotency-Key``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from domain.documents import InvoiceRecord
from domain.validation import UNSTORABLE, Invalid, check_text, parse_instant
from services import api_keys, clock, idempotency
from services import invoices as invoices_service
from services.commands import CONFLICT, INVALID, NOT_FOUND, Outcome, recorded, run_command

bearer = HTTPBearer(auto_error=False, description="an API key: `billing api-keys create`")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers


def error(status: int, code: str, message: str, field: str | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}},
                        status_code=status, headers=headers)


def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                      Depends(bearer)]) -> api_keys.ApiKey:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "send an API key: Authorization: Bearer <key>",
                       headers={"WWW-Authenticate": "Bearer"})
    key = api_keys.verify(credentials.credentials, clock.now())
    if key is None:
        raise ApiError(401, "unauthorized", "this API key is not valid (or was revoked)",
                       headers={"WWW-Authenticate": "Bearer"})
    return key


Key = Annotated[api_keys.ApiKey, Depends(authorized)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=200,
    description="the same key on every retry of one request: it is applied once")]


def message_id(key: api_keys.ApiKey, idempotency_key: str | None, kind: str) -> str:
    """The command's id, ``http-KIND-UUID``: from the API key and the Idempotency-Key (the
    same on a retry), else new. A usage batch's id is this."""
    if idempotency_key is None:
        return f"http-{kind}-{uuid.uuid4()}"
    checked_key(idempotency_key)
    # one shape whoever sends it (curl, the Python client): `http-usage-<uuid>` (#27)
    return f"http-{kind}-{uuid.uuid5(uuid.NAMESPACE_URL, f'{key.id}/{idempotency_key}')}"


def checked_key(idempotency_key: str) -> str:
    try:
        return check_text(idempotency_key, "Idempotency-Key")
    except Invalid as exc:
        raise ApiError(422, INVALID, exc.message, "Idempotency-Key") from None


REUSED = "idempotency_key_reused"


def answer_once(key: api_keys.ApiKey, idempotency_key: str | None, request: Request,
                body: Any, status: int, produce: Callable[[], Any]) -> Response:
    """The answer to a request that takes an ``Idempotency-Key`` (services/idempotency.py):
    without one, ``produce()``'s; with one, the key is taken for this request — method,
    path and ``body`` (its parsed JSON) — first. The same request again gets the first
    answer (``produce`` is not called once there is one); another request with the key is
    refused with 422 ``idempotency_key_reused`` before anything of it is done."""
    if idempotency_key is None:
        return JSONResponse(jsonable_encoder(produce()), status_code=status)
    checked_key(idempotency_key)
    method, path = request.method, request.url.path
    try:
        first = idempotency.claim(key.id, idempotency_key, method, path,
                                  idempotency.fingerprint(method, path, body), clock.now())
    except idempotency.Reused as exc:
        raise ApiError(422, REUSED, str(exc), "Idempotency-Key") from None
    if first.answer is not None:
        code, text = first.answer
        return Response(text, status_code=code, media_type="application/json")
    answer = JSONResponse(jsonable_encoder(produce()), status_code=status)
    idempotency.remember(key.id, idempotency_key, status, bytes(answer.body).decode())
    return answer


STATUS = {INVALID: 422, NOT_FOUND: 404, CONFLICT: 409}


def command(kind: str, handler: Callable[..., Outcome], key: api_keys.ApiKey,
            idempotency_key: str | None, **ids: Any) -> Outcome:
    """Run a command once (an Idempotency-Key retried gets the first outcome), raising the
    HTTP error of a refusal."""
    mid = message_id(key, idempotency_key, kind)
    first = recorded(mid) if idempotency_key is not None else None
    outcome = first or run_command(kind, handler, message_id=mid, **ids)
    if outcome.status == "unchanged" and outcome.detail == "message already processed":
        outcome = recorded(mid) or outcome
    if outcome.status == "refused":
        raise ApiError(STATUS.get(outcome.code, 409), outcome.code or CONFLICT,
                       outcome.detail, outcome.field)
    return outcome


def iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.strftime("%Y-%m-%dT%H:%M:%SZ")




def storable_id(value: str) -> bool:
    """Whether an id from a path could exist (a NUL or a lone surrogate never does)."""
    return 0 < len(value) <= 255 and UNSTORABLE.search(value) is None


def instant_param(text: str | None) -> datetime:
    """An ``at`` query parameter: an instant with an offset (default: now)."""
    if text is None:
        return clock.now()
    try:
        return parse_instant(text, "at")
    except Invalid as exc:
        raise ApiError(422, INVALID, str(exc), "at") from None


def invoice_json(record: InvoiceRecord) -> dict[str, Any]:
    """An invoice as the API shows it (overdue judged on its entity's local date)."""
    return invoices_service.document(record, clock.now())


def find_invoice(reference: str) -> InvoiceRecord:
    """The invoice a path names — its number or SUBSCRIPTION@YYYY-MM-DD — or a 404."""
    if not storable_id(reference):
        raise ApiError(404, NOT_FOUND, "no such invoice", "ref")
    try:
        found = invoices_service.find(reference)
    except Invalid as exc:
        raise ApiError(422, INVALID, f"{reference!r}: {exc.message}", "ref") from None
    if found is None:
        raise ApiError(404, NOT_FOUND, f"no invoice {reference!r} ({invoices_service.HOW})",
                       "ref")
    return found


def invoice_again(record: InvoiceRecord) -> dict[str, Any]:
    """The invoice as it is now, after a command changed it (its reference may have: a
    released draft gets a number)."""
    again = invoices_service.by_id(record.id)
    assert again is not None
    return invoice_json(again)

