"""Usage events: set-wise insert with ``ON CONFLICT DO NOTHING``, the outcome records,
and aggregation in SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    String,
    case,
    cast,
    distinct,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.aggregation import average
from domain.catalog import Aggregation, Meter
from domain.usage import Rejection, UsageEvent
from persistence.sql import insert_ignore, is_postgres
from persistence.tables import (
    IngestBatchRow,
    PlanMeterRow,
    RejectedUsageRow,
    SubscriptionRow,
    UsageConflictRow,
    UsageEventRow,
)
from persistence.types import ExactDecimal

E = UsageEventRow
CHUNK = 1000


def claim_batch(session: Session, message_id: str, now: datetime) -> bool:
    """Record a usage message as being processed; False when it was processed before."""
    stmt = insert_ignore(session, IngestBatchRow, "message_id").values(
        message_id=message_id, received_at=now
    ).returning(col(IngestBatchRow.message_id))
    return session.execute(stmt).first() is not None


def finish_batch(session: Session, message_id: str, counts: dict[str, int]) -> None:
    session.execute(
        update(IngestBatchRow).where(col(IngestBatchRow.message_id) == message_id)
        .values(**counts)
    )


def insert_events(session: Session, events: Sequence[UsageEvent], now: datetime) -> set[str]:
    """Insert the events whose key is new; return the keys that were inserted."""
    inserted: set[str] = set()
    for start in range(0, len(events), CHUNK):
        rows = [
            {"key": e.key, "customer_id": e.customer, "meter_id": e.meter,
             "quantity": e.quantity, "timestamp": e.timestamp,
             "properties": dict(e.properties) or None, "ingested_at": now}
            for e in events[start:start + CHUNK]
        ]
        stmt = insert_ignore(session, UsageEventRow, "key").returning(col(UsageEventRow.key))
        inserted.update(session.scalars(stmt, rows))
    return inserted


def stored_events(session: Session, keys: Iterable[str]) -> dict[str, UsageEvent]:
    result: dict[str, UsageEvent] = {}
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        for row in session.scalars(select(E).where(col(E.key).in_(part))):
            result[row.key] = UsageEvent(row.key, row.customer_id, row.meter_id, row.quantity,
                                         row.timestamp, row.properties or {})
    return result


def store_rejections(session: Session, rejections: Sequence[Rejection], now: datetime,
                     message_id: str | None) -> None:
    if rejections:
        session.execute(
            insert(RejectedUsageRow),
            [{"key": r.key, "reason": r.reason, "payload": r.payload, "received_at": now,
              "message_id": message_id} for r in rejections],
        )


def store_conflicts(session: Session, conflicts: Sequence[tuple[UsageEvent, UsageEvent]],
                    now: datetime) -> None:
    if conflicts:
        session.execute(
            insert(UsageConflictRow),
            [{"key": new.key, "stored_payload": old.payload(), "received_payload": new.payload(),
              "received_at": now} for old, new in conflicts],
        )


def _decimal(session: Session, name: str, column: Any) -> Any:
    """SUM/MAX/MIN over exact decimals: native on PostgreSQL NUMERIC, the exact
    aggregates registered by ``persistence.db`` on SQLite (where decimals are text)."""
    if is_postgres(session):
        return getattr(func, name)(column, type_=ExactDecimal())
    return getattr(func, f"dec_{name}")(column, type_=ExactDecimal())


def _unique_value(session: Session, prop: str) -> Any:
    """``properties[prop]`` as a comparable value; absent or JSON null is SQL NULL."""
    if is_postgres(session):
        return func.nullif(col(E.properties)[prop], cast(literal("null"), JSONB))
    path = '$."' + prop.replace('"', '\\"') + '"'
    kind = func.json_type(col(E.properties), path)
    return case(
        (kind.is_(None) | (kind == "null"), None),
        else_=kind + literal(":") + cast(func.json_extract(col(E.properties), path), String),
    )


def aggregate(session: Session, customer: str, meter: Meter, start_at: datetime,
              end_at: datetime, ingested_by: datetime) -> Decimal:
    """SPEC §4 over the events of ``customer`` and ``meter`` with a timestamp in
    ``[start_at, end_at)`` that were ingested no later than ``ingested_by``."""
    where = (
        col(E.customer_id) == customer,
        col(E.meter_id) == meter.id,
        col(E.timestamp) >= start_at,
        col(E.timestamp) < end_at,
        col(E.ingested_at) <= ingested_by,
    )
    agg = meter.aggregation
    if agg is Aggregation.LAST:
        key_order = col(E.key).collate("C") if is_postgres(session) else col(E.key)
        stmt = select(col(E.quantity)).where(*where).order_by(
            col(E.timestamp).desc(), key_order.desc()).limit(1)
        value = session.scalar(stmt)
        return Decimal(0) if value is None else value
    if agg is Aggregation.COUNT:
        return Decimal(session.scalar(select(func.count()).where(*where)) or 0)
    if agg is Aggregation.UNIQUE_COUNT:
        assert meter.property is not None
        expr = func.count(distinct(_unique_value(session, meter.property)))
        return Decimal(session.scalar(select(expr).where(*where)) or 0)
    if agg is Aggregation.AVERAGE:
        row = session.execute(
            select(_decimal(session, "sum", col(E.quantity)), func.count()).where(*where)
        ).one()
        return average(row[0] or Decimal(0), int(row[1]))
    name = {Aggregation.SUM: "sum", Aggregation.MAX: "max", Aggregation.MIN: "min"}[agg]
    value = session.scalar(select(_decimal(session, name, col(E.quantity))).where(*where))
    return Decimal(0) if value is None else value


def outcome_counts(session: Session) -> dict[str, int]:
    B = IngestBatchRow
    names = ("accepted", "duplicate", "conflict", "rejected")
    row = session.execute(
        select(*[func.coalesce(func.sum(col(getattr(B, n))), 0) for n in names])
    ).one()
    return {name: int(value) for name, value in zip(names, row, strict=True)}


def count_unbilled(session: Session) -> int:
    """Accepted events that fall in the lifetime of no subscription of their customer whose
    plan charges their meter."""
    S, PM = SubscriptionRow, PlanMeterRow
    billed = (
        select(literal(1))
        .select_from(S)
        .join(PM, col(PM.plan_id) == col(S.plan_id))
        .where(
            col(S.customer_id) == col(E.customer_id),
            col(PM.meter_id) == col(E.meter_id),
            col(E.timestamp) >= col(S.start_at),
            (col(S.end_at).is_(None)) | (col(E.timestamp) < col(S.end_at)),
        )
    )
    return int(session.scalar(select(func.count()).select_from(E).where(~exists(billed))) or 0)


def rejected(session: Session, limit: int = 100) -> list[RejectedUsageRow]:
    stmt = select(RejectedUsageRow).order_by(col(RejectedUsageRow.id).desc()).limit(limit)
    return list(session.scalars(stmt))


def rejected_payload(session: Session, rejected_id: int) -> Any:
    row = session.get(RejectedUsageRow, rejected_id)
    return None if row is None else row.payload
