"""Alerts at volume (issue #26): the lag from ingest to ``alert.triggered`` with N
subscriptions that have alerts, and ingest with and without alerts, in one run, each
also as a share of the floor (the same rows by COPY, measured in the same run).

    .venv/bin/python -m benchmarks.alerts                      # 100,000 subscriptions
    .venv/bin/python -m benchmarks.alerts --subscriptions 10000 --events 20000
    .venv/bin/python -m benchmarks.alerts --active 2000 --burst             # one second
    .venv/bin/python -m benchmarks.alerts --active 2000 --burst --profile   # where it goes

It creates (and drops) a PostgreSQL database of its own (BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres), loads N customers with a subscription and a
``usage_amount`` alert each (100.00 and 500.00, then every 500.00, at 1.00 a token) and N
more customers with a subscription and no alert. Then it ingests the same usage — events of
60 tokens, round robin over ``--active`` customers of a group — in five runs, into the group
without alerts, then the group with them, and so on (each run with alerts is compared with
the mean of the two beside it): ingest threads in this process calling the ingest service (a
worker's threads, without the broker), while a process folds every second and evaluates
alerts at the scheduler's cadence (``BILLING_ALERT_SECONDS``). Then the floor: the same rows
by COPY, no folder. The lag of a threshold is from the commit of the batch holding the event
that crossed it to the commit of the transaction that wrote the ``alert.triggered`` row
naming it (the folder process notes the wall clock at each commit that wrote such rows; the
row's ``created_at`` is the instant the evaluation started, and the lag to it — what this
benchmark reported before — is printed too, for comparison).

``--burst``: no folder runs; in each of ``--rounds`` rounds every active customer of the
group with alerts gets one event that takes it across its next threshold (100.00, then
500.00, 1,000.00, …), the batches are folded, and the one evaluation that fires those
``--active`` alerts is timed (what the scheduler's folder does in the second where
thousands of customers cross at once). ``--profile``: cProfile of the first round's
evaluation, its chunks one after another in this thread (the profiler sees one thread).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from queue import Empty, Queue
from typing import Any

import psycopg

from benchmarks.bench import say

EVERY = 1.0


def fold_forever(url: str, stop: Any, turns: Any) -> None:
    """The scheduler process's fold thread, in a process of its own (as in production: the
    workers' ingest never shares an interpreter with it): fold, then evaluate the alerts
    of what was folded, every second."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from persistence import alerts as alerts_repo
    from persistence import db
    from services import alerts, logs, rollups

    logs.configure("console", "WARNING")
    db.configure(url)
    add_events = alerts_repo.add_events

    def noted(session: Session, *args: Any, **kwargs: Any) -> list[int]:
        ids: list[int] = add_events(session, *args, **kwargs)
        session.info.setdefault("bench_alert_events", []).extend(ids)
        return ids

    def committed(session: Session) -> None:  # the wall clock at the commit of the rows
        ids = session.info.pop("bench_alert_events", None)
        if ids:
            turns.put(("commit", time.time(), ids))

    alerts_repo.add_events = noted  # type: ignore[assignment]
    event.listen(Session, "after_commit", committed)
    try:  # the scheduler's pause between turns, whatever the code measured has
        from scheduler.loop import fold_pause
    except ImportError:  # before it had one: a whole period after each turn
        def fold_pause(every: float, elapsed: float) -> float:
            return every
    try:  # the scheduler's cadence of evaluations (BILLING_ALERT_SECONDS)
        from scheduler.loop import evaluation_due
        from services.settings import settings

        alert_every = settings().alert_seconds
    except ImportError:  # before it had one: after every fold
        def evaluation_due(last: float | None, now: float, alert_every: float,
                           every: float) -> bool:
            return True

        alert_every = EVERY
    began = time.perf_counter()
    evaluated: float | None = None
    while not stop.wait(fold_pause(EVERY, time.perf_counter() - began)):
        began = time.perf_counter()
        rollups.fold()
        folded = time.perf_counter()
        if not evaluation_due(evaluated, began, alert_every, EVERY):
            turns.put(("turn", folded - began, 0.0, 0))
            continue
        evaluated = began
        fired = alerts.evaluate_folded(datetime.now(UTC))
        turns.put(("turn", folded - began, time.perf_counter() - folded, len(fired)))


class Folder:
    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.queue: Any = context.Queue()
        self.process = context.Process(target=fold_forever, args=(url, self.stop, self.queue))
        self.turns: list[tuple[float, float, int]] = []
        self.commits: dict[int, float] = {}  # alert_events id: wall clock of its commit

    def __enter__(self) -> Folder:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.process.is_alive() or not self.queue.empty():
            with contextlib.suppress(Empty):
                item = self.queue.get(timeout=0.5)
                if item[0] == "commit":
                    self.commits.update(dict.fromkeys(item[2], item[1]))
                else:
                    self.turns.append(item[1:])
        self.process.join()


def ingest(prefix: str, customers: int, events: int, batch: int, threads: int,
           committed: dict[int, float], quantity: int = 60, group: str | None = None,
           offset: int = 0) -> float:
    """``events`` events of ``quantity`` tokens over ``customers`` of ``group`` (round
    robin; the group is the prefix unless named), keys ``prefix-i`` from ``i = offset``, in
    batches, by ``threads`` threads; events per second. ``committed``: each event's batch
    commit time (wall clock), by its number."""
    from services import usage

    now = datetime.now(UTC) - timedelta(seconds=30)
    todo: Queue[list[dict[str, Any]] | None] = Queue()
    for start in range(offset, offset + events, batch):
        todo.put([{"key": f"{prefix}-{i}", "customer": f"{group or prefix}-{i % customers}",
                   "meter": "tokens", "quantity": str(quantity),
                   "timestamp": (now + timedelta(microseconds=i)).isoformat()}
                  for i in range(start, min(offset + events, start + batch))])
    for _ in range(threads):
        todo.put(None)

    def work() -> None:
        while (item := todo.get()) is not None:
            usage.ingest_message(item, f"m-{uuid.uuid4()}", datetime.now(UTC))
            done = time.time()
            for e in item:
                committed[int(e["key"].rsplit("-", 1)[1])] = done

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return events / (time.perf_counter() - started)


def floor(url: str, prefix: str, customers: int, events: int, batch: int) -> float:
    """The same rows as ``ingest`` (customers of the group without alerts) by COPY + INSERT
    … ON CONFLICT DO NOTHING, one batch number drawn per batch, on one connection, no
    folder: ``benchmarks.bench``'s floor, for this run's ingest ÷ floor. Rows per second."""
    now = datetime.now(UTC) - timedelta(seconds=30)
    rows = [(f"{prefix}-{i}", f"n-{i % customers}", "tokens", Decimal(60),
             now + timedelta(microseconds=i), datetime.now(UTC)) for i in range(events)]
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for start in range(0, events, batch):
            with conn.cursor() as cur:
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS stage (key text, customer_id "
                            "text, meter_id text, quantity numeric, ts timestamptz, "
                            "ingested_at timestamptz) ON COMMIT DELETE ROWS")
                with cur.copy("COPY stage FROM STDIN") as copy:
                    for row in rows[start:start + batch]:
                        copy.write_row(row)
                cur.execute("INSERT INTO usage_events (key, customer_id, meter_id, quantity, "
                            "timestamp, ingested_at, batch_seq) SELECT key, customer_id, "
                            "meter_id, quantity, ts, ingested_at, "
                            "(SELECT nextval('usage_batch_seq')) FROM stage "
                            "ON CONFLICT (key) DO NOTHING")
            conn.commit()
        return events / (time.perf_counter() - started)


def settle() -> float:
    """Fold until nothing is left to fold; seconds."""
    from services import rollups

    began = time.perf_counter()
    while True:
        report = rollups.fold()
        if not report.events and not report.busy:
            return time.perf_counter() - began


class Serial:
    """A stand-in for ``ThreadPoolExecutor`` that runs each call in this thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn: Any, items: Any) -> Any:
        return [fn(item) for item in items]


def burst(args: argparse.Namespace, active: int) -> None:
    """Rounds where every active customer crosses its next threshold in one batch set,
    then one evaluation fires them all: its time, per round."""
    import cProfile
    import io
    import pstats

    from services import alerts

    # 100.00, then 500.00, then every 500.00: one event each round reaches the next one
    quantities = [100, 400] + [500] * max(0, args.rounds - 2)
    timings: list[tuple[float, float, int]] = []
    ignored: dict[int, float] = {}
    for r, quantity in enumerate(quantities[:args.rounds]):
        ingest(f"a{r}", active, active, args.batch, args.threads, ignored, quantity, "a")
        folded = settle()
        now = datetime.now(UTC)
        profiler = cProfile.Profile() if args.profile and r == 0 else None
        if profiler is not None:
            pool, alerts.ThreadPoolExecutor = alerts.ThreadPoolExecutor, Serial  # type: ignore[assignment,misc]
            profiler.enable()
        began = time.perf_counter()
        fired = alerts.evaluate_folded(now)
        took = time.perf_counter() - began
        if profiler is not None:
            profiler.disable()
            alerts.ThreadPoolExecutor = pool  # type: ignore[misc]
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        say(f"round {r + 1}: fold {folded:.2f} s, evaluation {took:.2f} s, "
            f"{len(fired):,} alert.triggered"
            + (" (profiled, chunks one after another)" if profiler is not None else ""))
        timings.append((folded, took, len(fired)))
    measured = [t for i, t in enumerate(timings) if not (args.profile and i == 0)]
    evaluations = sorted(e for _, e, _ in measured)
    if evaluations:
        say(f"burst of {active:,} alerts firing in one evaluation, {len(evaluations)} rounds: "
            f"median {evaluations[len(evaluations) // 2]:.2f} s, "
            f"min {evaluations[0]:.2f} s, max {evaluations[-1]:.2f} s "
            f"({sum(f for _, _, f in measured):,} events)")


def stream(args: argparse.Namespace, url: str, active: int) -> None:
    """Ingest without, with, without, with, without alerts while a process folds and
    evaluates every second: the rates (each run with alerts against the mean of the runs
    beside it: the table grows as the runs go, and each run is a little slower than the
    one before), and the lag of each threshold crossed."""
    ignored: dict[int, float] = {}
    committed: dict[int, float] = {}
    ingest("w", active, 5 * args.batch, args.batch, args.threads, ignored,
           group="n")  # warm-up
    rates: list[float] = []
    with Folder(url) as folder:
        for run in range(5):
            if run % 2:  # with alerts: one numbering across the runs (the lags below)
                rates.append(ingest("a", active, args.events, args.batch, args.threads,
                                    committed, offset=run // 2 * args.events))
            else:
                rates.append(ingest(f"n{run}", active, args.events, args.batch, args.threads,
                                    ignored, group="n"))
            say(f"run {run + 1}, {'with' if run % 2 else 'without'} alerts: "
                f"{rates[-1]:,.0f} events/s")
        say("waiting for the alerts")
        from domain.alerts import Thresholds

        of = Thresholds((Decimal(100), Decimal(500)), Decimal(500))
        total = Decimal(60) * (2 * args.events // active)
        expected = len(of.up_to(total)) * active
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            with psycopg.connect(url) as conn:
                found = conn.execute("SELECT count(*) FROM alert_crossings").fetchone()
            if found and found[0] >= expected:
                break
            time.sleep(1)
    rows_per_s = floor(url, "f", active, args.events, args.batch)
    say(f"floor:          {rows_per_s:,.0f} rows/s (COPY + INSERT, no folder)")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, payload->>'customer', payload->'thresholds', "
                            "extract(epoch FROM created_at) FROM alert_events").fetchall()
        doubles = conn.execute("SELECT count(*) FROM (SELECT alert_id, threshold FROM "
                               "alert_crossings GROUP BY 1, 2 HAVING count(*) > 1) t"
                               ).fetchone()
    lags: list[float] = []
    started: list[float] = []  # to the evaluation's start (created_at): the old measure
    for event_id, customer, thresholds, at in rows:
        j = int(customer.rsplit("-", 1)[1])
        for t in thresholds:
            k = int((Decimal(t) / 60).to_integral_value(rounding=ROUND_CEILING)) - 1
            lags.append(folder.commits[event_id] - committed[k * active + j])
            started.append(float(at) - committed[k * active + j])
    lags.sort()
    started.sort()
    assert lags, "no alert fired"

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))]

    turns = sorted(f + e for f, e, _ in folder.turns)
    longest = max(folder.turns, key=lambda t: t[0] + t[1])
    say(f"thresholds crossed: {len(lags):,} of {expected:,} in {len(rows):,} events "
        f"(fired twice: {doubles[0] if doubles else 0})")
    say(f"lag event row committed → alert.triggered row committed: p50 {pct(lags, 0.5):.2f} s, "
        f"p99 {pct(lags, 0.99):.2f} s, max {lags[-1]:.2f} s")
    say(f"(→ start of the evaluation that fired it: p50 {pct(started, 0.5):.2f} s, "
        f"p99 {pct(started, 0.99):.2f} s, max {started[-1]:.2f} s)")
    say(f"fold + evaluate turns: {len(turns)}, p50 {turns[len(turns) // 2]:.2f} s, "
        f"max {turns[-1]:.2f} s (fold {longest[0]:.2f} s, evaluation {longest[1]:.2f} s, "
        f"{longest[2]:,} events fired)")
    for run in (1, 3):
        beside = (rates[run - 1] + rates[run + 1]) / 2
        say(f"ingest with alerts (run {run + 1}) ÷ the mean of the runs beside it: "
            f"{rates[run] / beside:.2f}")
    say("ingest ÷ floor, runs 1-5: " + ", ".join(f"{r / rows_per_s:.0%}" for r in rates)
        + " (with alerts: runs 2 and 4)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000, help="per group")
    parser.add_argument("--active", type=int, default=2_000,
                        help="customers of a group that receive usage")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--burst", action="store_true",
                        help="time the evaluation where every active customer crosses")
    parser.add_argument("--rounds", type=int, default=5, help="bursts (with --burst)")
    parser.add_argument("--profile", action="store_true",
                        help="with --burst: cProfile of the first round's evaluation")
    args = parser.parse_args()
    n = args.subscriptions
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    prefix = os.environ.get("BENCH_DB_PREFIX", "bench_alerts_")
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    url = admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    from persistence import db, migrate
    from services import logs

    logs.configure("console", "WARNING")

    try:
        db.configure(url)
        migrate.upgrade()
        from services import catalog as catalog_service

        catalog_service.apply_document({
            "entities": [{"id": "al", "timezone": "UTC", "invoice_prefix": "AL"}],
            "meters": [{"id": "tokens", "aggregation": "sum"}],
            "plans": [{"id": "metered", "currency": "USD", "interval": "month",
                       "charges": [{"id": "tokens", "type": "usage", "meter": "tokens",
                                    "model": "unit", "unit_price": "1.00"}]}]})
        start = datetime.now(UTC).date().replace(day=1)
        after = (start + timedelta(days=32)).replace(day=1)
        groups = ("a",) if args.burst else ("a", "n")  # with alerts, and without
        with psycopg.connect(url, autocommit=True) as conn:
            for group in groups:
                conn.execute("INSERT INTO customers (id, entity_id, draft_invoices, tax_exempt) "
                             "SELECT %s || '-' || g, 'al', false, false "
                             "FROM generate_series(0, %s - 1) g", (group, n))
                conn.execute(
                    "INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, "
                    "plan_version, start, start_at, sent_at, created_at, next_k, "
                    "next_boundary, next_boundary_at) SELECT 's-' || %s || '-' || g, "
                    "%s || '-' || g, 'al', 'metered', 1, %s, %s, %s, %s, 1, %s, %s "
                    "FROM generate_series(0, %s - 1) g",
                    (group, group, start, start, start, start, after, after, n))
                conn.execute(  # what a subscribe asks for (persistence/rollups.py, horizons)
                    "INSERT INTO usage_rollup_horizons (customer_id, wanted) "
                    "SELECT %s || '-' || g, %s FROM generate_series(0, %s - 1) g",
                    (group, start, n))
            conn.execute("INSERT INTO alerts (id, customer_id, subscription_id, kind, "
                         "thresholds, recurring_step, created_at) SELECT 'al-' || g, "
                         "'a-' || g, 's-a-' || g, 'usage_amount', "
                         "'[\"100.00\", \"500.00\"]'::jsonb, 500.00, now() "
                         "FROM generate_series(0, %s - 1) g", (n,))
            conn.execute("VACUUM ANALYZE")
        active = min(args.active, n)
        if args.burst:
            say(f"{n:,} subscriptions with an alert; {args.rounds} bursts of {active:,} "
                f"customers crossing a threshold at once, batches of {args.batch}, "
                f"{args.threads} ingest threads")
            burst(args, active)
        else:
            say(f"{n:,} subscriptions with an alert, {n:,} without; {args.events:,} events "
                f"into {active:,} customers of each group, batches of {args.batch}, "
                f"{args.threads} ingest threads")
            stream(args, url, active)
    finally:
        db.engine().dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
