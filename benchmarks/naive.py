"""The naive baseline: one message per event, one ORM insert per row (check, then insert).

Run by workers as ``dramatiq benchmarks.naive``; it exists to be measured against."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from domain.usage import UsageEvent, validate_event
from persistence import db
from persistence.tables import CustomerRow, MeterRow, UsageEventRow
from services import clock
from services.settings import settings
from workers.broker import actor

if not db.is_configured():
    db.configure(settings().database_url)


@actor
def record_one_event(event: dict[str, Any]) -> None:
    now = clock.now()
    with Session(db.engine()) as session, session.begin():
        customer_ok = session.get(CustomerRow, event.get("customer")) is not None
        meter_ok = session.get(MeterRow, event.get("meter")) is not None
        result = validate_event(event, now, {event["customer"]} if customer_ok else set(),
                                {event["meter"]} if meter_ok else set())
        if isinstance(result, UsageEvent) and session.get(UsageEventRow, result.key) is None:
            session.add(UsageEventRow(key=result.key, customer_id=result.customer,
                                      meter_id=result.meter, quantity=result.quantity,
                                      timestamp=result.timestamp, ingested_at=now))
