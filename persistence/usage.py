"""Usage events: set-wise insert with ``ON CONFLICT DO NOTHING``, the outcome records,
and aggregation in SQL."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
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
SIMPLE = {Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX, Aggregation.MIN,
          Aggregation.AVERAGE}


def record_batch(session: Session, message_id: str, now: datetime,
                 counts: dict[str, int]) -> bool:
    """Record a processed usage message with its outcome counts; False when it was
    recorded before (the caller must then roll back)."""
    stmt = insert_ignore(session, IngestBatchRow, "message_id").values(
        message_id=message_id, received_at=now, **counts
    ).returning(col(IngestBatchRow.message_id))
    return session.execute(stmt).first() is not None


UNNEST_INSERT = (
    'INSERT INTO usage_events (key, customer_id, meter_id, quantity, "timestamp", properties, '
    "ingested_at) SELECT k, c, m, q, t, p::jsonb, %b FROM unnest(%b::text[], %b::text[], "
    "%b::text[], %b::numeric[], %b::timestamptz[], %b::text[]) AS u(k, c, m, q, t, p) "
    # in key order: two batches that share keys then lock them in the same order, and one
    # waits for the other instead of deadlocking
    'ORDER BY k COLLATE "C" ON CONFLICT (key) DO NOTHING RETURNING key'
)


def _insert_events_postgres(session: Session, events: Sequence[UsageEvent],
                            now: datetime) -> set[str]:
    """One set-wise ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT (key) DO NOTHING``,
    the batch sent as binary array parameters."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    columns = (
        [e.key for e in events], [e.customer for e in events], [e.meter for e in events],
        [e.quantity for e in events], [e.timestamp for e in events],
        [json.dumps(dict(e.properties)) if e.properties else None for e in events],
    )
    with driver.cursor() as cursor:
        cursor.execute(UNNEST_INSERT, (now, *columns))
        if cursor.rowcount == len(events):  # the common case: every key was new
            return {e.key for e in events}
        return {row[0] for row in cursor.fetchall()}


def insert_events(session: Session, events: Sequence[UsageEvent], now: datetime) -> set[str]:
    """Insert the events whose key is new; return the keys that were inserted."""
    if not events:
        return set()
    if is_postgres(session):
        return _insert_events_postgres(session, events, now)
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
            [{"key": r.key, "reason": r.reason, "payload": payload_text(r.payload),
              "received_at": now, "message_id": message_id} for r in rejections],
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


@dataclass(frozen=True)
class Period:
    """What to aggregate: events with a timestamp in ``[start_at, end_at)`` that were
    ingested no later than ``ingested_by``."""

    start_at: datetime
    end_at: datetime
    ingested_by: datetime


def aggregate_many(
    session: Session, period: Period, customers: Collection[str], meters: Collection[Meter]
) -> dict[tuple[str, str], Decimal]:
    """SPEC §4 for every (customer, meter) of the period, set-wise: one ``GROUP BY`` per
    kind of aggregation over the index on (customer, meter, timestamp). A pair without
    events gives 0."""
    result = {(c, m.id): Decimal(0) for c in customers for m in meters}
    if not result:
        return result
    base = (
        col(E.customer_id).in_(sorted(set(customers))),
        col(E.timestamp) >= period.start_at,
        col(E.timestamp) < period.end_at,
        col(E.ingested_at) <= period.ingested_by,
    )
    group = (col(E.customer_id), col(E.meter_id))
    by_kind: dict[Aggregation, list[Meter]] = defaultdict(list)
    for meter in meters:
        by_kind[meter.aggregation].append(meter)
    simple = [m for m in meters if m.aggregation in SIMPLE]
    if simple:
        where = (*base, col(E.meter_id).in_(sorted({m.id for m in simple})))
        stmt = select(*group, _decimal(session, "sum", col(E.quantity)), func.count(),
                      _decimal(session, "max", col(E.quantity)),
                      _decimal(session, "min", col(E.quantity))).where(*where).group_by(*group)
        kinds = {m.id: m.aggregation for m in simple}
        for customer, meter_id, total, count, largest, smallest in session.execute(stmt):
            result[(customer, meter_id)] = {
                Aggregation.SUM: total, Aggregation.COUNT: Decimal(count),
                Aggregation.MAX: largest, Aggregation.MIN: smallest,
                Aggregation.AVERAGE: average(total, count),
            }[kinds[meter_id]]
    if by_kind[Aggregation.LAST]:
        ids = sorted({m.id for m in by_kind[Aggregation.LAST]})
        key = col(E.key).collate("C") if is_postgres(session) else col(E.key)
        rank = func.row_number().over(partition_by=group,
                                      order_by=(col(E.timestamp).desc(), key.desc()))
        ranked = select(*group, col(E.quantity), rank.label("rank")).where(
            *base, col(E.meter_id).in_(ids)).subquery()
        stmt = select(ranked.c.customer_id, ranked.c.meter_id, ranked.c.quantity).where(
            ranked.c.rank == 1)
        for customer, meter_id, quantity in session.execute(stmt):
            result[(customer, meter_id)] = quantity
    by_property: dict[str, list[str]] = defaultdict(list)
    for meter in by_kind[Aggregation.UNIQUE_COUNT]:
        assert meter.property is not None
        by_property[meter.property].append(meter.id)
    for prop, ids in by_property.items():
        stmt = select(*group, func.count(distinct(_unique_value(session, prop)))).where(
            *base, col(E.meter_id).in_(sorted(ids))).group_by(*group)
        for customer, meter_id, count in session.execute(stmt):
            result[(customer, meter_id)] = Decimal(count)
    return result


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
        .join(PM, (col(PM.plan_id) == col(S.plan_id)) & (col(PM.version) == col(S.plan_version)))
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
    return None if row is None else json.loads(row.payload)


def payload_text(payload: Any) -> str:
    """A raw payload as JSON text in ASCII: every character escaped, so that any input —
    NUL or a lone surrogate included — can be stored (JSONB and text columns refuse NUL)."""
    return json.dumps(payload, ensure_ascii=True, default=str)
