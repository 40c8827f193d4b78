"""The hourly rollups give exactly what reading the events gives (PostgreSQL): for every
aggregation, any window edges (zones 30 and 45 minutes off the hour), any interleaving of
ingests and folds, duplicate keys — and under real concurrency, an estimate never counts
an event twice nor misses one that was committed before it began."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from domain.catalog import Aggregation, Meter
from domain.periods import midnight
from domain.usage import UsageEvent
from persistence import rollups
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import UsageEventRow, UsageRollupRow
from services import rollups as rollups_service

pytestmark = pytest.mark.postgres

START = datetime(2026, 3, 1, tzinfo=UTC)
METERS = [Meter("m-sum", Aggregation.SUM), Meter("m-count", Aggregation.COUNT),
          Meter("m-max", Aggregation.MAX), Meter("m-min", Aggregation.MIN),
          Meter("m-avg", Aggregation.AVERAGE), Meter("m-last", Aggregation.LAST),
          Meter("m-unique", Aggregation.UNIQUE_COUNT, "user")]
CUSTOMERS = ["c-1", "c-2"]
ZONES = ["UTC", "Europe/Oslo", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"]


def _reset(*, wanted: bool = True) -> None:
    """Empty tables; ``wanted``: both customers' usage wanted rolled up from before any of
    the events (as a subscription asks), so every event folded is rolled up."""
    with unit_of_work() as session:
        session.execute(text("TRUNCATE usage_events, usage_rollups, usage_fold_state, "
                             "usage_rollup_horizons CASCADE"))
        if wanted:
            for customer in CUSTOMERS:
                rollups.want_horizon(session, customer, START - timedelta(days=4))


def _insert(events: list[UsageEvent]) -> None:
    with unit_of_work() as session:
        usage_repo.insert_events(session, events, START)


def _from_events(bounds: list[datetime]) -> dict[tuple[str, str], list[rollups.Totals]]:
    """The same windows read from the events, one by one."""
    with unit_of_work() as session:
        rows = session.execute(select(UsageEventRow)).scalars().all()
    found = {(c, m.id): [rollups.Totals()] * (len(bounds) - 1) for c in CUSTOMERS
             for m in METERS}
    for row in rows:
        for i in range(len(bounds) - 1):
            if bounds[i] <= row.timestamp < bounds[i + 1]:
                cell = found[(row.customer_id, row.meter_id)]
                cell[i] = cell[i] + rollups.Totals(row.quantity, 1, row.quantity, row.quantity)
    return found


moments = st.integers(min_value=-3 * 24 * 60, max_value=6 * 24 * 60)  # minutes from START
event = st.tuples(
    st.integers(min_value=0, max_value=30),  # key: a small space, so keys repeat
    st.sampled_from(CUSTOMERS),
    st.sampled_from([m.id for m in METERS]),
    st.decimals(min_value=0, max_value=Decimal("1e9"), places=4, allow_nan=False),
    moments,
    st.sampled_from(["ada", "bob", None]),
)
# batches of events, each followed (or not) by a fold
steps = st.lists(st.tuples(st.lists(event, max_size=12), st.booleans()), min_size=1,
                 max_size=6)


def _insert_drawn(batch: list) -> None:
    _insert([UsageEvent(f"k{key}", customer, meter, quantity,
                        START + timedelta(minutes=minute), {"user": user} if user else {})
             for key, customer, meter, quantity, minute, user in batch])


def _every_read_is_the_events(zone: str, first_day: int, days: int) -> None:
    """Days ``first_day`` to ``first_day + days`` in ``zone``: the windows, the estimate's
    aggregations and the daily totals equal what reading the events gives."""
    first = date(2026, 3, 1) + timedelta(days=first_day)
    bounds = [midnight(first + timedelta(days=d), zone) for d in range(days + 1)]
    with unit_of_work() as session:
        got = rollups.windows(session, CUSTOMERS, [m.id for m in METERS], bounds)
    assert got == _from_events(bounds)
    period = usage_repo.Period(bounds[0], bounds[-1])
    with unit_of_work() as session:
        rolled = usage_repo.aggregate_many(session, period, CUSTOMERS, METERS, rolled_up=True)
        read = usage_repo.aggregate_many(session, period, CUSTOMERS, METERS)
    assert rolled == read
    with unit_of_work() as session:
        daily = usage_repo.daily_totals(session, "c-1", ["m-sum", "m-count"], bounds)
    expected = _from_events(bounds)
    assert daily == {m: [(t.total, t.events) for t in expected[("c-1", m)]]
                     for m in ["m-sum", "m-count"]}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, zone=st.sampled_from(ZONES), first_day=st.integers(0, 3),
       days=st.integers(1, 4))
def test_the_rollups_give_what_the_events_give(pg_store: str, steps: list, zone: str,
                                               first_day: int, days: int) -> None:
    _reset()
    for batch, then_fold in steps:
        _insert_drawn(batch)
        if then_fold:
            rollups_service.fold()
    _every_read_is_the_events(zone, first_day, days)


horizon = st.tuples(st.sampled_from(CUSTOMERS), moments)  # usage wanted from then on
# batches of events, each followed (or not) by a subscription's wish and by a fold
horizon_steps = st.lists(st.tuples(st.lists(event, max_size=12), st.none() | horizon,
                                   st.booleans()), min_size=1, max_size=6)


def _rolled_up_as_the_horizons_say() -> None:
    """The rollups hold exactly the folded events at or after their customer's horizon:
    rebuilt from the events, row for row."""
    with unit_of_work() as session:
        folded = session.scalar(text("SELECT folded FROM usage_fold_state WHERE id = 1"))
        since = rollups.horizons(session, CUSTOMERS)
        rows = session.execute(select(UsageEventRow)).scalars().all()
        stored = {(r.customer_id, r.meter_id, r.hour): (r.total, r.events, r.largest,
                                                         r.smallest)
                  for r in session.execute(select(UsageRollupRow)).scalars()}
    expected: dict[tuple[str, str, datetime], rollups.Totals] = {}
    for row in rows:
        if folded is None or row.batch_seq > folded:
            continue
        if row.customer_id not in since or row.timestamp < since[row.customer_id]:
            continue
        cell = (row.customer_id, row.meter_id, rollups.floor_hour(row.timestamp))
        expected[cell] = expected.get(cell, rollups.Totals()) + rollups.Totals(
            row.quantity, 1, row.quantity, row.quantity)
    assert stored == {cell: (t.total, t.events, t.largest, t.smallest)
                      for cell, t in expected.items()}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=horizon_steps, zone=st.sampled_from(ZONES), first_day=st.integers(0, 3),
       days=st.integers(1, 4))
def test_the_rollups_give_what_the_events_give_whatever_the_horizons(
        pg_store: str, steps: list, zone: str, first_day: int, days: int) -> None:
    """Only the usage a subscription wants is rolled up (from the hour of its start on):
    customers with no horizon, a horizon inside the windows, or one moved down between
    folds — any read still equals reading the events, and the rollups hold exactly the
    folded events at or after each customer's horizon."""
    _reset(wanted=False)
    for batch, wish, then_fold in steps:
        _insert_drawn(batch)
        if wish is not None:
            with unit_of_work() as session:
                rollups.want_horizon(session, wish[0], START + timedelta(minutes=wish[1]))
        if then_fold:
            rollups_service.fold()
            _rolled_up_as_the_horizons_say()
    _every_read_is_the_events(zone, first_day, days)


def test_usage_no_subscription_wants_is_not_rolled_up_until_one_does(pg_store: str) -> None:
    """A backfill for a customer without a subscription costs a fold nothing; the
    customer's first subscription, starting before those events, rolls them up."""
    _reset(wanted=False)
    _insert([UsageEvent(f"b{i}", "c-1", "m-sum", Decimal(2), START + timedelta(hours=i), {})
             for i in range(48)])
    report = rollups_service.fold()
    assert (report.events, report.folded) == (0, report.drawn)
    with unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(UsageRollupRow)) == 0
        rollups.want_horizon(session, "c-1", START + timedelta(hours=24, minutes=30))
    rollups_service.fold()
    _rolled_up_as_the_horizons_say()
    with unit_of_work() as session:
        assert rollups.horizons(session, CUSTOMERS) == {"c-1": START + timedelta(hours=24)}
        assert session.scalar(select(func.sum(UsageRollupRow.events))) == 24
        got = rollups.windows(session, ["c-1"], ["m-sum"], [START, START + timedelta(days=2)])
    assert got[("c-1", "m-sum")] == [rollups.Totals(Decimal(96), 48, Decimal(2), Decimal(2))]


def test_a_fold_takes_only_what_is_new_and_catches_up_in_steps(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _reset()
    monkeypatch.setattr(rollups, "BATCHES_PER_FOLD", 3)
    for n in range(10):
        _insert([UsageEvent(f"e{n}-{i}", "c-1", "m-sum", Decimal(1),
                            START + timedelta(minutes=7 * i), {}) for i in range(20)])
    report = rollups_service.fold()
    assert (report.events, report.batches) == (200, 10)
    assert report.folded == report.drawn
    assert rollups_service.fold().events == 0  # nothing new: nothing done
    with unit_of_work() as session:
        total = session.scalar(select(func.sum(UsageRollupRow.events)))
    assert total == 200


def test_events_stored_before_the_upgrade_are_folded_by_the_first_fold(pg_store: str) -> None:
    """Rows that predate the rollups carry batch number 0; the state starts at -1."""
    _reset()
    with unit_of_work() as session:  # as before migration 0006: no trigger, batch 0
        session.execute(text("ALTER TABLE usage_events DISABLE TRIGGER "
                             "usage_events_batch_number"))
        session.execute(text(
            "INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
            "ingested_at) VALUES ('old', 'c-1', 'm-sum', 5, '2026-03-01T10:30:00Z', "
            "'2026-03-01T10:30:00Z')"))
        session.execute(text("ALTER TABLE usage_events ENABLE TRIGGER "
                             "usage_events_batch_number"))
    assert rollups_service.fold().events == 1
    bounds = [START, START + timedelta(days=1)]
    with unit_of_work() as session:
        assert rollups.windows(session, ["c-1"], ["m-sum"], bounds)[("c-1", "m-sum")] == [
            rollups.Totals(Decimal(5), 1, Decimal(5), Decimal(5))]


def test_events_another_writer_stores_without_a_number_are_numbered_and_folded(
        pg_store: str) -> None:
    """A worker still on the code before the rollups (a rolling upgrade), or a backfill in
    SQL, inserts events without a batch number, after folds have run: a trigger numbers
    them under the same locks, so the estimate and the rollups count them."""
    _reset()
    _insert([UsageEvent("new-1", "c-1", "m-sum", Decimal(10), START, {})])
    rollups_service.fold()
    with unit_of_work() as session:
        session.execute(text(
            "INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
            "ingested_at) VALUES ('legacy', 'c-1', 'm-sum', 5, '2026-03-01T10:30:00Z', "
            "'2026-03-01T10:30:00Z')"))
    bounds = [START, START + timedelta(days=1)]
    with unit_of_work() as session:  # not folded yet: read as the newest batch
        assert rollups.windows(session, ["c-1"], ["m-sum"], bounds)[("c-1", "m-sum")][
            0].total == Decimal(15)
    assert rollups_service.fold().events == 1
    with unit_of_work() as session:
        assert session.scalar(select(func.sum(UsageRollupRow.total))) == Decimal(15)
    with unit_of_work() as session:  # a backfill: one number for the transaction
        session.execute(text(
            "INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
            "ingested_at) SELECT 'fill-' || g, 'c-1', 'm-sum', 1, "
            "'2026-03-01T00:00:00Z'::timestamptz + g * interval '1 second', now() "
            "FROM generate_series(1, 20000) AS g"))
        assert session.scalar(text(
            "SELECT count(DISTINCT batch_seq) FROM usage_events WHERE key LIKE 'fill-%'")) == 1
    assert rollups_service.fold().events == 20_000
    with unit_of_work() as session:
        assert session.scalar(select(func.sum(UsageRollupRow.total))) == Decimal(20_015)


def test_a_writer_with_another_search_path_takes_the_same_locks(pg_store: str) -> None:
    """The locks are keyed by the sequence, not by the session's first schema: an ingest
    reaching the tables through another ``search_path`` (here an empty schema first, like
    ``"$user"``) still holds the fold back until it commits."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from persistence import db

    _reset()
    with unit_of_work() as session:
        real = session.scalar(text("SELECT current_schema()"))
        session.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{real}_ghost"'))
    other = create_engine(db.engine().url, connect_args={
        "options": f"-csearch_path={real}_ghost,{real}"})
    inserted, commit = threading.Event(), threading.Event()

    def ingest() -> None:
        with Session(other) as session, session.begin():
            usage_repo.insert_events(session, [UsageEvent(
                "ghost", "c-1", "m-sum", Decimal(7), START, {})], START)
            inserted.set()
            commit.wait(20)

    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        assert inserted.wait(20)
        report = rollups_service.fold()
        assert report.folded < report.drawn  # its batch is in flight: not folded past
    finally:
        commit.set()
        writer.join(20)
        other.dispose()
        with unit_of_work() as session:
            session.execute(text(f'DROP SCHEMA "{real}_ghost"'))
    rollups_service.fold()
    with unit_of_work() as session:
        assert session.scalar(select(func.sum(UsageRollupRow.total))) == Decimal(7)


def _committed_sum() -> tuple[Decimal, int]:
    with unit_of_work() as session:
        total, count = session.execute(select(
            func.coalesce(func.sum(UsageEventRow.quantity), 0), func.count()).where(
            UsageEventRow.customer_id == "c-1", UsageEventRow.meter_id == "m-sum")).one()
    return Decimal(total), int(count)


def test_under_concurrent_ingest_and_folds_no_event_is_lost_or_counted_twice(
        pg_store: str) -> None:
    """Four threads ingest batches (with re-sent keys) while two folders fold in a loop
    and a reader reads the estimate's totals: each read lies between what was committed
    before it began and what was committed after it ended — never above (counted twice),
    never below (lost) — and after a last fold the rollups alone hold every event. Meanwhile
    subscriptions move the customer's horizon down, hour by hour, from the end of the
    window to its start (issue #21)."""
    _reset(wanted=False)
    stop = threading.Event()
    errors: list[BaseException] = []
    hour = timedelta(hours=1)
    bounds = [START, START + timedelta(days=2)]

    def ingest(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for n in range(40):
                batch = [UsageEvent(f"w{rng.randrange(4)}-{n}-{i}", "c-1", "m-sum",
                                    Decimal(rng.randrange(1, 1000)),
                                    START + rng.randrange(48) * hour
                                    + timedelta(seconds=rng.randrange(3600)), {})
                         for i in range(rng.randrange(1, 60))]
                with unit_of_work() as session:
                    usage_repo.insert_events(session, batch, START)
                    time.sleep(rng.random() / 50)  # the rest of an ingest transaction
                time.sleep(rng.random() / 200)
        except BaseException as exc:
            errors.append(exc)

    def folder() -> None:
        try:
            while not stop.is_set():
                rollups_service.fold()
        except BaseException as exc:
            errors.append(exc)

    reads: list[tuple[tuple[Decimal, int], rollups.Totals, tuple[Decimal, int]]] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                before = _committed_sum()
                with unit_of_work() as session:
                    got = rollups.windows(session, ["c-1"], ["m-sum"], bounds)[
                        ("c-1", "m-sum")][0]
                reads.append((before, got, _committed_sum()))
        except BaseException as exc:
            errors.append(exc)

    def subscriber() -> None:
        try:
            for hours in range(48, -1, -4):
                with unit_of_work() as session:
                    rollups.want_horizon(session, "c-1", START + hours * hour)
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    ingesters = [threading.Thread(target=ingest, args=(w,)) for w in range(4)]
    widening = threading.Thread(target=subscriber)
    others = [threading.Thread(target=folder), threading.Thread(target=folder),
              threading.Thread(target=reader)]
    for t in [*ingesters, widening, *others]:
        t.start()
    for t in [*ingesters, widening]:
        t.join(120)
    stop.set()
    for t in others:
        t.join(60)
    assert not errors, errors
    assert len(reads) > 10
    for before, got, after in reads:
        assert before[0] <= got.total <= after[0]
        assert before[1] <= got.events <= after[1]
    rollups_service.fold()
    total, count = _committed_sum()
    with unit_of_work() as session:
        rolled = session.execute(select(func.sum(UsageRollupRow.total),
                                        func.sum(UsageRollupRow.events))).one()
        assert rollups.lag(session)[0] == rollups.lag(session)[1]
    assert (Decimal(rolled[0]), int(rolled[1])) == (total, count)


def test_the_scheduler_process_folds_every_few_seconds(pg_store: str) -> None:
    from scheduler.loop import fold_loop

    _reset()
    _insert([UsageEvent("s-1", "c-1", "m-sum", Decimal(3), START, {})])
    stop = threading.Event()
    folder = threading.Thread(target=fold_loop, args=(stop, 0.05))
    folder.start()
    try:
        deadline = time.monotonic() + 20
        while rollups_service.lag().folded < rollups_service.lag().drawn:
            assert time.monotonic() < deadline, "not folded"
            time.sleep(0.05)
        _insert([UsageEvent("s-2", "c-1", "m-sum", Decimal(4), START, {})])
        while rollups_service.lag().folded < rollups_service.lag().drawn:
            assert time.monotonic() < deadline, "not folded"
            time.sleep(0.05)
    finally:
        stop.set()
        folder.join(10)
    with unit_of_work() as session:
        assert session.scalar(select(func.sum(UsageRollupRow.total))) == Decimal(7)


ALL_METERS = {
    "entities": [{"id": "in", "timezone": "Asia/Kolkata", "invoice_prefix": "IN"}],
    "meters": [{"id": "a-sum", "aggregation": "sum"}, {"id": "a-count", "aggregation": "count"},
               {"id": "a-max", "aggregation": "max"}, {"id": "a-min", "aggregation": "min"},
               {"id": "a-avg", "aggregation": "average"},
               {"id": "a-last", "aggregation": "last"},
               {"id": "a-unique", "aggregation": "unique_count", "property": "user"}],
    "plans": [{"id": "all", "currency": "INR", "interval": "month", "charges": [
        {"id": "fee", "type": "recurring", "amount": "100.00"},
        *[{"id": f"c-{m}", "type": "usage", "meter": f"a-{m}", "model": "unit",
           "unit_price": "0.37"} for m in ("sum", "count", "max", "min", "avg", "last",
                                            "unique")]]}],
    "customers": [{"id": "cust", "entity": "in"}],
}


def test_the_estimate_is_the_invoice_the_bill_run_then_issues(pg_store: str) -> None:
    """On PostgreSQL, in a zone half an hour off the hour, with re-sent events, events a
    second either side of local midnight, some batches folded and some not, and late usage
    of the month before: the estimate just before the run is the invoice the run issues,
    line for line (adjustment lines included)."""
    from domain.periods import bill_run_instant
    from persistence.tables import InvoiceLineRow, InvoiceRow
    from services import catalog as catalog_service
    from services import invoicing, subscriptions, usage

    _reset()
    catalog_service.apply_document(ALL_METERS, datetime(2025, 12, 1, tzinfo=UTC))
    with unit_of_work() as session:
        subscriptions.do_subscribe(session, datetime(2025, 12, 1, tzinfo=UTC), {
            "id": "s", "customer": "cust", "plan": "all", "start": "2026-01-01"})
    rng = random.Random(7)
    serial = 0

    def send(month_start: date, now: datetime, n: int, fold_every: int) -> None:
        nonlocal serial
        local_midnight = midnight(month_start, "Asia/Kolkata")
        for batch in range(n):
            events = []
            for _ in range(25):
                serial += 1
                offset = rng.choice([timedelta(seconds=-1), timedelta(0),
                                     timedelta(days=rng.randrange(31),
                                               seconds=rng.randrange(86400))])
                events.append({"key": f"k-{serial}", "customer": "cust",
                               "meter": rng.choice([m["id"] for m in ALL_METERS["meters"]]),
                               "quantity": str(rng.randrange(0, 5000)),
                               "timestamp": (local_midnight + offset).isoformat(),
                               "properties": {"user": rng.choice("abcdefg")}})
            usage.ingest_message(events + events[:5], f"m-{serial}", now)  # with re-sends
            if batch % fold_every == 0:
                rollups_service.fold()

    def issued(boundary: date) -> list[tuple[str, str, Decimal, Decimal]]:
        with unit_of_work() as session:
            invoice = session.scalars(select(InvoiceRow).where(
                InvoiceRow.boundary == boundary)).one()
            return sorted((ln.type, ln.charge_id, ln.quantity, ln.amount) for ln in
                          session.scalars(select(InvoiceLineRow).where(
                              InvoiceLineRow.invoice_id == invoice.id)))

    def estimated(now: datetime) -> list[tuple[str, str, Decimal, Decimal]]:
        composed = invoicing.preview("s", now, latest=True)
        return sorted((ln.type, ln.charge, ln.quantity, ln.amount) for ln in composed.lines)

    jan = datetime(2026, 1, 20, tzinfo=UTC)  # (events are not checked against it)
    send(date(2026, 1, 1), jan, 12, 3)
    for day in range(1, 32):
        local = date(2026, 1, day)
        invoicing.run_bill_run_now("in", local, bill_run_instant(local, "Asia/Kolkata"))
    # the estimate of the invoice at February 1 is made in January's last second
    last_second = midnight(date(2026, 2, 1), "Asia/Kolkata") - timedelta(seconds=1)
    send(date(2026, 2, 1), last_second, 1, 5)  # February's: not in that invoice
    expected = estimated(last_second)
    invoicing.run_bill_run_now("in", date(2026, 2, 1),
                               bill_run_instant(date(2026, 2, 1), "Asia/Kolkata"))
    assert issued(date(2026, 2, 1)) == expected
    # late usage of January, and February's
    feb = datetime(2026, 2, 20, tzinfo=UTC)
    send(date(2026, 1, 1), feb, 4, 2)
    send(date(2026, 2, 1), feb, 8, 4)
    for day in range(2, 29):
        local = date(2026, 2, day)
        invoicing.run_bill_run_now("in", local, bill_run_instant(local, "Asia/Kolkata"))
    last_second = midnight(date(2026, 3, 1), "Asia/Kolkata") - timedelta(seconds=1)
    expected = estimated(last_second)
    assert any(kind == "adjustment" for kind, *_ in expected)
    invoicing.run_bill_run_now("in", date(2026, 3, 1),
                               bill_run_instant(date(2026, 3, 1), "Asia/Kolkata"))
    assert issued(date(2026, 3, 1)) == expected


def test_a_slow_ingest_transaction_holds_no_other_ingest_up(pg_store: str) -> None:
    """An ingest transaction that waits (here: sleeps; in life: on a bill run's lock) for
    several seconds while the scheduler's fold loop turns every 50 ms: every other ingest
    goes on at its usual speed, the folds fold everything but the slow batch and what
    follows it, and once it commits, everything."""
    from scheduler.loop import fold_loop

    _reset()
    holding, release = threading.Event(), threading.Event()

    def slow() -> None:
        with unit_of_work() as session:
            usage_repo.insert_events(session, [UsageEvent(
                "slow", "c-1", "m-sum", Decimal(1), START, {})], START)
            holding.set()
            release.wait(30)

    _insert([UsageEvent("before", "c-1", "m-sum", Decimal(100), START, {})])
    slow_ingest = threading.Thread(target=slow)
    slow_ingest.start()
    assert holding.wait(10)
    stop = threading.Event()
    folder = threading.Thread(target=fold_loop, args=(stop, 0.05))
    folder.start()
    slowest = 0.0
    try:
        began = time.monotonic()
        n = 0
        while time.monotonic() - began < 3:
            n += 1
            t = time.monotonic()
            _insert([UsageEvent(f"quick-{n}", "c-1", "m-sum", Decimal(2), START, {})])
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.01)
        report = rollups_service.fold()
        assert not report.busy and report.folded < report.drawn  # the slow batch is open
        with unit_of_work() as session:  # "before" is folded; nothing after "slow" is
            assert session.scalar(select(func.sum(UsageRollupRow.total))) == Decimal(100)
    finally:
        release.set()
        slow_ingest.join(20)
        stop.set()
        folder.join(20)
    assert slowest < 0.5, f"an ingest took {slowest:.2f} s"
    report = rollups_service.fold()
    assert report.folded == report.drawn
    with unit_of_work() as session:
        assert session.scalar(select(func.sum(UsageRollupRow.total))) == Decimal(101 + 2 * n)


def test_a_fold_runs_as_a_role_that_does_not_own_the_tables(pg_store: str) -> None:
    """Least privilege: the schema migrated by its owner, the services run as a role that
    may read and write. Only an owner may summarize the BRIN index; the fold then goes on
    without it (autovacuum summarizes, ``autosummarize``)."""
    import uuid

    from sqlalchemy import event

    from persistence import db

    _reset()
    _insert([UsageEvent("r-1", "c-1", "m-sum", Decimal(4), START, {})])
    engine = db.engine()
    with unit_of_work() as session:
        schema = session.scalar(text("SELECT current_schema()"))
    role = f"billing_app_{uuid.uuid4().hex[:8]}"
    with engine.begin() as c:
        c.exec_driver_sql(f'CREATE ROLE "{role}" NOLOGIN')
        c.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        c.exec_driver_sql(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" '
                          f'TO "{role}"')
        c.exec_driver_sql(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" '
                          f'TO "{role}"')

    def as_app(dbapi: Any, record: Any) -> None:
        with dbapi.cursor() as cursor:
            cursor.execute(f'SET ROLE "{role}"')
        dbapi.commit()

    engine.dispose()
    event.listen(engine, "connect", as_app)
    try:
        report = rollups_service.fold()
        assert not report.busy and report.events == 1
    finally:
        engine.dispose()
        event.remove(engine, "connect", as_app)
        with engine.begin() as c:
            c.exec_driver_sql(f'DROP OWNED BY "{role}"')
            c.exec_driver_sql(f'DROP ROLE "{role}"')


def test_a_vacuum_holding_the_table_does_not_hold_the_fold(pg_store: str) -> None:
    """Summarizing the BRIN index takes the lock a VACUUM holds: the fold waits 100 ms for
    it at most, then folds without it (and never makes autovacuum give way)."""
    _reset()
    _insert([UsageEvent("v-1", "c-1", "m-sum", Decimal(4), START, {})])
    locked, done = threading.Event(), threading.Event()

    def vacuum_like() -> None:
        with unit_of_work() as session:
            session.execute(text("LOCK TABLE usage_events IN SHARE UPDATE EXCLUSIVE MODE"))
            locked.set()
            done.wait(20)

    holder = threading.Thread(target=vacuum_like)
    holder.start()
    try:
        assert locked.wait(10)
        began = time.monotonic()
        report = rollups_service.fold()
        took = time.monotonic() - began
    finally:
        done.set()
        holder.join(20)
    assert report.events == 1 and took < 2, (report, took)
