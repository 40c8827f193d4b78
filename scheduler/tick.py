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
from datetime import date, datetime

import structlog

from scheduler.schedule import Schedule, wake
from services.operator import scheduling
from workers import actors

log = structlog.get_logger("billing")


def tick(now: datetime, entity_ids: Collection[str] | None = None) -> list[tuple[str, date]]:
    """One wake over a schedule made now (replays, tests, and the benchmark drive the
    scheduler this way; ``python -m scheduler`` keeps its schedule between wakes): claim
    each entity's most recent due run (08:15 local today, or yesterday's before that)
    unless claimed already, then send ``bill_run`` for every claim not done and not sent
    recently. A run missed while the scheduler was down is caught up: the run it claims
    issues every invoice still due. The claims made by this tick."""
    zones = scheduling.entity_zones()
    if entity_ids is not None:
        zones = {e: tz for e, tz in zones.items() if e in entity_ids}
    return wake(Schedule.of(zones, now), now, entity_ids).claimed


def requeue_lost_deliveries(now: datetime) -> list[int]:
    """Deliveries whose message was lost to a crash between commit and enqueue."""
    lost = actors.requeue_lost_deliveries(now)
    if lost:
        log.warning("requeued lost deliveries", invoices=len(lost))
    return lost
