"""``/v1/subscriptions``: subscribe, read, cancel, uncancel, change the plan (SPEC §14) —
with a preview of the change — and the estimate of the next invoice."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from domain.documents import pending_document, preview_document
from domain.validation import Invalid
from services import api_keys, clock, invoicing, plan_changes, subscriptions
from services.commands import CONFLICT, NOT_FOUND
from web import schemas
from web.dependencies import (
    ApiError,
    IdempotencyKey,
    Key,
    answer_once,
    command,
    instant_param,
    iso,
    storable_id,
)

router = APIRouter(tags=["subscriptions"])


def subscription_json(view: subscriptions.SubscriptionView) -> dict[str, Any]:
    return {"id": view.id, "customer": view.customer, "entity": view.entity,
            "plan": view.plan, "plan_version": view.plan_version,
            "start": view.start.isoformat(), "end": view.end and view.end.isoformat(),
            "status": view.status,
            "next_boundary": view.next_boundary and view.next_boundary.isoformat(),
            "next_run": iso(view.next_run), "discount": view.discount,
            "created_at": iso(view.created_at), "note": view.note,
            "plans": [{"plan": p.plan, "version": p.version, "from": p.since.isoformat()}
                      for p in plan_changes.history_of(view.id)]}


def one_subscription(subscription_id: str) -> dict[str, Any]:
    found = subscriptions.views(clock.now(), ids=[subscription_id]) \
        if storable_id(subscription_id) else []
    if not found:
        raise ApiError(404, NOT_FOUND, f"{subscription_id!r} is not a known subscription")
    return subscription_json(found[0])


def lifecycle(kind: str, subscription_id: str, key: api_keys.ApiKey,
              idempotency_key: str | None, request: Request) -> Response:
    """A cancel or uncancel sent now: 404 for an unknown subscription (an HTTP request is
    answered now, not kept pending), the refusal's error, or the subscription after it."""
    def run() -> dict[str, Any]:
        one_subscription(subscription_id)  # 404 when unknown
        sent = clock.now()
        command(kind, lambda s, now: subscriptions.do_lifecycle(
            s, now, subscription_id, kind, sent, "http", keep_pending=False), key,
            idempotency_key, subscription=subscription_id)
        return one_subscription(subscription_id)

    return answer_once(key, idempotency_key, request, None, 200, run)


@router.post("/v1/subscriptions", status_code=201, response_model=schemas.Subscription)
def subscribe(body: schemas.SubscriptionIn, key: Key, request: Request,
              idempotency_key: IdempotencyKey = None) -> Response:
    """Subscribe a customer to a plan's latest version from a start date. Refused with
    the reason: an overlap on a meter (409), an unknown customer or plan (404), an
    invalid field or discount (422)."""
    terms = body.model_dump(exclude_none=True)

    def run() -> dict[str, Any]:
        sent = clock.now()
        command("subscribe", lambda s, now: subscriptions.do_subscribe(
            s, now, terms, sent, "http"), key, idempotency_key, subscription=body.id)
        return one_subscription(body.id)

    return answer_once(key, idempotency_key, request, body.model_dump(mode="json"), 201, run)


@router.get("/v1/subscriptions/{subscription_id}", response_model=schemas.Subscription)
def get_subscription(subscription_id: str, key: Key) -> dict[str, Any]:
    """Where it stands, its next invoice, and its plan history."""
    return one_subscription(subscription_id)


@router.post("/v1/subscriptions/{subscription_id}/cancel", response_model=schemas.Subscription)
def cancel(subscription_id: str, key: Key, request: Request,
           idempotency_key: IdempotencyKey = None) -> Response:
    """Cancel at the end of the current period (the grace period until then)."""
    return lifecycle("cancel", subscription_id, key, idempotency_key, request)


@router.post("/v1/subscriptions/{subscription_id}/uncancel",
             response_model=schemas.Subscription)
def uncancel(subscription_id: str, key: Key, request: Request,
             idempotency_key: IdempotencyKey = None) -> Response:
    """Remove a cancellation before its end."""
    return lifecycle("uncancel", subscription_id, key, idempotency_key, request)


@router.post("/v1/subscriptions/{subscription_id}/change-plan",
             response_model=schemas.Subscription)
def change_plan(subscription_id: str, body: schemas.PlanChangeIn, key: Key, request: Request,
                idempotency_key: IdempotencyKey = None) -> Response:
    """Move to another plan (its latest version) from a local date (SPEC §14): usage is
    billed per segment, the fee billed in advance is prorated by days on the next invoice.
    A change on the latest change date replaces it, or calls it off. Refused with the
    reason (409), or 404 for an unknown subscription or plan."""
    def run() -> dict[str, Any]:
        one_subscription(subscription_id)  # 404 when unknown
        sent = clock.now()
        command("change_plan", lambda s, now: plan_changes.do_change_plan(
            s, now, subscription_id, body.plan, body.since, sent), key, idempotency_key,
            subscription=subscription_id)
        return one_subscription(subscription_id)

    return answer_once(key, idempotency_key, request, body.model_dump(mode="json"), 200, run)


@router.post("/v1/subscriptions/{subscription_id}/change-plan/preview",
             response_model=schemas.PlanChangePreview)
def preview_change(subscription_id: str, body: schemas.PlanChangeIn,
                   key: Key) -> dict[str, Any]:
    """What a change would do, and the next invoice's estimate with it — its segments and
    prorations. Nothing is changed."""
    one_subscription(subscription_id)  # 404 when unknown
    now = clock.now()
    found = plan_changes.preview_change(subscription_id, body.plan, body.since, now)
    if found.outcome.status == "refused":
        status = 404 if found.outcome.code == NOT_FOUND else \
            422 if found.outcome.code == "invalid" else 409
        raise ApiError(status, found.outcome.code or CONFLICT, found.outcome.detail,
                       found.outcome.field)
    return {"change": found.outcome.detail,
            "estimate": preview_document(found.invoice, subscription_id, now)
            if found.invoice else None}


@router.get("/v1/subscriptions/{subscription_id}/estimate", response_model=schemas.Estimate,
            tags=["estimates"])
def subscription_estimate(subscription_id: str, key: Key,
                          at: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    """Estimated charges: the invoice its next boundary would get if usage stopped
    now, with the adjustment lines and discount it would carry; and, in ``pending``, the
    invoices due but not issued yet (their boundary passed, the next bill run issues
    them). Nothing is stored."""
    when = instant_param(at)
    if not storable_id(subscription_id):
        raise ApiError(404, NOT_FOUND, "no such subscription")
    try:
        waiting = invoicing.pending(subscription_id, when, latest=at is None)
        estimate = invoicing.preview(subscription_id, when, latest=at is None)
    except Invalid as exc:
        status = 404 if "not a known" in exc.message else 409
        raise ApiError(status, NOT_FOUND if status == 404 else CONFLICT,
                       exc.message) from None
    return {**preview_document(estimate, subscription_id, when),
            "pending": [pending_document(p.invoice, p.subscription) for p in waiting]}
