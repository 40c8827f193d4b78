"""The scheduler's tick: claim every due (entity, local date) bill run, and send every
claimed run that is not done.

A claim records its progress — claimed, sent (its ``bill_run`` message is with the
broker), done (``bill_run`` has sent all its work) — so a run whose message could not be
sent (the broker was down, the scheduler was killed between the claim and the send) is
sent by the next tick, and one whose message was lost is sent again after
``BILLING_BILL_RUN_RESEND_SECONDS``; either way with its own run instant as the
``issued_at`` of what it issues. A repeated run issues nothing twice.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

import structlog

from domain.periods import bill_run_instant, latest_run_date
from persistence import billruns
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from services.settings import settings
from workers import actors

log = structlog.get_logger("billing")


def resend_after() -> timedelta:
    return timedelta(seconds=settings().bill_run_resend_seconds)


def tick(now: datetime, entity_ids: Collection[str] | None = None) -> list[tuple[str, date]]:
    """Claim each entity's most recent due run (08:15 local today, or yesterday's before
    that) unless claimed already, then send ``bill_run`` for every claim that is not done
    and not sent recently, marking each sent once the broker has it. A run missed while the
    scheduler was down is caught up: the run it claims issues every invoice still due. Two
    schedulers at once are safe: a claim is a unique row, a repeated run issues nothing
    twice. The claims made by this tick."""
    claimed: list[tuple[str, date]] = []
    with unit_of_work() as session:
        for entity in catalog_repo.entities(session):
            if entity_ids is not None and entity.id not in entity_ids:
                continue
            day = latest_run_date(now, entity.timezone)
            run_at = bill_run_instant(day, entity.timezone)
            if billruns.claim(session, entity.id, day, run_at, now):
                claimed.append((entity.id, day))
                log.info("bill run claimed", entity=entity.id, local_date=day.isoformat())
    with unit_of_work() as session:
        to_send = [(r.entity_id, r.local_date, r.status)
                   for r in billruns.unfinished(session, now, resend_after(), entity_ids)]
    for entity_id, day, status in to_send:
        actors.bill_run.send(entity_id, day.isoformat())  # raises while the broker is down
        with unit_of_work() as session:
            billruns.mark_sent(session, entity_id, day, now)
        if status != "claimed" or (entity_id, day) not in claimed:
            log.warning("bill run sent again", entity=entity_id, local_date=day.isoformat(),
                        was=status)
    return claimed


def requeue_lost_deliveries(now: datetime) -> list[int]:
    """Deliveries whose message was lost to a crash between commit and enqueue."""
    lost = actors.requeue_lost_deliveries(now)
    if lost:
        log.warning("requeued lost deliveries", invoices=len(lost))
    return lost
