"""``/v1/bill-runs``: an entity's bill run done now — the run of a local date, or one at
the present instant issuing everything due (``billing bill-run``'s twin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from domain.validation import Invalid, parse_date
from services import clock, invoicing
from services.commands import CONFLICT, INVALID, Outcome
from web import schemas
from web.dependencies import STATUS, ApiError, IdempotencyKey, Key, answer_once
from workers import actors

router = APIRouter(tags=["bill runs"])


def _enqueue(invoice_ids: list[int]) -> list[Outcome]:
    actors.enqueue_deliveries(invoice_ids)
    return []


@router.post("/v1/bill-runs", response_model=schemas.BillRun)
def bill_run(body: schemas.BillRunIn, key: Key, request: Request,
             idempotency_key: IdempotencyKey = None) -> Response:
    """Run an entity's bill run now, on live data: the run of ``date``, or without it a
    run at the present instant that issues every invoice due by now (``issued_at`` is
    now). Idempotent like every run: what exists is not issued again. Sent invoices are
    delivered by the workers. Refused: an unknown entity (404), a run that has not come
    yet (409), a malformed date (422)."""
    day = None
    if body.date is not None:
        try:
            day = parse_date(body.date, "date")
        except Invalid as exc:
            raise ApiError(422, INVALID, exc.message, "date") from None
    request_body = body.model_dump(mode="json")

    def run() -> dict[str, Any]:
        report = invoicing.bill_run_report(body.entity, day, clock.now(), deliver=_enqueue)
        if report.refusal is not None:
            code = report.refusal.code or CONFLICT
            raise ApiError(STATUS.get(code, 409), code, report.refusal.detail,
                           report.refusal.field)
        return report.document()

    return answer_once(key, idempotency_key, request, request_body, 200, run)
