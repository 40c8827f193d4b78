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

Prices by dimension (SPEC §13): a rollup row also has ``dims``, the properties of its
events that the filters on its meter look at — for each name a filter of any plan version
lists, the event's value when it is a string one of those filters lists, else nothing (so
it can never match). ``dims`` is canonical JSON (PostgreSQL's ``jsonb`` text), or '' for a
meter no filter names. So an estimate decides the group of a rollup row with the very
``CASE`` an invoice decides an event's (``persistence.sql.group_case``), over ``dims``
instead of ``properties``. What a meter's rollups are keyed by is in ``usage_rollup_keys``:
a plan version with filters adds to ``wanted``; a fold that finds ``keyed`` different
re-folds that meter's rollups, in its own transaction and under the same locks, and moves
``keyed`` on. A read whose filters name a name or value the rollups are not keyed by (the
fold has not caught up with a catalog change yet) reads the events.

Only what a read can want is rolled up (issue #21): an estimate, a portal page or an alert
reads a customer's current periods, which never begin before its first subscription. So
each customer has a *horizon* (``usage_rollup_horizons``): the rollups hold every folded
event of the customer at or after that UTC hour and none before, and a customer without one
has none rolled up — a backfill of usage for customers without subscriptions, or for
periods long closed, costs a fold nothing. A read takes a customer's hours before its
horizon from the events, as it takes split hours, so it is exact whatever the horizons
are. A subscription asks for its customer's usage from the hour of its start
(``want_horizon``, in its transaction: ``wanted``); the next fold rolls up that customer's
folded events between the hour wanted and its horizon, in the fold's transaction and under
its locks, and moves the horizon down to it. Horizons only move down.

SQLite runs one writer at a time and is for small deployments: there the estimate reads
the events (``batch_seq`` stays 0, nothing folds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, cast, func, literal, select, text, union_all
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.filters import DEFAULT_GROUP, Filter
from persistence.sql import decimal_aggregate, group_case, is_postgres
from persistence.tables import (
    UsageEventRow,
    UsageFoldStateRow,
    UsageRollupKeysRow,
    UsageRollupRow,
)

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


# {dims}: '' (no meter keyed: grouped by the first three columns only, as before filters)
# or a CASE over the meter; {hours}: which hours of which customers; {where}: which events
FOLD = """
WITH grouped AS (
    SELECT e.customer_id, meter_id, date_trunc('hour', "timestamp", 'UTC') AS hour,
           {dims} AS dims, sum(quantity) AS total, count(*) AS events,
           max(quantity) AS largest, min(quantity) AS smallest
    FROM usage_events AS e JOIN {hours} WHERE {where}
    GROUP BY {group}
), written AS (
    INSERT INTO usage_rollups AS r (customer_id, meter_id, hour, dims, total, events,
                                    largest, smallest)
    SELECT * FROM grouped
    ON CONFLICT (customer_id, meter_id, hour, dims) DO UPDATE SET
        total = r.total + EXCLUDED.total, events = r.events + EXCLUDED.events,
        largest = greatest(r.largest, EXCLUDED.largest),
        smallest = least(r.smallest, EXCLUDED.smallest)
)  -- a data-modifying CTE runs whether or not it is read
SELECT coalesce(sum(events), 0) FROM grouped
"""
NEW_BATCHES = "batch_seq > :after AND batch_seq <= :upto"
# a re-fold: every event of these meters the rollups hold (batches up to the fold state)
REFOLD = "meter_id = ANY(CAST(:refold AS text[])) AND batch_seq <= :after"
# the hours the rollups hold: each customer's from its horizon on
HORIZONS = ('usage_rollup_horizons AS h ON h.customer_id = e.customer_id '
            'AND e."timestamp" >= h.since')
# the hours between the hour a customer's usage is wanted from and its horizon (or on)
WIDENED = ('unnest(CAST(:customers AS text[]), CAST(:lows AS timestamptz[]), '
           'CAST(:highs AS timestamptz[])) AS h(customer_id, low, high) '
           'ON h.customer_id = e.customer_id AND e."timestamp" >= h.low '
           'AND (h.high IS NULL OR e."timestamp" < h.high)')
FOLDED = "batch_seq <= :after"


@dataclass(frozen=True)
class Folded:
    after: int  # the fold state before
    upto: int  # and after
    events: int  # events added into the rollups


def fold(session: Session, settled: int) -> Folded:
    """Fold the batches after ``usage_fold_state.folded`` up to ``settled`` (from
    ``settled_batches``, in an earlier transaction) — at most ``BATCHES_PER_FOLD`` of them —
    and move the state on; first, re-fold the meters whose keys changed (``usage_rollup_
    keys``). Two folders take turns (the state row is locked)."""
    session.execute(text("INSERT INTO usage_fold_state (id, folded) VALUES (1, -1) "
                         "ON CONFLICT (id) DO NOTHING"))
    after = int(session.execute(select(col(UsageFoldStateRow.folded)).where(
        col(UsageFoldStateRow.id) == 1).with_for_update()).scalar_one())
    upto = min(settled, after + BATCHES_PER_FOLD)
    keys = {meter: (wanted, keyed) for meter, wanted, keyed in session.execute(select(
        col(UsageRollupKeysRow.meter_id), col(UsageRollupKeysRow.wanted),
        col(UsageRollupKeysRow.keyed)))}
    refold = sorted(meter for meter, (wanted, keyed) in keys.items() if wanted != keyed)
    widen = _behind(session)
    if upto <= after and not refold and not widen:
        return Folded(after, after, 0)
    dims, params = dims_sql({meter: parse_keys(wanted) for meter, (wanted, _) in keys.items()})
    if refold:
        _refold(session, refold, after, dims, params)
        for meter in refold:
            session.execute(text("UPDATE usage_rollup_keys SET keyed = :keyed "
                                 "WHERE meter_id = :meter"),
                            {"keyed": keys[meter][0], "meter": meter})
    if widen:
        _widen(session, widen, after, dims, params)
    events = 0
    if upto > after:
        events = int(session.execute(text(_fold_sql(dims, NEW_BATCHES)),
                                     {**params, "after": after, "upto": upto}).scalar() or 0)
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
    return Folded(after, max(upto, after), events)


def _fold_sql(dims: str, where: str, hours: str = HORIZONS) -> str:
    return FOLD.format(dims=dims, hours=hours, where=where,
                       group="1, 2, 3" if dims == "''" else "1, 2, 3, 4")


def _refold(session: Session, meters: list[str], after: int, dims: str,
            params: dict[str, Any]) -> None:
    """The rollups of these meters made again from their events (every batch up to the
    fold state ``after``), keyed by their keys now. A catalog change is rare; this reads
    every event of the meters once."""
    session.execute(text("DELETE FROM usage_rollups WHERE meter_id = ANY(CAST(:refold AS "
                         "text[]))"), {"refold": meters})
    if after >= 0:
        session.execute(text(_fold_sql(dims, REFOLD)),
                        {**params, "refold": meters, "after": after})


# ---------------------------------------------------------------------------- horizons


def want_horizon(session: Session, customer_id: str, since: datetime) -> None:
    """In a subscription's transaction: the customer's usage wanted rolled up from the
    hour of ``since`` on (PostgreSQL; SQLite does not fold). The next fold does it."""
    if not is_postgres(session):
        return
    session.execute(text(
        "INSERT INTO usage_rollup_horizons AS h (customer_id, wanted) "
        "VALUES (:customer, :since) ON CONFLICT (customer_id) DO UPDATE "
        "SET wanted = EXCLUDED.wanted WHERE EXCLUDED.wanted < h.wanted"),
        {"customer": customer_id, "since": floor_hour(since)})


@dataclass(frozen=True)
class Widen:
    customer_id: str
    low: datetime  # the hour its usage is wanted from
    high: datetime | None  # its horizon now (None: nothing rolled up yet)


def _behind(session: Session) -> list[Widen]:
    """The customers whose usage is wanted from before their horizon (locked; one a
    subscription is writing right now is left for the next fold)."""
    return [Widen(*row) for row in session.execute(text(
        "SELECT customer_id, wanted, since FROM usage_rollup_horizons "
        "WHERE since IS NULL OR wanted < since ORDER BY customer_id "
        "FOR UPDATE SKIP LOCKED"))]


def _widen(session: Session, widen: list[Widen], after: int, dims: str,
           params: dict[str, Any]) -> None:
    """Roll up the folded events of these customers between the hour wanted and their
    horizon, and move their horizons down to it."""
    customers = [w.customer_id for w in widen]
    if after >= 0:
        session.execute(text(_fold_sql(dims, FOLDED, WIDENED)), {
            **params, "after": after, "customers": customers,
            "lows": [w.low for w in widen], "highs": [w.high for w in widen]})
    session.execute(text(
        "UPDATE usage_rollup_horizons AS h SET since = w.low FROM unnest("
        "CAST(:customers AS text[]), CAST(:lows AS timestamptz[])) AS w(customer_id, low) "
        "WHERE h.customer_id = w.customer_id"),
        {"customers": customers, "lows": [w.low for w in widen]})


def horizons(session: Session, customers: Collection[str]) -> dict[str, datetime]:
    """The customers' horizons (one without: none rolled up)."""
    return {customer: since for customer, since in session.execute(text(
        "SELECT customer_id, since FROM usage_rollup_horizons "
        "WHERE customer_id = ANY(CAST(:customers AS text[])) AND since IS NOT NULL"),
        {"customers": list(customers)})}


# ---------------------------------------------------------------------------- keys

Keys = dict[str, tuple[str, ...]]  # property name -> the values filters list, sorted


def keys_text(keys: Mapping[str, Collection[str]]) -> str:
    """Canonical JSON of keys: names sorted, each with its values sorted."""
    return json.dumps({name: sorted(set(values)) for name, values in keys.items()},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_keys(stored: str | None) -> Keys | None:
    if stored is None:
        return None
    return {name: tuple(values) for name, values in json.loads(stored).items()}


def filter_keys(filters: Sequence[Filter]) -> dict[str, set[str]]:
    """Every name the filters look at, with every value they list for it."""
    keys: dict[str, set[str]] = {}
    for f in filters:
        for name, values in f.match:
            keys.setdefault(name, set()).update(values)
    return keys


def want_keys(session: Session, wanted: Mapping[str, Mapping[str, Collection[str]]]) -> None:
    """With a new plan version (in its transaction): the names and values its filters list,
    per meter, added to what the meter's rollups must be keyed by. The next fold re-folds a
    meter whose keys grew."""
    for meter, keys in sorted(wanted.items()):
        row = session.get(UsageRollupKeysRow, meter, with_for_update=True)
        before = parse_keys(row.wanted) if row is not None else None
        merged = {name: set(values) for name, values in (before or {}).items()}
        for name, values in keys.items():
            merged.setdefault(name, set()).update(values)
        stored = keys_text(merged)
        if row is None:
            session.add(UsageRollupKeysRow(meter_id=meter, wanted=stored))
        elif row.wanted != stored:
            row.wanted = stored
    session.flush()


def dims_sql(keys: Mapping[str, Keys | None]) -> tuple[str, dict[str, Any]]:
    """The ``dims`` of an event as SQL over ``usage_events`` (with its parameters): for a
    keyed meter, the JSON object of its keyed names whose value is a string one of the
    keyed values (the others left out: they never match); '' for any other meter."""
    params: dict[str, Any] = {}
    whens: list[str] = []
    for i, (meter, named) in enumerate(sorted(keys.items())):
        if not named:
            continue
        pairs = []
        for j, (name, values) in enumerate(sorted(named.items())):
            n, v = f"dn{i}_{j}", f"dv{i}_{j}"
            params[n], params[v] = name, list(values)
            prop = f"properties -> CAST(:{n} AS text)"
            pairs.append(f"jsonb_build_object(CAST(:{n} AS text), CASE WHEN jsonb_typeof({prop})"
                         f" = 'string' AND properties ->> CAST(:{n} AS text) = "
                         f"ANY(CAST(:{v} AS text[])) THEN {prop} END)")
        params[f"dm{i}"] = meter
        whens.append(f"WHEN CAST(:dm{i} AS text) THEN "
                     f"jsonb_strip_nulls({' || '.join(pairs)})::text")
    if not whens:
        return "''", params
    return f"CASE meter_id {' '.join(whens)} ELSE '' END", params


def keyed(session: Session, meter_id: str) -> Keys | None:
    """What the meter's rollups are keyed by now (None: by nothing)."""
    return parse_keys(session.scalar(select(col(UsageRollupKeysRow.keyed)).where(
        col(UsageRollupKeysRow.meter_id) == meter_id)))


def covers(keys: Keys | None, filters: Sequence[Filter]) -> bool:
    """Whether rollups keyed by ``keys`` can tell the groups of these filters apart: every
    name they look at is keyed, with every value they list."""
    return keys is not None and all(
        name in keys and set(values) <= set(keys[name])
        for f in filters for name, values in f.match)


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
    for customer, meter, _, i, totals in _found(session, customers, sorted(set(meter_ids)),
                                                bounds, folded, drawn, None):
        cell = result[(customer, meter)]
        cell[i] = cell[i] + totals
    return result


def group_windows(session: Session, customers: Collection[str], meter_id: str,
                  filters: Sequence[Filter], bounds: Sequence[datetime]
                  ) -> dict[tuple[str, str], list[Totals]] | None:
    """SPEC §13: totals of the events of each (customer, group of ``filters``) of one meter
    in each window, exactly as if the events were read (PostgreSQL) — the group of a rollup
    row decided from its ``dims`` by the invoice's own ``CASE``, the group of an event read
    one by one from its properties. None when the meter's rollups are not keyed by every
    name and value the filters list (a catalog change not folded yet): read the events."""
    count = len(bounds) - 1
    groups = [DEFAULT_GROUP, *(f.id for f in filters)]
    result = {(c, g): [Totals()] * count for c in customers for g in groups}
    if count <= 0 or not result:
        return result
    bounds = [b.astimezone(UTC) for b in bounds]
    folded, drawn = share_read_lock(session)
    if filters and not covers(keyed(session, meter_id), filters):
        return None
    for customer, _, group, i, totals in _found(session, customers, [meter_id], bounds,
                                                folded, drawn, filters):
        cell = result[(customer, group)]
        cell[i] = cell[i] + totals
    return result


Found = list[tuple[str, str, str, int, Totals]]  # customer, meter, group, window, totals


def _found(session: Session, customers: Collection[str], meter_ids: list[str],
           bounds: Sequence[datetime], folded: int, drawn: int,
           filters: Sequence[Filter] | None) -> Found:
    """The rollups' part and the events' part, by chunks of customers (under the read
    lock the caller holds); per group of ``filters`` when given."""
    wanted = sorted(set(customers))
    found: Found = []
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        # by where the events' part begins: None (the customer's horizon is at or before
        # the first window) or the horizon, at most the last edge
        by_below: dict[datetime | None, list[str]] = {}
        since = horizons(session, part)
        for customer in part:
            h = since.get(customer)
            below = None if h is not None and h <= bounds[0] else min(h or bounds[-1],
                                                                      bounds[-1])
            by_below.setdefault(below, []).append(customer)
        rolled = [c for below, cs in by_below.items() if below != bounds[-1] for c in cs]
        if rolled:
            found += _rollups(session, rolled, meter_ids, bounds, filters)
        for below, some in by_below.items():
            found += _events(session, some, meter_ids, bounds, folded, drawn, filters, below)
    return found


def _bucket(column: Any, bounds: Sequence[datetime]) -> Any:
    """The window an instant falls in, as SQL (the caller keeps it inside the bounds):
    how many inner edges are at or before it — ``width_bucket`` over one array."""
    if len(bounds) <= 2:
        return literal(0).label("bucket")
    edges = ARRAY(DateTime(timezone=True))
    return func.width_bucket(column, literal(list(bounds[1:-1]), edges)).label("bucket")


def _rows(session: Session, statement: Any, grouped: bool) -> Found:
    found: Found = []
    for row in session.execute(statement):
        customer, meter, *group, i, total, events, largest, smallest = row
        found.append((customer, meter, group[0] if grouped else DEFAULT_GROUP, int(i),
                      Totals(total, int(events), largest, smallest)))
    return found


def _rollups(session: Session, customers: list[str], meter_ids: list[str],
             bounds: Sequence[datetime], filters: Sequence[Filter] | None) -> Found:
    """The rollups of the hours wholly inside a window, added up by window (and group) in
    SQL."""
    hour = col(R.hour)
    bucket = _bucket(hour, bounds)
    where: list[Any] = [col(R.customer_id).in_(customers), col(R.meter_id).in_(meter_ids),
                        hour >= floor_hour(bounds[0]), hour < bounds[-1]]
    split = split_hour_starts(bounds)
    if split:
        where.append(hour.not_in(split))
    group: tuple[Any, ...] = (col(R.customer_id), col(R.meter_id))
    if filters is not None:  # '' (a meter keyed by nothing) is no JSON: no filter matches
        dims = cast(func.nullif(col(R.dims), ""), JSONB)
        group += (group_case(session, filters, dims).label("grp"),)
    group += (bucket,)
    return _rows(session, select(
        *group, decimal_aggregate(session, "sum", col(R.total)),
        func.sum(col(R.events)), decimal_aggregate(session, "max", col(R.largest)),
        decimal_aggregate(session, "min", col(R.smallest))).where(*where).group_by(*group),
        filters is not None)


def _events(session: Session, customers: list[str], meter_ids: list[str],
            bounds: Sequence[datetime], folded: int, drawn: int,
            filters: Sequence[Filter] | None, below: datetime | None) -> Found:
    """What the rollups do not hold: the events of batches not folded yet (none when every
    batch drawn is folded: a batch drawn from now on commits after this read began), the
    folded events before ``below`` (the customers' horizon, an hour after the first edge;
    None: none are) and those of split hours after it. Grouped by window (and group)."""
    ts = col(E.timestamp)
    bucket = _bucket(ts, bounds)
    group: tuple[Any, ...] = (col(E.customer_id), col(E.meter_id))
    if filters is not None:
        group += (group_case(session, filters, col(E.properties)).label("grp"),)
    group += (bucket,)
    columns = (*group, decimal_aggregate(session, "sum", col(E.quantity)), func.count(),
               decimal_aggregate(session, "max", col(E.quantity)),
               decimal_aggregate(session, "min", col(E.quantity)))
    base = (col(E.customer_id).in_(customers), col(E.meter_id).in_(meter_ids))
    parts: list[Any] = []
    if drawn > folded:
        parts.append(select(*columns).where(
            *base, ts >= bounds[0], ts < bounds[-1], col(E.batch_seq) > folded)
            .group_by(*group))
    for lo, hi in split_hours(bounds):
        if below is None or lo >= below:  # (a split hour before it is read below)
            parts.append(select(*columns).where(
                *base, ts >= lo, ts < hi, col(E.batch_seq) <= folded).group_by(*group))
    if below is not None:
        parts.append(select(*columns).where(
            *base, ts >= bounds[0], ts < below, col(E.batch_seq) <= folded).group_by(*group))
    if not parts:
        return []
    return _rows(session, union_all(*parts) if len(parts) > 1 else parts[0],
                 filters is not None)
