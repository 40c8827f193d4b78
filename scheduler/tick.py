"""The scheduler's tick: claim every due (entity, local date) bill run and enqueue it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime

import structlog

from domain.periods import bill_run_instant, latest_run_date
from persistence import billruns
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from workers import actors

log = structlog.get_logger("billing")


def tick(now: datetime, entity_ids: Collection[str] | None = None) -> list[tuple[str, date]]:
    """For each entity, claim its most recent due run (08:15 local today, or yesterday's
    before that) unless claimed already, and send ``bill_run`` for each new claim after
    the claims are committed. A run missed while the scheduler was down is caught up here:
    the run it does issue every invoice still due. Two schedulers at once are safe: a claim
    is a unique row."""
    claimed: list[tuple[str, date]] = []
    with unit_of_work() as session:
        for entity in catalog_repo.entities(session):
            if entity_ids is not None and entity.id not in entity_ids:
                continue
            day = latest_run_date(now, entity.timezone)
            run_at = bill_run_instant(day, entity.timezone)
            if billruns.claim(session, entity.id, day, run_at, now):
                claimed.append((entity.id, day))
    for entity_id, day in claimed:
        log.info("bill run claimed", entity=entity_id, local_date=day.isoformat())
        actors.bill_run.send(entity_id, day.isoformat())
    return claimed


def requeue_lost_deliveries(now: datetime) -> list[int]:
    """Deliveries whose message was lost to a crash between commit and enqueue."""
    lost = actors.requeue_lost_deliveries(now)
    if lost:
        log.warning("requeued lost deliveries", invoices=len(lost))
    return lost
