"""Alerts at volume (issue #26): the lag from ingest to ``alert.triggered`` with N
subscriptions that have alerts, and ingest with and without alerts, in one run.

    .venv/bin/python -m benchmarks.alerts                      # 100,000 subscriptions
    .venv/bin/python -m benchmarks.alerts --subscriptions 10000 --events 20000

It creates (and drops) a PostgreSQL database of its own (BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres), loads N customers with a subscription and a
``usage_amount`` alert each (100.00 and 500.00, then every 500.00, at 1.00 a token) and N
more customers with a subscription and no alert. Then it ingests the same usage — events of
60 tokens, round robin over ``--active`` customers of a group — into the group without
alerts, then into the group with them: ingest threads in this process calling the ingest
service (a worker's threads, without the broker), while a thread folds and evaluates every
second as the scheduler does. The lag of a threshold is from the commit of the batch
holding the event that crossed it to the commit of the ``alert.triggered`` that names it.
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
    from persistence import db
    from services import alerts, logs, rollups

    logs.configure("console", "WARNING")
    db.configure(url)
    while not stop.wait(EVERY):
        began = time.perf_counter()
        rollups.fold()
        folded = time.perf_counter()
        fired = alerts.evaluate_folded(datetime.now(UTC))
        turns.put((folded - began, time.perf_counter() - folded, len(fired)))


class Folder:
    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.queue: Any = context.Queue()
        self.process = context.Process(target=fold_forever, args=(url, self.stop, self.queue))
        self.turns: list[tuple[float, float, int]] = []

    def __enter__(self) -> Folder:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.process.is_alive() or not self.queue.empty():
            with contextlib.suppress(Empty):
                self.turns.append(self.queue.get(timeout=0.5))
        self.process.join()


def ingest(prefix: str, customers: int, events: int, batch: int, threads: int,
           committed: dict[int, float]) -> float:
    """``events`` events of 60 tokens over ``customers`` (round robin), in batches, by
    ``threads`` threads; events per second. ``committed``: each event's batch commit
    time (wall clock), by its number."""
    from services import usage

    now = datetime.now(UTC) - timedelta(seconds=30)
    todo: Queue[list[dict[str, Any]] | None] = Queue()
    for start in range(0, events, batch):
        todo.put([{"key": f"{prefix}-{i}", "customer": f"{prefix}-{i % customers}",
                   "meter": "tokens", "quantity": "60",
                   "timestamp": (now + timedelta(microseconds=i)).isoformat()}
                  for i in range(start, min(events, start + batch))])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000, help="per group")
    parser.add_argument("--active", type=int, default=2_000,
                        help="customers of a group that receive usage")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    n = args.subscriptions
    admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_alerts_{uuid.uuid4().hex[:8]}"
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
        with psycopg.connect(url, autocommit=True) as conn:
            for prefix in ("a", "n"):  # with alerts, and without
                conn.execute("INSERT INTO customers (id, entity_id, draft_invoices, tax_exempt) "
                             "SELECT %s || '-' || g, 'al', false, false "
                             "FROM generate_series(0, %s - 1) g", (prefix, n))
                conn.execute(
                    "INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, "
                    "plan_version, start, start_at, sent_at, created_at, next_k, "
                    "next_boundary, next_boundary_at) SELECT 's-' || %s || '-' || g, "
                    "%s || '-' || g, 'al', 'metered', 1, %s, %s, %s, %s, 1, %s, %s "
                    "FROM generate_series(0, %s - 1) g",
                    (prefix, prefix, start, start, start, start, after, after, n))
            conn.execute("INSERT INTO alerts (id, customer_id, subscription_id, kind, "
                         "thresholds, recurring_step, created_at) SELECT 'al-' || g, "
                         "'a-' || g, 's-a-' || g, 'usage_amount', "
                         "'[\"100.00\", \"500.00\"]'::jsonb, 500.00, now() "
                         "FROM generate_series(0, %s - 1) g", (n,))
            conn.execute("VACUUM ANALYZE")
        active = min(args.active, n)
        say(f"{n:,} subscriptions with an alert, {n:,} without; {args.events:,} events into "
            f"{active:,} customers of each group, batches of {args.batch}, {args.threads} "
            "ingest threads")
        ignored: dict[int, float] = {}
        committed: dict[int, float] = {}
        ingest("w", active, 5 * args.batch, args.batch, args.threads, ignored)  # warm-up
        with Folder(url) as folder:
            without = ingest("n", active, args.events, args.batch, args.threads, ignored)
            say(f"without alerts: {without:,.0f} events/s")
            with_alerts = ingest("a", active, args.events, args.batch, args.threads,
                                 committed)
            say(f"with alerts:    {with_alerts:,.0f} events/s")
            again = ingest("n2", active, args.events, args.batch, args.threads, ignored)
            say(f"without again:  {again:,.0f} events/s; waiting for the alerts")
            from domain.alerts import Thresholds

            of = Thresholds((Decimal(100), Decimal(500)), Decimal(500))
            total = Decimal(60) * (args.events // active)
            expected = len(of.up_to(total)) * active
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                with psycopg.connect(url) as conn:
                    found = conn.execute("SELECT count(*) FROM alert_crossings").fetchone()
                if found and found[0] >= expected:
                    break
                time.sleep(1)
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT payload->>'customer', payload->'thresholds', "
                                "extract(epoch FROM created_at) FROM alert_events").fetchall()
            doubles = conn.execute("SELECT count(*) FROM (SELECT alert_id, threshold FROM "
                                   "alert_crossings GROUP BY 1, 2 HAVING count(*) > 1) t"
                                   ).fetchone()
        lags = []
        for customer, thresholds, at in rows:
            j = int(customer.rsplit("-", 1)[1])
            for t in thresholds:
                k = int((Decimal(t) / 60).to_integral_value(rounding=ROUND_CEILING)) - 1
                lags.append(float(at) - committed[k * active + j])
        lags.sort()
        assert lags, "no alert fired"

        def pct(p: float) -> float:
            return lags[min(len(lags) - 1, int(p * len(lags)))]

        turns = sorted(f + e for f, e, _ in folder.turns)
        longest = max(folder.turns, key=lambda t: t[0] + t[1])
        say(f"thresholds crossed: {len(lags):,} of {expected:,} in {len(rows):,} events "
            f"(fired twice: {doubles[0] if doubles else 0})")
        say(f"lag ingest → alert.triggered: p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s, "
            f"max {lags[-1]:.2f} s")
        say(f"fold + evaluate turns: {len(turns)}, p50 {turns[len(turns) // 2]:.2f} s, "
            f"max {turns[-1]:.2f} s (fold {longest[0]:.2f} s, evaluation {longest[1]:.2f} s, "
            f"{longest[2]:,} events fired)")
        say(f"ingest with ÷ without alerts: {with_alerts / without:.2f} "
            f"(÷ the run after: {with_alerts / again:.2f})")
    finally:
        db.engine().dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
