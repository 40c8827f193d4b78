"""Usage events: set-wise insert with ``ON CONFLICT DO NOTHING``, the outcome records,
and aggregation in SQL."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    String,
    bindparam,
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
from domain.filters import DEFAULT_GROUP, Filter
from domain.usage import Rejection, UsageEvent
from persistence import rollups
from persistence.sql import decimal_aggregate, driver_cursor, group_case, insert_ignore, is_postgres
from persistence.tables import (
    EntityRow,
    HttpBatchRow,
    IngestBatchRow,
    InvoiceRow,
    LateUsageRow,
    PlanChangeRow,
    PlanMeterRow,
    PlanVersionRow,
    RejectedUsageRow,
    SubscriptionRow,
    UsageConflictRow,
    UsageEventRow,
)

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


# The batch as six arrays in key order (two batches that share keys then lock them in the
# same order, and one waits for the other instead of deadlocking); quantities as exact text,
# cast to numeric here. The same statement answers the lateness question (``late_or_closing``)
# for the rows it inserted, so that it needs no second statement and no arrays of customers
# and instants: one row, (rows inserted, their keys unless every event was new, the customers
# lateness has to look at).
BATCH_INSERT = """
WITH inserted AS (
    INSERT INTO usage_events (key, customer_id, meter_id, quantity, "timestamp", properties,
                              ingested_at, batch_seq)
    SELECT k, c, m, q::numeric, t, p::jsonb, %b, %b
    FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
                %b::text[]) AS u(k, c, m, q, t, p)
    ORDER BY k COLLATE "C"
    ON CONFLICT (key) DO NOTHING
    RETURNING key, customer_id, "timestamp"
), earliest AS (
    SELECT customer_id, min("timestamp") AS t FROM inserted GROUP BY customer_id
)
SELECT (SELECT count(*) FROM inserted),
       CASE WHEN (SELECT count(*) FROM inserted) < %b THEN ARRAY(SELECT key FROM inserted) END,
       ARRAY(SELECT DISTINCT s.customer_id FROM earliest AS e
             JOIN subscriptions AS s ON s.customer_id = e.customer_id
             WHERE s.next_boundary_at <= %b OR s.closed_until_at > e.t)
"""


class Inserted(NamedTuple):
    """What ``insert_events`` stored: the keys that were new, and which of their customers
    lateness has to look at (``late_or_closing``; empty without a ``closing_by``)."""

    keys: set[str]
    to_check: set[str]


def _insert_events_postgres(session: Session, events: Sequence[UsageEvent], now: datetime,
                            closing_by: datetime | None) -> Inserted:
    """One set-wise ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT (key) DO NOTHING``,
    numbered for the rollups (persistence/rollups.py: the number is drawn under the shared
    ingest lock, held until commit)."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    columns = (
        [e.key for e in events], [e.customer for e in events], [e.meter for e in events],
        [str(e.quantity) for e in events], [e.timestamp for e in events],
        [json.dumps(e.properties, ensure_ascii=False) if e.properties else None
         for e in events],
    )
    with driver.cursor() as cursor:
        batch = rollups.draw_batch_number(cursor)
        cursor.execute(BATCH_INSERT, (now, batch, *columns, len(events), closing_by))
        row = cursor.fetchone()
    assert row is not None
    count, keys, to_check = row
    inserted = {e.key for e in events} if count == len(events) else set(keys)
    return Inserted(inserted, set(to_check) if closing_by is not None else set())


def insert_events(session: Session, events: Sequence[UsageEvent], now: datetime,
                  closing_by: datetime | None = None) -> Inserted:
    """Insert the events whose key is new. With ``closing_by``, also find which customers
    of those events lateness has to look at (``late_or_closing``)."""
    if not events:
        return Inserted(set(), set())
    if is_postgres(session):
        return _insert_events_postgres(session, events, now, closing_by)
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
    if closing_by is None:
        return Inserted(inserted, set())
    return Inserted(inserted, late_or_closing(
        session, _earliest(e for e in events if e.key in inserted), closing_by))


def _earliest(events: Iterable[UsageEvent]) -> dict[str, datetime]:
    """The earliest timestamp of each customer's events."""
    earliest: dict[str, datetime] = {}
    for event in events:
        known = earliest.get(event.customer)
        if known is None or event.timestamp < known:
            earliest[event.customer] = event.timestamp
    return earliest


def stored_events(session: Session, keys: Iterable[str]) -> dict[str, UsageEvent]:
    result: dict[str, UsageEvent] = {}
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        stmt = select(col(E.key), col(E.customer_id), col(E.meter_id), col(E.quantity),
                      col(E.timestamp), col(E.properties)).where(col(E.key).in_(part))
        for key, customer, meter, quantity, timestamp, properties in session.execute(stmt):
            result[key] = UsageEvent(key, customer, meter, quantity, timestamp, properties or {})
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


def _unique_value(session: Session, prop: str, properties: Any) -> Any:
    """``properties[prop]`` as a comparable value; absent or JSON null is SQL NULL."""
    if is_postgres(session):
        return func.nullif(properties[prop], cast(literal("null"), JSONB))
    path = '$."' + prop.replace('"', '\\"') + '"'
    kind = func.json_type(properties, path)
    return case(
        (kind.is_(None) | (kind == "null"), None),
        else_=kind + literal(":") + cast(func.json_extract(properties, path), String),
    )


@dataclass(frozen=True)
class Period:
    """What to aggregate: events with a timestamp in ``[start_at, end_at)``, ingested no
    later than ``ingested_by`` — or, when it is None, every event stored (committed) by now:
    what an invoice computed now counts."""

    start_at: datetime
    end_at: datetime
    ingested_by: datetime | None = None


def aggregate_many(
    session: Session, period: Period, customers: Collection[str], meters: Collection[Meter],
    *, rolled_up: bool = False,
) -> dict[tuple[str, str], Decimal]:
    """SPEC §4 for every (customer, meter) of the period, set-wise: one ``GROUP BY`` per
    kind of aggregation over the index on (customer, meter, timestamp). A pair without
    events gives 0. ``rolled_up`` (the estimate) reads the hourly rollups where they give
    the same: on PostgreSQL, for every event stored."""
    result = {(c, m.id): Decimal(0) for c in customers for m in meters}
    if not result:
        return result
    if rolled_up and period.ingested_by is None and is_postgres(session):
        return _aggregate_rolled_up(session, period, customers, meters)
    found = _aggregate(session, period, customers, meters, None)
    result.update(((c, m), q) for (c, m, _), q in found.items())
    return result


def aggregate_groups(session: Session, period: Period, customers: Collection[str],
                     meter: Meter, filters: Sequence[Filter], *, rolled_up: bool = False
                     ) -> dict[tuple[str, str], Decimal]:
    """SPEC §13: a meter aggregated per (customer, group of a charge's ``filters``) in the
    same ``GROUP BY``s, the group of each event decided by one SQL ``CASE`` written from
    the filters (``persistence.sql.group_case``). Every group of every customer is in the
    result (0 without events). ``rolled_up`` (the estimate) reads the hourly rollups, per
    group, where they give the same — as ``aggregate_many`` does for a meter without
    filters: sum, count, max, min and average, on PostgreSQL, for every event stored, once
    the fold keys the meter's rollups by what the filters look at."""
    groups = [DEFAULT_GROUP, *(f.id for f in filters)]
    result = {(c, g): Decimal(0) for c in customers for g in groups}
    if not result:
        return result
    if (rolled_up and meter.aggregation in SIMPLE and period.ingested_by is None
            and is_postgres(session)):
        rolled = rollups.group_windows(session, customers, meter.id, filters,
                                       [period.start_at, period.end_at])
        if rolled is not None:
            result.update((key, _of_totals(meter.aggregation, totals))
                          for key, (totals,) in rolled.items() if totals.events)
            return result
    found = _aggregate(session, period, customers, [meter],
                       group_case(session, filters, col(E.properties)))
    result.update(((c, g), q) for (c, _, g), q in found.items())
    return result


def _of_totals(aggregation: Aggregation, totals: rollups.Totals) -> Decimal:
    """A simple aggregation (``SIMPLE``) of a set of events with ``totals``, not empty."""
    assert totals.largest is not None and totals.smallest is not None
    return {
        Aggregation.SUM: totals.total, Aggregation.COUNT: Decimal(totals.events),
        Aggregation.MAX: totals.largest, Aggregation.MIN: totals.smallest,
        Aggregation.AVERAGE: average(totals.total, totals.events),
    }[aggregation]


def _aggregate(session: Session, period: Period, customers: Collection[str],
               meters: Collection[Meter], group_expr: Any) -> dict[tuple[str, str, str], Decimal]:
    """Per (customer, meter, group) with events: ``group_expr`` decides an event's group
    (None: one group, DEFAULT_GROUP). With groups, the events are read through a subquery
    that computes each one's group once; the grouping then names it."""
    result: dict[tuple[str, str, str], Decimal] = {}
    base: tuple[Any, ...] = (
        col(E.customer_id).in_(sorted(set(customers))),
        col(E.timestamp) >= period.start_at,
        col(E.timestamp) < period.end_at,
    )
    if period.ingested_by is not None:
        base = (*base, col(E.ingested_at) <= period.ingested_by)
    src: Any = E.__table__  # type: ignore[attr-defined]
    grp: Any = literal(DEFAULT_GROUP)
    if group_expr is not None:
        src = select(col(E.customer_id), col(E.meter_id), col(E.quantity), col(E.timestamp),
                     col(E.key), col(E.properties), group_expr.label("grp")).where(
            *base, col(E.meter_id).in_(sorted({m.id for m in meters}))).subquery()
        base, grp = (), src.c.grp
    c = src.c
    group: tuple[Any, ...] = (c.customer_id, c.meter_id, *(() if group_expr is None else (grp,)))
    by_kind: dict[Aggregation, list[Meter]] = defaultdict(list)
    for meter in meters:
        by_kind[meter.aggregation].append(meter)
    simple = [m for m in meters if m.aggregation in SIMPLE]
    if simple:
        stmt = select(c.customer_id, c.meter_id, grp,
                      decimal_aggregate(session, "sum", c.quantity), func.count(),
                      decimal_aggregate(session, "max", c.quantity),
                      decimal_aggregate(session, "min", c.quantity)
                      ).where(*base, c.meter_id.in_(sorted({m.id for m in simple}))
                              ).group_by(*group)
        kinds = {m.id: m.aggregation for m in simple}
        for customer, meter_id, g, total, count, largest, smallest in session.execute(stmt):
            result[(customer, meter_id, g)] = {
                Aggregation.SUM: total, Aggregation.COUNT: Decimal(count),
                Aggregation.MAX: largest, Aggregation.MIN: smallest,
                Aggregation.AVERAGE: average(total, count),
            }[kinds[meter_id]]
    if by_kind[Aggregation.LAST]:
        ids = sorted({m.id for m in by_kind[Aggregation.LAST]})
        key = c.key.collate("C") if is_postgres(session) else c.key
        rank = func.row_number().over(partition_by=group,
                                      order_by=(c.timestamp.desc(), key.desc()))
        ranked_rows = select(c.customer_id, c.meter_id, grp.label("grp"), c.quantity,
                             rank.label("rank")).where(*base, c.meter_id.in_(ids)).subquery()
        stmt = select(ranked_rows.c.customer_id, ranked_rows.c.meter_id, ranked_rows.c.grp,
                      ranked_rows.c.quantity).where(ranked_rows.c.rank == 1)
        for customer, meter_id, g, quantity in session.execute(stmt):
            result[(customer, meter_id, g)] = quantity
    by_property: dict[str, list[str]] = defaultdict(list)
    for meter in by_kind[Aggregation.UNIQUE_COUNT]:
        assert meter.property is not None
        by_property[meter.property].append(meter.id)
    for prop, ids in by_property.items():
        stmt = select(c.customer_id, c.meter_id, grp, func.count(distinct(
            _unique_value(session, prop, c.properties)))).where(
            *base, c.meter_id.in_(sorted(ids))).group_by(*group)
        for customer, meter_id, g, count in session.execute(stmt):
            result[(customer, meter_id, g)] = Decimal(count)
    return result


def _aggregate_rolled_up(
    session: Session, period: Period, customers: Collection[str], meters: Collection[Meter]
) -> dict[tuple[str, str], Decimal]:
    """``aggregate_many`` from the rollups: sum, count, max, min and average from the
    hourly totals (persistence/rollups.py); last from the index, newest first; a
    unique_count reads the events (distinct values do not add up by the hour)."""
    result = {(c, m.id): Decimal(0) for c in customers for m in meters}
    simple = {m.id: m.aggregation for m in meters if m.aggregation in SIMPLE}
    if simple:
        found = rollups.windows(session, customers, simple, [period.start_at, period.end_at])
        result.update((key, _of_totals(simple[key[1]], totals))
                      for key, (totals,) in found.items() if totals.events)
    key = col(E.key).collate("C")
    for meter in meters:
        if meter.aggregation is not Aggregation.LAST:
            continue
        for customer in customers:
            newest = session.scalar(
                select(col(E.quantity)).where(
                    col(E.customer_id) == customer, col(E.meter_id) == meter.id,
                    col(E.timestamp) >= period.start_at, col(E.timestamp) < period.end_at)
                .order_by(col(E.timestamp).desc(), key.desc()).limit(1))
            if newest is not None:
                result[(customer, meter.id)] = newest
    others = [m for m in meters if m.aggregation is Aggregation.UNIQUE_COUNT]
    if others:
        result.update(aggregate_many(session, period, customers, others))
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
    plan in force on their date charges their meter."""
    S, PM, PC = SubscriptionRow, PlanMeterRow, PlanChangeRow

    def in_force(column: Any) -> Any:  # SPEC §14: of the latest change on or before it
        return (select(column).where(col(PC.subscription_id) == col(S.id),
                                     col(PC.since_at) <= col(E.timestamp))
                .correlate_except(PC).order_by(col(PC.since_at).desc()).limit(1)
                .scalar_subquery())

    plan_id = func.coalesce(in_force(col(PC.plan_id)), col(S.plan_id))
    version = func.coalesce(in_force(col(PC.plan_version)), col(S.plan_version))
    billed = (
        select(literal(1))
        .select_from(S)
        .join(PM, (col(PM.plan_id) == plan_id) & (col(PM.version) == version))
        .where(
            col(S.customer_id) == col(E.customer_id),
            col(PM.meter_id) == col(E.meter_id),
            col(E.timestamp) >= col(S.start_at),
            (col(S.end_at).is_(None)) | (col(E.timestamp) < col(S.end_at)),
        )
    )
    return int(session.scalar(select(func.count()).select_from(E).where(~exists(billed))) or 0)


def rejected_since(session: Session, limit: int = 100, *, open_only: bool = False
                   ) -> list[tuple[RejectedUsageRow, datetime | None]]:
    """Rejected events, newest first, each with the instant an event with its key was
    accepted after it (re-submitted fixed, by ``usage resubmit`` or by the application),
    or None."""
    R = RejectedUsageRow
    accepted = select(col(E.ingested_at)).where(
        col(E.key) == col(R.key), col(E.ingested_at) >= col(R.received_at)
    ).correlate(R).scalar_subquery()
    stmt = select(R, accepted).order_by(col(R.id).desc()).limit(limit)
    if open_only:
        stmt = stmt.where(accepted.is_(None))
    return [(row, at) for row, at in session.execute(stmt)]


def conflicts(session: Session, limit: int = 100) -> list[UsageConflictRow]:
    stmt = select(UsageConflictRow).order_by(col(UsageConflictRow.id).desc()).limit(limit)
    return list(session.scalars(stmt))


def rejected_payload(session: Session, rejected_id: int) -> Any:
    row = session.get(RejectedUsageRow, rejected_id)
    return None if row is None else json.loads(row.payload)


def payload_text(payload: Any) -> str:
    """A raw payload as JSON text in ASCII: every character escaped, so that any input —
    NUL or a lone surrogate included — can be stored (JSONB and text columns refuse NUL)."""
    return json.dumps(payload, ensure_ascii=True, default=str)


# ---------------------------------------------------------------------------- late usage


@dataclass(frozen=True)
class Billing:
    """A subscription that bills a (customer, meter), with what lateness needs of it."""

    subscription: str
    customer: str
    meter: str
    start: date
    start_at: datetime
    end_at: datetime | None
    closed_until_at: datetime | None
    next_boundary_at: datetime
    interval: str
    timezone: str
    # SPEC §14, for a subscription that changed plans: the meters charged from each date
    # on (its start, then each change date); empty when its first plan is in force all along
    meters_from: tuple[tuple[date, frozenset[str]], ...] = ()

    def bills(self, meter: str, day: date) -> bool:
        """Whether the plan in force on the local date ``day`` charges ``meter``."""
        charged = None
        for since, meters in self.meters_from:
            if since <= day or charged is None:
                charged = meters
        return charged is None or meter in charged


def late_or_closing(session: Session, earliest: Mapping[str, datetime],
                    horizon: datetime) -> set[str]:
    """Of these customers (each with the earliest timestamp of its new events), those with
    a subscription whose next boundary is at or before ``horizon`` (an invoice of it may be
    being computed) or whose computed periods end after that timestamp (an event may be
    late for it): the only ones whose events lateness has to look at. In the common case,
    events of subscriptions not closing, it finds none. On PostgreSQL ``BATCH_INSERT`` asks
    the same in the insert's own statement; this is SQLite's."""
    if not earliest:
        return set()
    S = SubscriptionRow
    found: set[str] = set()
    wanted = sorted(earliest)
    for start in range(0, len(wanted), CHUNK):
        stmt = select(col(S.customer_id), col(S.next_boundary_at), col(S.closed_until_at)
                      ).where(col(S.customer_id).in_(wanted[start:start + CHUNK]))
        for customer, next_at, closed in session.execute(stmt):
            if next_at <= horizon or (closed is not None and closed > earliest[customer]):
                found.add(customer)
    return found


def billing_subscriptions(session: Session, customers: Collection[str]) -> list[Billing]:
    """The subscriptions of these customers with the meters any plan of theirs charges —
    the first plan's and, after a plan change (SPEC §14), the plans of their changes, from
    their change dates."""
    S, PM, V, PC = SubscriptionRow, PlanMeterRow, PlanVersionRow, PlanChangeRow
    result: list[Billing] = []
    wanted = sorted(set(customers))
    fields = (col(S.id), col(S.customer_id), col(PM.meter_id), col(S.start),
              col(S.start_at), col(S.end_at), col(S.closed_until_at), col(S.next_boundary_at),
              col(V.interval), col(EntityRow.timezone))
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        stmt = (select(*fields)
                .join(PM, (col(PM.plan_id) == col(S.plan_id))
                      & (col(PM.version) == col(S.plan_version)))
                .join(V, (col(V.plan_id) == col(S.plan_id))
                      & (col(V.version) == col(S.plan_version)))
                .join(EntityRow, col(EntityRow.id) == col(S.entity_id))
                .where(col(S.customer_id).in_(part)))
        rows = session.execute(stmt).all()
        changed = (select(*fields, col(PC.since))
                   .join(PC, col(PC.subscription_id) == col(S.id))
                   .outerjoin(PM, (col(PM.plan_id) == col(PC.plan_id))
                              & (col(PM.version) == col(PC.plan_version)))
                   .join(V, (col(V.plan_id) == col(S.plan_id))
                         & (col(V.version) == col(S.plan_version)))
                   .join(EntityRow, col(EntityRow.id) == col(S.entity_id))
                   .where(col(S.customer_id).in_(part)))
        changes = session.execute(changed).all()
        if not changes:  # the common case: no plan change
            result.extend(_billing(tuple(r), ()) for r in rows)
            continue
        meters_from: dict[str, dict[date, set[str]]] = defaultdict(lambda: defaultdict(set))
        fields_of: dict[tuple[str, str], tuple[Any, ...]] = {}
        for r in rows:
            meters_from[r[0]][r[3]].add(r[2])
            fields_of[(r[0], r[2])] = tuple(r)
        for change in changes:
            sub, meter, since = str(change[0]), change[2], _as_date(change[-1])
            meters_from[sub][since]  # a plan without usage charges charges no meter
            if meter is not None:
                meters_from[sub][since].add(meter)
                fields_of.setdefault((sub, meter), tuple(change)[:-1])
        for (sub, _), found in sorted(fields_of.items()):
            timeline = tuple(sorted((d, frozenset(m)) for d, m in meters_from[sub].items()))
            result.append(_billing(found, timeline if len(timeline) > 1 else ()))
    return result


def _as_date(value: Any) -> date:
    assert isinstance(value, date)
    return value


def _billing(fields: Sequence[Any], meters_from: tuple[tuple[date, frozenset[str]], ...]
             ) -> Billing:
    sub, customer, meter, start, start_at, end_at, closed, next_at, interval, tz = fields[:10]
    return Billing(sub, customer, meter, start, start_at, end_at, closed, next_at, interval,
                   tz, meters_from)


def lock_closing(session: Session, subscription_ids: Collection[str]
                 ) -> dict[str, datetime | None]:
    """Share-lock subscriptions whose invoice a bill run may be computing right now (or
    whose late usage a run or a regeneration may be counting), and read their
    ``closed_until_at`` afresh. Those lock them for update before they aggregate: so an
    event is either seen by that computation, or seen as late — never lost between the two,
    never counted twice (PostgreSQL; SQLite runs one writer at a time anyway)."""
    if not subscription_ids or not is_postgres(session):
        return {}
    S = SubscriptionRow
    stmt = (select(col(S.id), col(S.closed_until_at)).where(col(S.id).in_(
        sorted(subscription_ids))).order_by(col(S.id)).with_for_update(read=True))
    return {sub: closed for sub, closed in session.execute(stmt)}


def add_late(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(LateUsageRow), list(rows))


def open_late(session: Session, subscription_ids: Collection[str],
              accounted_by: Collection[int] = ()) -> dict[str, dict[tuple[str, date, date],
                                                                  list[str]]]:
    """Late events not billed yet (or billed by ``accounted_by``, being recomputed), by
    subscription and (meter, period start, period end)."""
    L = LateUsageRow
    found: dict[str, dict[tuple[str, date, date], list[str]]] = defaultdict(
        lambda: defaultdict(list))
    if not subscription_ids:
        return found
    open_: Any = col(L.accounted_by).is_(None)
    if accounted_by:
        open_ = open_ | col(L.accounted_by).in_(sorted(accounted_by))
    wanted = sorted(set(subscription_ids))
    for start in range(0, len(wanted), CHUNK):
        stmt = select(col(L.subscription_id), col(L.meter_id), col(L.period_start),
                      col(L.period_end), col(L.key)).where(
            col(L.subscription_id).in_(wanted[start:start + CHUNK]), open_)
        for sub, meter, period_start, period_end, key in session.execute(stmt):
            found[sub][(meter, period_start, period_end)].append(key)
    return found


def late_totals(session: Session, subscription_ids: Collection[str],
                period_starts: Collection[date]) -> dict[tuple[str, str, date],
                                                         tuple[Decimal, int]]:
    """Per (subscription, meter, period start): the sum of the quantities and the number of
    the period's late events that its covering invoice did not count — the open ones and
    those an adjustment line billed, not those its regeneration billed (SPEC §11). What a
    ``sum`` or ``count`` meter's period gained since the covering invoice's usage line."""
    L, I = LateUsageRow, InvoiceRow  # noqa: E741
    found: dict[tuple[str, str, date], tuple[Decimal, int]] = {}
    wanted = sorted(set(subscription_ids))
    if not wanted or not period_starts:
        return found
    for start in range(0, len(wanted), CHUNK):
        stmt = (select(col(L.subscription_id), col(L.meter_id), col(L.period_start),
                       decimal_aggregate(session, "sum", col(E.quantity)), func.count())
                .join(E, col(E.key) == col(L.key))
                .outerjoin(I, col(I.id) == col(L.accounted_by))
                .where(col(L.subscription_id).in_(wanted[start:start + CHUNK]),
                       col(L.period_start).in_(sorted(set(period_starts))),
                       col(I.id).is_(None) | (col(I.boundary) != col(L.period_end)))
                .group_by(col(L.subscription_id), col(L.meter_id), col(L.period_start)))
        for sub, meter, period_start, total, count in session.execute(stmt):
            found[(sub, meter, period_start)] = (total, int(count))
    return found


def account_late(session: Session, billed_by: Mapping[int, Collection[str]]) -> None:
    """These late events are billed by these invoices (invoice id -> event keys), in one
    statement."""
    L = LateUsageRow
    pairs = sorted((key, invoice_id) for invoice_id, keys in billed_by.items()
                   for key in set(keys))
    if not pairs:
        return
    if is_postgres(session):  # one statement, the pairs as two binary arrays
        with driver_cursor(session) as cursor:
            cursor.execute(ACCOUNT_LATE, ([k for k, _ in pairs], [i for _, i in pairs]))
        return
    session.connection().execute(  # a Core executemany (the ORM would match primary keys)
        update(L).where(col(L.key) == bindparam("late_key"))
        .values(accounted_by=bindparam("invoice_id")),
        [{"late_key": k, "invoice_id": i} for k, i in pairs])


ACCOUNT_LATE = ("UPDATE late_usage SET accounted_by = u.i FROM unnest(%b::text[], %b::int[]) "
                "AS u(k, i) WHERE late_usage.key = u.k")


def count_late(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(LateUsageRow)) or 0)


@dataclass(frozen=True)
class LateEvent:
    key: str
    customer: str
    meter: str
    quantity: Decimal
    timestamp: datetime
    ingested_at: datetime
    subscription: str
    period_start: date
    period_end: date
    accounted_by: int | None


def late_events(session: Session, *, customer: str | None = None,
                subscription: str | None = None, limit: int = 100) -> list[LateEvent]:
    L = LateUsageRow
    stmt = (select(col(L.key), col(E.customer_id), col(L.meter_id), col(E.quantity),
                   col(E.timestamp), col(L.ingested_at), col(L.subscription_id),
                   col(L.period_start), col(L.period_end), col(L.accounted_by))
            .join(E, col(E.key) == col(L.key)).order_by(col(L.ingested_at).desc(), col(L.key))
            .limit(limit))
    if customer is not None:
        stmt = stmt.where(col(E.customer_id) == customer)
    if subscription is not None:
        stmt = stmt.where(col(L.subscription_id) == subscription)
    return [LateEvent(key, c, m, q, ts, at, sub, ps, pe, by)
            for key, c, m, q, ts, at, sub, ps, pe, by in session.execute(stmt)]


def receive_batch(session: Session, batch_id: str, events: int, now: datetime) -> None:
    session.execute(insert_ignore(session, HttpBatchRow, "id").values(
        id=batch_id, events=events, received_at=now))


def batch_status(session: Session, batch_id: str) -> dict[str, Any] | None:
    done = session.get(IngestBatchRow, batch_id)
    received = session.get(HttpBatchRow, batch_id)
    if done is None and received is None:
        return None
    if done is None:
        assert received is not None
        return {"batch": batch_id, "status": "queued", "events": received.events,
                "accepted": None, "duplicate": None, "conflict": None, "rejected": None,
                "rejections": []}
    rows = session.execute(select(col(RejectedUsageRow.key), col(RejectedUsageRow.reason))
                           .where(col(RejectedUsageRow.message_id) == batch_id)
                           .order_by(col(RejectedUsageRow.id))).all()
    total = done.accepted + done.duplicate + done.conflict + done.rejected
    return {"batch": batch_id, "status": "processed",
            "events": received.events if received else total, "accepted": done.accepted,
            "duplicate": done.duplicate, "conflict": done.conflict, "rejected": done.rejected,
            "rejections": [{"key": key, "reason": reason} for key, reason in rows]}


def daily_totals(session: Session, customer: str, meter_ids: Collection[str],
                 bounds: Sequence[datetime]) -> dict[str, list[tuple[Decimal, int]]]:
    """For the customer's events of each meter: (sum of quantities, number of events) in
    each window ``[bounds[i], bounds[i+1])`` — days, for the portal's chart: any window
    edges (local midnights in any zone), every event stored by now. From the hourly rollups
    on PostgreSQL; on SQLite, one pass over the index on (customer, meter, timestamp)."""
    windows = len(bounds) - 1
    result = {m: [(Decimal(0), 0)] * windows for m in meter_ids}
    if windows <= 0 or not meter_ids:
        return result
    if is_postgres(session):  # from the hourly rollups, the same totals
        found = rollups.windows(session, [customer], meter_ids, bounds)
        return {m: [(t.total, t.events) for t in found[(customer, m)]] for m in meter_ids}
    bucket = case(*[(col(E.timestamp) < edge, index)
                    for index, edge in enumerate(bounds[1:])]).label("bucket")
    stmt = select(col(E.meter_id), bucket,
                  decimal_aggregate(session, "sum", col(E.quantity)), func.count()).where(
        col(E.customer_id) == customer, col(E.meter_id).in_(sorted(meter_ids)),
        col(E.timestamp) >= bounds[0], col(E.timestamp) < bounds[-1],
    ).group_by(col(E.meter_id), bucket)
    for meter_id, index, total, count in session.execute(stmt):
        result[meter_id][index] = (total, count)
    return result
