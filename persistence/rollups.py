"""Hourly usage rollups (PostgreSQL): what the estimate and the portal read instead of a
million events, exactly equal to reading the events.

Every ingest batch draws a number (``usage_batch_seq``) and stores it on its events
(``batch_seq``). A *fold* adds the events of the batches numbered up to some ``H`` into
``usage_rollups`` — one row per (customer, meter, UTC hour) with the sum, the count, the
largest and the smallest quantity — and moves ``usage_fold_state.folded`` to ``H`` in the
same transaction. A read then takes, in one consistent view:

- the rollups of every hour that lies wholly inside a window,
- the events of the *split* hours (an hour a window's edge cuts: a local midnight in a zone
  that is not a whole number of hours from UTC), read one by one as before,
- the events of the batches not folded yet (``batch_seq > folded``: the newest rows, found
  by a BRIN index).

Which batches a fold may take is the one subtle point: batch numbers are drawn in one
order and committed in another. So an ingest transaction *shares* an advisory *ingest
lock* from before it draws its number until it commits, and right after drawing it
*announces* the number with a second shared advisory lock keyed by the number itself. A
fold reads the last number drawn ``L``, then, in one look at ``pg_locks``, the
transactions holding the ingest lock and the numbers they announced: every number up to
``L`` below the smallest one still announced has committed or rolled back (a number drawn
later is above ``L``). A holder that has not announced yet (it is between two statements)
makes the fold look again. Nothing waits for anything: a fold never holds ingest up.

Events inserted by any other writer (an older worker during a rolling upgrade, a backfill
in SQL) are numbered by a trigger that does the same, so none is left behind.

A read holds a shared *read lock* while it reads the fold state, the rollups and the
events; a fold takes it exclusively just before it commits, so a read never sees the
rollups of one state and the fold state of another (reads at READ COMMITTED take a new
snapshot per statement). The locks are keyed by the sequence's oid: every process that
uses these tables takes the same locks, whatever its ``search_path``, and two schemas in
one database never wait on each other.

SQLite runs one writer at a time and is for small deployments: there the estimate reads
the events (``batch_seq`` stays 0, nothing folds).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, func, literal, select, text, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import decimal_aggregate
from persistence.tables import UsageEventRow, UsageFoldStateRow, UsageRollupRow

E, R = UsageEventRow, UsageRollupRow
HOUR = timedelta(hours=1)
CHUNK = 1000
INGEST_LOCK = 72_610  # the advisory locks' first key; the second is the sequence's oid
READ_LOCK = 72_611
BATCHES_PER_FOLD = 2000  # a fold far behind (after an upgrade) catches up in steps
LOCK_NOT_AVAILABLE = "55P03"
INSUFFICIENT_PRIVILEGE = "42501"
SEQUENCE_KEY = "('usage_batch_seq'::regclass::oid::bigint & 2147483647)::int"

# The ingest lock shared, then the number drawn, then announced — in one statement (one
# round trip per batch): each subquery has a volatile function in its select list, so it is
# not pulled up and its row is computed before the query above it reads it.
SHARE_DRAW_AND_ANNOUNCE = (
    "SELECT n, pg_advisory_xact_lock_shared(n) FROM (SELECT nextval('usage_batch_seq') AS n "
    f"FROM (SELECT pg_advisory_xact_lock_shared({INGEST_LOCK}, {SEQUENCE_KEY})) AS shared"
    ") AS drawn"
)

# For writers that do not draw a number (``batch_seq`` left at its default, 0): the same
# protocol, one number per transaction (kept in a transaction-local setting, so that a
# backfill of millions of rows takes two locks, not millions). Created with the table
# (tables.py) and by migration 0006.
NUMBERING_TRIGGER = (
    f"""CREATE OR REPLACE FUNCTION usage_events_batch_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    batch bigint := nullif(current_setting('billing.batch_seq', true), '')::bigint;
BEGIN
    IF batch IS NULL THEN
        PERFORM pg_advisory_xact_lock_shared({INGEST_LOCK}, {SEQUENCE_KEY});
        batch := nextval('usage_batch_seq');
        PERFORM pg_advisory_xact_lock_shared(batch);
        PERFORM set_config('billing.batch_seq', batch::text, true);
    END IF;
    NEW.batch_seq := batch;
    RETURN NEW;
END $$""",
    "CREATE TRIGGER usage_events_batch_number BEFORE INSERT ON usage_events FOR EACH ROW "
    "WHEN (NEW.batch_seq = 0) EXECUTE FUNCTION usage_events_batch_number()",
)


def draw_batch_number(cursor: Any) -> int:
    """For ``insert_events`` on PostgreSQL, in the ingest transaction, before it inserts:
    share the ingest lock (until commit), then draw the batch's number and announce it."""
    cursor.execute(SHARE_DRAW_AND_ANNOUNCE)
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------------------- folding


class Busy(Exception):
    """The fold could not learn which batches are settled, or was held up: try later."""


LAST_DRAWN = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM usage_batch_seq"
IN_FLIGHT = f"""
WITH held AS MATERIALIZED (  -- one look at the lock table
    SELECT pid, classid, objid, objsubid FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT i.pid, min((b.classid::bigint << 32) | b.objid::bigint)
FROM held AS i LEFT JOIN held AS b ON b.pid = i.pid AND b.objsubid = 1
WHERE i.classid = {INGEST_LOCK} AND i.objid = {SEQUENCE_KEY}::oid AND i.objsubid = 2
GROUP BY i.pid
"""


def settled_batches(session: Session, looks: int = 50) -> int:
    """The highest batch number such that every batch up to it has committed or rolled
    back, without waiting for any: the last number drawn, or just below the smallest one an
    ingest transaction still announces. A transaction that holds the ingest lock but has
    not announced its number yet is a few microseconds from doing it: look again (at most
    ``looks`` times, then ``Busy``)."""
    for _ in range(looks):
        drawn = int(session.execute(text(LAST_DRAWN)).scalar() or 0)
        announced = session.execute(text(IN_FLIGHT)).all()
        if all(smallest is not None for _, smallest in announced):
            return min([drawn, *[int(smallest) - 1 for _, smallest in announced]])
        time.sleep(0.001)
    raise Busy("an ingest transaction holds the ingest lock without a batch number")


def summarize_new_pages(session: Session) -> bool:
    """Bring the BRIN index over ``batch_seq`` up to date: PostgreSQL leaves new page
    ranges unsummarized (matching everything) until a VACUUM, which would make the fold and
    the reads scan the whole table for the newest batches. It takes a lock a VACUUM holds
    too: wait 100 ms at most (and never make autovacuum give way), and skip it when the
    role may not (only the index's owner may; autovacuum then summarizes the ranges as they
    fill, ``autosummarize``). False when skipped."""
    try:
        with session.begin_nested():
            session.execute(text("SET LOCAL lock_timeout = '100ms'"))
            session.execute(text(
                "SELECT brin_summarize_new_values('ix_usage_batch_seq'::regclass)"))
        return True
    except (OperationalError, ProgrammingError) as exc:
        if getattr(exc.orig, "sqlstate", None) in (LOCK_NOT_AVAILABLE, INSUFFICIENT_PRIVILEGE):
            return False
        raise


FOLD = """
WITH grouped AS (
    SELECT customer_id, meter_id, date_trunc('hour', "timestamp", 'UTC') AS hour,
           sum(quantity) AS total, count(*) AS events, max(quantity) AS largest,
           min(quantity) AS smallest
    FROM usage_events WHERE batch_seq > :after AND batch_seq <= :upto
    GROUP BY 1, 2, 3
), written AS (
    INSERT INTO usage_rollups AS r (customer_id, meter_id, hour, total, events, largest,
                                    smallest)
    SELECT * FROM grouped
    ON CONFLICT (customer_id, meter_id, hour) DO UPDATE SET
        total = r.total + EXCLUDED.total, events = r.events + EXCLUDED.events,
        largest = greatest(r.largest, EXCLUDED.largest),
        smallest = least(r.smallest, EXCLUDED.smallest)
)  -- a data-modifying CTE runs whether or not it is read
SELECT coalesce(sum(events), 0) FROM grouped
"""


@dataclass(frozen=True)
class Folded:
    after: int  # the fold state before
    upto: int  # and after
    events: int  # events added into the rollups


def fold(session: Session, settled: int) -> Folded:
    """Fold the batches after ``usage_fold_state.folded`` up to ``settled`` (from
    ``settled_batches``, in an earlier transaction) — at most ``BATCHES_PER_FOLD`` of them —
    and move the state on. Two folders take turns (the state row is locked)."""
    session.execute(text("INSERT INTO usage_fold_state (id, folded) VALUES (1, -1) "
                         "ON CONFLICT (id) DO NOTHING"))
    after = int(session.execute(select(col(UsageFoldStateRow.folded)).where(
        col(UsageFoldStateRow.id) == 1).with_for_update()).scalar_one())
    upto = min(settled, after + BATCHES_PER_FOLD)
    if upto <= after:
        return Folded(after, after, 0)
    events = session.execute(text(FOLD), {"after": after, "upto": upto}).scalar()
    session.execute(text("UPDATE usage_fold_state SET folded = :upto WHERE id = 1"),
                    {"upto": upto})
    # readers that hold the read lock read the state before this fold: let them finish
    # (readers are short; one that hangs makes this fold give up, not the portal wait)
    session.execute(text("SET LOCAL lock_timeout = '2s'"))
    try:
        with session.begin_nested():
            session.execute(text(f"SELECT pg_advisory_xact_lock({READ_LOCK}, {SEQUENCE_KEY})"))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise Busy("a reader held the read lock for 2 s") from None
        raise
    return Folded(after, upto, int(events or 0))


def lag(session: Session) -> tuple[int, int]:
    """(batches drawn, batches folded)."""
    drawn = session.execute(text(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM usage_batch_seq")).scalar()
    folded = session.execute(select(col(UsageFoldStateRow.folded)).where(
        col(UsageFoldStateRow.id) == 1)).scalar()
    return int(drawn or 0), int(folded if folded is not None else -1)


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Totals:
    """What the simple aggregations need of a set of events."""

    total: Decimal = Decimal(0)
    events: int = 0
    largest: Decimal | None = None
    smallest: Decimal | None = None

    def __add__(self, other: Totals) -> Totals:
        if not other.events:
            return self
        if not self.events:
            return other
        assert self.largest is not None and self.smallest is not None
        assert other.largest is not None and other.smallest is not None
        return Totals(self.total + other.total, self.events + other.events,
                      max(self.largest, other.largest), min(self.smallest, other.smallest))


def floor_hour(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def split_hour_starts(bounds: Sequence[datetime]) -> list[datetime]:
    """The hours an edge that is not on the hour cuts, by their start."""
    return sorted({floor_hour(b) for b in bounds if floor_hour(b) != b})


def split_hours(bounds: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """The parts of ``[bounds[0], bounds[-1])`` whose hour is not wholly inside one window:
    for each edge that is not on the hour, its hour cut to the outer bounds."""
    first, last = bounds[0], bounds[-1]
    parts = []
    for hour in split_hour_starts(bounds):
        lo, hi = max(hour, first), min(hour + HOUR, last)
        if lo < hi:
            parts.append((lo, hi))
    return parts


def share_read_lock(session: Session) -> tuple[int, int]:
    """Hold the read lock for the rest of the transaction: (the fold state it guards, the
    highest batch number drawn after it was read)."""
    session.execute(text(f"SELECT pg_advisory_xact_lock_shared({READ_LOCK}, {SEQUENCE_KEY})"))
    # a statement of its own, after the lock: its snapshot then holds any fold that
    # committed while this waited (the number drawn is read after that snapshot)
    folded, drawn = session.execute(text(
        "SELECT (SELECT folded FROM usage_fold_state WHERE id = 1), "
        "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM usage_batch_seq)")).one()
    return int(folded if folded is not None else -1), int(drawn)


def windows(session: Session, customers: Collection[str], meter_ids: Collection[str],
            bounds: Sequence[datetime]) -> dict[tuple[str, str], list[Totals]]:
    """Totals of the events of each (customer, meter) in each window ``[bounds[i],
    bounds[i+1])`` — every event stored, exactly as if the events were read (PostgreSQL)."""
    count = len(bounds) - 1
    result = {(c, m): [Totals()] * count for c in customers for m in meter_ids}
    if count <= 0 or not result:
        return result
    bounds = [b.astimezone(UTC) for b in bounds]
    folded, drawn = share_read_lock(session)
    wanted_meters = sorted(set(meter_ids))
    wanted = sorted(set(customers))
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        for found in (_rollups(session, part, wanted_meters, bounds),
                      _events(session, part, wanted_meters, bounds, folded, drawn)):
            for customer, meter, i, totals in found:
                cell = result[(customer, meter)]
                cell[i] = cell[i] + totals
    return result


def _bucket(column: Any, bounds: Sequence[datetime]) -> Any:
    """The window an instant falls in, as SQL (the caller keeps it inside the bounds):
    how many inner edges are at or before it — ``width_bucket`` over one array."""
    if len(bounds) <= 2:
        return literal(0).label("bucket")
    edges = ARRAY(DateTime(timezone=True))
    return func.width_bucket(column, literal(list(bounds[1:-1]), edges)).label("bucket")


Found = list[tuple[str, str, int, Totals]]


def _rows(session: Session, statement: Any) -> Found:
    found: Found = []
    for row in session.execute(statement):
        customer, meter, i, total, events, largest, smallest = row
        found.append((customer, meter, int(i), Totals(total, int(events), largest, smallest)))
    return found


def _rollups(session: Session, customers: list[str], meter_ids: list[str],
             bounds: Sequence[datetime]) -> Found:
    """The rollups of the hours wholly inside a window, added up by window in SQL."""
    hour = col(R.hour)
    bucket = _bucket(hour, bounds)
    where: list[Any] = [col(R.customer_id).in_(customers), col(R.meter_id).in_(meter_ids),
                        hour >= floor_hour(bounds[0]), hour < bounds[-1]]
    split = split_hour_starts(bounds)
    if split:
        where.append(hour.not_in(split))
    group = (col(R.customer_id), col(R.meter_id), bucket)
    return _rows(session, select(
        *group, decimal_aggregate(session, "sum", col(R.total)),
        func.sum(col(R.events)), decimal_aggregate(session, "max", col(R.largest)),
        decimal_aggregate(session, "min", col(R.smallest))).where(*where).group_by(*group))


def _events(session: Session, customers: list[str], meter_ids: list[str],
            bounds: Sequence[datetime], folded: int, drawn: int
            ) -> Found:
    """What the rollups do not hold: the events of batches not folded yet (none when every
    batch drawn is folded: a batch drawn from now on commits after this read began), and
    the folded events of split hours. Grouped by window."""
    ts = col(E.timestamp)
    bucket = _bucket(ts, bounds)
    columns = (col(E.customer_id), col(E.meter_id), bucket,
               decimal_aggregate(session, "sum", col(E.quantity)), func.count(),
               decimal_aggregate(session, "max", col(E.quantity)),
               decimal_aggregate(session, "min", col(E.quantity)))
    base = (col(E.customer_id).in_(customers), col(E.meter_id).in_(meter_ids))
    group = (col(E.customer_id), col(E.meter_id), bucket)
    parts: list[Any] = []
    if drawn > folded:
        parts.append(select(*columns).where(
            *base, ts >= bounds[0], ts < bounds[-1], col(E.batch_seq) > folded)
            .group_by(*group))
    for lo, hi in split_hours(bounds):
        parts.append(select(*columns).where(
            *base, ts >= lo, ts < hi, col(E.batch_seq) <= folded).group_by(*group))
    if not parts:
        return []
    return _rows(session, union_all(*parts) if len(parts) > 1 else parts[0])
