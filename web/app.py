"""The HTTP API (``/v1``) on FastAPI: handlers parse, authorize, call the service layer
(or enqueue usage for the ingest workers), and render. No SQL, no pricing here.

Every endpoint but ``/healthz`` needs ``Authorization: Bearer <API key>``. Errors have one
shape: ``{"error": {"code", "message", "field"}}``. A command (subscribe, cancel, …) is
applied once however often it is retried with the same ``Idempotency-Key``; a retry gets
the first answer again, and another request with that key is refused (422
``idempotency_key_reused``; services/idempotency.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import simplejson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.documents import pending_document, preview_document
from domain.parties import BUYER
from domain.validation import Invalid, check_text
from persistence import catalog as catalog_repo
from persistence import db
from persistence.db import unit_of_work
from services import catalog as catalog_service
from services import clock, documents, invoicing
from services import invoices as invoices_service
from services import portal as portal_service
from services import usage as usage_service
from services.commands import CONFLICT, INVALID, NOT_FOUND
from services.outages import is_infrastructure
from web import schemas, usage_body
from web.dependencies import (
    ApiError,
    IdempotencyKey,
    Key,
    answer_once,
    command,
    error,
    find_invoice,
    instant_param,
    invoice_again,
    invoice_json,
    iso,
    message_id,
    storable_id,
)
from web.portal import router as portal_router
from web.routers.alerts import router as alerts_router
from web.routers.billruns import router as billruns_router
from web.routers.credits import router as credits_router
from web.routers.payments import router as payments_router
from web.routers.subscriptions import router as subscriptions_router
from workers import actors

MAX_BODY = 1024 * 1024  # bytes of a request body
MAX_EVENTS = 1000  # events of one usage request




class BodyLimit:
    """Refuses a request body larger than MAX_BODY with 413, whatever it claims."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await error(413, "too_large", f"the body is larger than {MAX_BODY} "
                                                 "bytes")(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
            return message

        await self.app(scope, limited, send)


def create_app() -> FastAPI:
    app = FastAPI(
        title="usage-billing", version=_version(),
        description="Send usage, manage customers and subscriptions, read invoices and "
                    "estimated charges. Every endpoint but /healthz needs an API key "
                    "(`Authorization: Bearer …`, from `billing api-keys create NAME`).",
        responses=schemas.ERRORS,
    )
    app.add_middleware(BodyLimit)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        # The client went away while its body was read — or was timed out by the server
        # (web/server.py), which has answered 408 and closed the connection. Not an error
        # of the server: nothing to log, and this answer goes nowhere (uvicorn drops what
        # is sent on a disconnected request).
        return error(408, "timeout", "the client disconnected before its body arrived")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error(422, INVALID, f"{where + ': ' if where else ''}"
                                   f"{first.get('msg', 'invalid request')}", where)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: NOT_FOUND, 405: "method_not_allowed"}.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of every route of this path
            headers["Allow"] = ", ".join(_methods(request))
        return error(exc.status_code, code, str(exc.detail), headers=headers)

    @app.middleware("http")
    async def outages(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        try:
            return await call_next(request)
        except ApiError as exc:  # raised by the body limit, below the handlers
            return error(exc.status, exc.code, exc.message, exc.field)
        except Exception as exc:
            if is_infrastructure(exc):
                return error(503, "unavailable", "the database or the broker is unreachable: "
                                                 "try again", headers={"Retry-After": "5"})
            raise

    # -------------------------------------------------------------------- health

    @app.get("/healthz", response_model=schemas.Health, tags=["health"])
    def healthz() -> dict[str, str]:
        """Whether the web process, its database and its broker answer (no API key)."""
        database = "ok"
        try:
            with db.engine().connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except Exception:
            database = "unreachable"
        broker = _broker_state()
        status = "ok" if database == "ok" and broker != "unreachable" else "degraded"
        return {"status": status, "database": database, "broker": broker}

    # -------------------------------------------------------------------- usage

    @app.post("/v1/usage", status_code=202, response_model=schemas.BatchAccepted,
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

    @app.get("/v1/usage/batches/{batch}", response_model=schemas.BatchStatus, tags=["usage"])
    def batch_status(batch: str, key: Key) -> dict[str, Any]:
        """A batch's outcome: queued, or processed with each outcome's count and every
        rejection's key and reason."""
        found = usage_service.batch_status(batch) if storable_id(batch) else None
        if found is None:
            raise ApiError(404, NOT_FOUND, f"no batch {batch!r}", "batch")
        return found

    # -------------------------------------------------------------------- customers

    @app.put("/v1/customers/{customer_id}", response_model=schemas.Customer,
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

    @app.get("/v1/customers/{customer_id}", response_model=schemas.Customer,
             tags=["customers"])
    def get_customer(customer_id: str, key: Key) -> dict[str, Any]:
        with unit_of_work() as session:
            customer = catalog_repo.customer(session, customer_id) \
                if storable_id(customer_id) else None
        if customer is None:
            raise ApiError(404, NOT_FOUND, f"{customer_id!r} is not a known customer")
        return _customer_json(customer)

    @app.get("/v1/customers/{customer_id}/estimate", response_model=schemas.CustomerEstimate,
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


    # -------------------------------------------------------------------- invoices

    @app.get("/v1/invoices", response_model=schemas.InvoicePage, tags=["invoices"])
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

    @app.get("/v1/invoices/{ref}", response_model=schemas.Invoice, tags=["invoices"],
             responses={200: {"content": {"text/html": {}}}})
    def get_invoice(ref: str, request: Request, key: Key) -> Any:
        """An invoice by its number or SUBSCRIPTION@YYYY-MM-DD: JSON, or the readable
        document with ``Accept: text/html``."""
        record = find_invoice(ref)
        if "text/html" in request.headers.get("accept", "").split(",")[0]:
            return HTMLResponse(documents.html(record))
        return invoice_json(record)

    @app.post("/v1/invoices/{ref}/release", response_model=schemas.Invoice, tags=["invoices"])
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

    @app.post("/v1/invoices/{ref}/regenerate", response_model=schemas.Invoice,
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

    # -------------------------------------------------------------------- portal

    @app.post("/v1/portal-links", status_code=201, response_model=schemas.PortalLink,
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

    @app.delete("/v1/portal-links/{link_id}", status_code=204, tags=["portal"])
    def revoke_portal_link(link_id: str, key: Key) -> Response:
        """Revoke a link now: its page answers 403 from then on."""
        if not storable_id(link_id) or not portal_service.revoke(link_id=link_id,
                                                                 now=clock.now()):
            raise ApiError(404, NOT_FOUND, f"no open portal link {link_id!r}", "link_id")
        return Response(status_code=204)

    app.include_router(subscriptions_router)
    app.include_router(billruns_router)
    app.include_router(credits_router)
    app.include_router(alerts_router)
    app.include_router(payments_router)
    app.include_router(portal_router)
    return app


def _link_json(link: portal_service.Link) -> dict[str, Any]:
    return {"id": link.id, "customer": link.customer, "url": link.url,
            "expires_at": iso(link.expires_at)}


def _methods(request: Request) -> list[str]:
    """The methods of every route of the request's path."""
    found: set[str] = set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            found.update(getattr(route, "methods", None) or ())
    return sorted(found)


def _customer_json(customer: Any) -> dict[str, Any]:
    return {"id": customer.id, "entity": customer.entity, "email": customer.email,
            "draft_invoices": bool(customer.draft_invoices),
            **{k: getattr(customer.details, k) for k in BUYER},
            "taxes": list(customer.taxes) if customer.taxes is not None else None,
            "tax_exempt": bool(customer.tax_exempt)}


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


def _broker_state() -> str:
    broker: Any = actors.record_usage.broker
    if not hasattr(broker, "client") and not hasattr(broker, "connection"):
        return "in-process"
    try:
        if hasattr(broker, "client"):
            broker.client.ping()
        else:
            broker.get_queue_message_counts("billing")
        return "ok"
    except Exception:
        return "unreachable"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("usage-billing")
    except PackageNotFoundError:
        return "0"
