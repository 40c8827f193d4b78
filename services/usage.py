"""Ingesting usage: a batch of events stored set-wise, each event getting exactly one
outcome (SPEC §3), recorded once per message id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from domain.usage import Rejection, UsageEvent, validate_event
from persistence import catalog as catalog_repo
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import CustomerRow, MeterRow
from services import late


def ingest(session: Session, raw_events: Any, now: datetime,
           message_id: str | None) -> dict[str, int]:
    """Validate, dedupe and store one batch; the count of each outcome."""
    if not isinstance(raw_events, list):
        raw_events = [raw_events]
    referenced = [e for e in raw_events if isinstance(e, dict)]
    customers = catalog_repo.known_ids(
        session, CustomerRow, [e.get("customer") for e in referenced]
    )
    meters = catalog_repo.known_ids(session, MeterRow, [e.get("meter") for e in referenced])

    rejections: list[Rejection] = []
    first: dict[str, UsageEvent] = {}
    repeats: list[UsageEvent] = []
    for raw in raw_events:
        result = validate_event(raw, now, customers, meters)
        if isinstance(result, Rejection):
            rejections.append(result)
        elif result.key in first:
            repeats.append(result)
        else:
            first[result.key] = result

    inserted = usage_repo.insert_events(session, list(first.values()), now,
                                        closing_by=now + late.CLOSING_MARGIN)
    already = [e for e in first.values() if e.key not in inserted.keys]
    stored = usage_repo.stored_events(session, [e.key for e in already])
    duplicates = 0
    conflicts: list[tuple[UsageEvent, UsageEvent]] = []
    for event in already + repeats:
        kept = stored.get(event.key) or first[event.key]
        if kept.same_payload(event):
            duplicates += 1
        else:
            conflicts.append((kept, event))
    if inserted.to_check:  # only their events can be late (usually none are)
        late.flag_late(session, [first[key] for key in sorted(inserted.keys)],
                       inserted.to_check, now)
    usage_repo.store_rejections(session, rejections, now, message_id)
    usage_repo.store_conflicts(session, conflicts, now)
    return {"accepted": len(inserted.keys), "duplicate": duplicates, "conflict": len(conflicts),
            "rejected": len(rejections)}


class AlreadyProcessed(Exception):
    """This message's batch was recorded by an earlier delivery: roll back."""


def ingest_message(events: Any, message_id: str, now: datetime) -> dict[str, int] | None:
    """Ingest one message's batch in one transaction, recorded under ``message_id``; None
    when that message was processed before (then nothing changes)."""
    try:
        with unit_of_work() as session:
            counts = ingest(session, events, now, message_id)
            if not usage_repo.record_batch(session, message_id, now, counts):
                raise AlreadyProcessed
    except AlreadyProcessed:
        return None
    return counts


def resubmit(rejected_id: int, fixes: dict[str, Any], now: datetime) -> dict[str, int]:
    """Ingest a stored rejected event again, with ``fixes`` applied to its payload (what
    ``billing usage resubmit`` does). The rejection stays on record."""
    with unit_of_work() as session:
        payload = usage_repo.rejected_payload(session, rejected_id)
        if payload is None:
            raise LookupError(f"no rejected event #{rejected_id}")
        event = {**payload, **fixes} if isinstance(payload, dict) else fixes
        message_id = f"resubmit-{rejected_id}-{uuid.uuid4()}"
        counts = ingest(session, [event], now, message_id)
        usage_repo.record_batch(session, message_id, now, counts)
    return counts


def receive_batch(batch_id: str, events: int, now: datetime) -> None:
    """Note a batch received over HTTP, so that its status is "queued" until processed."""
    with unit_of_work() as session:
        usage_repo.receive_batch(session, batch_id, events, now)


def batch_status(batch_id: str) -> dict[str, Any] | None:
    """A batch's outcome counts and rejections once processed, "queued" before; None for a
    batch never received."""
    with unit_of_work() as session:
        return usage_repo.batch_status(session, batch_id)
