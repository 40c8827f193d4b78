"""Running a command exactly once.

A command (subscribe, cancel, …) is applied in one transaction together with a
``command_log`` row keyed by its message id (a dramatiq message id, or an HTTP
``Idempotency-Key``), so a redelivered message changes nothing. A refusal (unknown id,
overlap, invalid field) is a business outcome: it is stored with its reason and logged,
never raised (raising would make dramatiq retry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session

from domain.validation import Invalid
from persistence import subscriptions as log_repo
from persistence.db import unit_of_work
from services import clock

log = structlog.get_logger("billing")


# Why a command was refused, for an HTTP answer: invalid (422, naming the field),
# not_found (404), conflict (409: an overlap, other terms, an issued invoice in the way).
INVALID, NOT_FOUND, CONFLICT = "invalid", "not_found", "conflict"


@dataclass(frozen=True)
class Outcome:
    status: str  # applied | unchanged | refused | pending
    detail: str = ""
    deliver: tuple[int, ...] = ()  # invoices sent by it: to deliver once it is committed
    events: tuple[int, ...] = ()  # invoice events it recorded: to deliver once committed
    code: str = ""  # for a refusal: invalid | not_found | conflict
    field: str | None = None  # for an invalid one: the field it is about


def applied(detail: str = "", deliver: tuple[int, ...] = (),
            events: tuple[int, ...] = ()) -> Outcome:
    return Outcome("applied", detail, deliver, events=events)


def unchanged(detail: str) -> Outcome:
    return Outcome("unchanged", detail)


def refused(detail: str, code: str = CONFLICT, field: str | None = None) -> Outcome:
    return Outcome("refused", detail, code=code, field=field)


def invalid(exc: Invalid) -> Outcome:
    """A refusal of input that breaks a rule, naming the field."""
    return refused(str(exc), INVALID, exc.field or None)


def not_found(detail: str, field: str | None = None) -> Outcome:
    return refused(detail, NOT_FOUND, field)


def pending(detail: str) -> Outcome:
    """Kept, changing nothing yet: a command for a subscription not created so far."""
    return Outcome("pending", detail)


def recorded(message_id: str) -> Outcome | None:
    """The outcome a command message had when it was processed (an HTTP request retried
    with its Idempotency-Key gets the first answer again); None if it never was."""
    with unit_of_work() as session:
        row = log_repo.command_outcome(session, message_id)
        if row is None or not row.outcome:
            return None
        return Outcome(row.outcome, row.detail, code=row.code, field=row.field)


def run_command(actor: str, handler: Callable[[Session, datetime], Outcome], *,
                message_id: str | None = None, **ids: Any) -> Outcome:
    bound = log.bind(actor=actor, message_id=message_id, **ids)
    now = clock.now()
    with unit_of_work() as session:
        if message_id is not None and not log_repo.claim_message(session, message_id, actor, now):
            bound.info("message already processed")
            return unchanged("message already processed")
        outcome = handler(session, now)
        if message_id is not None:
            log_repo.record_outcome(session, message_id, outcome.status, outcome.detail,
                                    outcome.code, outcome.field)
    if outcome.status in ("refused", "pending") and message_id is not None:
        bound.warning(f"{actor} {outcome.status}", reason=outcome.detail)
    elif outcome.status in ("refused", "pending"):
        # a command run by hand (CLI, HTTP): its caller shows the refusal (an `error:`
        # line, a 4xx) — a warning on the terminal before it would say it twice
        bound.info(f"{actor} {outcome.status}", reason=outcome.detail)
    else:
        bound.info(f"{actor} {outcome.status}", detail=outcome.detail or None)
    return outcome
