"""Alerts at volume (issue #26): the lag from ingest to ``alert.triggered`` with N
subscriptions that have alerts, and ingest with and without alerts, in one run.

    .venv/bin/python -m benchmarks.alerts                      # 100,000 subscriptions
    .venv/bin/python -m benchmarks.alerts --subscriptions 10000 --events 20000

It creates (and drops) a PostgreSQL database of its own (BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres), loads N customers with a subscription and a
``usage_amount`` alert each (one threshold, 100.00, at 1.00 a token) and N more customers
with a subscription and no alert, then ingests the same shape of usage for each group in
turn — ingest threads in this process calling the ingest service (what a worker's threads
do, without the broker), while a thread folds and evaluates every second as the scheduler
does. Each customer's second event crosses its threshold: the lag of an alert is from the
commit of the batch holding that event to the commit of its ``alert.triggered`` row.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from queue import Queue
from typing import Any

import psycopg

from benchmarks.bench import say

EVERY = 1.0


class Folder:
    """The scheduler's fold thread: fold, then evaluate the alerts of what was folded."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.turns: list[float] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from services import alerts, rollups

        while not self.stop.wait(EVERY):
            began = time.perf_counter()
            rollups.fold()
            alerts.evaluate_folded(datetime.now(UTC))
            self.turns.append(time.perf_counter() - began)

    def __enter__(self) -> Folder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def ingest(prefix: str, customers: int, events: int, batch: int, threads: int,
           committed: dict[str, float]) -> float:
    """``events`` events of 60 tokens over ``customers`` (round robin), in batches, by
    ``threads`` threads; events per second. ``committed``: each customer's second event's
    batch commit time (wall clock)."""
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
                if int(e["key"].rsplit("-", 1)[1]) // customers == 1:  # its second event
                    committed[e["customer"]] = done

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
    parser.add_argument("--events", type=int, default=200_000,
                        help="per group (2 per customer: every alert fires once)")
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
                         "thresholds, created_at) SELECT 'al-' || g, 'a-' || g, 's-a-' || g, "
                         "'usage_amount', '[\"100.00\"]'::jsonb, now() "
                         "FROM generate_series(0, %s - 1) g", (n,))
            conn.execute("VACUUM ANALYZE")
        say(f"{n:,} subscriptions with an alert, {n:,} without; {args.events:,} events "
            f"each, batches of {args.batch}, {args.threads} ingest threads")
        unused: dict[str, float] = {}
        committed: dict[str, float] = {}
        with Folder() as folder:
            without = ingest("n", n, args.events, args.batch, args.threads, unused)
            say(f"without alerts: {without:,.0f} events/s")
            with_alerts = ingest("a", n, args.events, args.batch, args.threads, committed)
            say(f"with alerts:    {with_alerts:,.0f} events/s; waiting for the alerts")
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                with psycopg.connect(url) as conn:
                    fired = conn.execute("SELECT count(*) FROM alert_events").fetchone()
                if fired and fired[0] >= len(committed):
                    break
                time.sleep(1)
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT payload->>'customer', extract(epoch FROM created_at) "
                                "FROM alert_events").fetchall()
            doubles = conn.execute("SELECT count(*) FROM (SELECT alert_id, threshold FROM "
                                   "alert_crossings GROUP BY 1, 2 HAVING count(*) > 1) t"
                                   ).fetchone()
        lags = sorted(float(at) - committed[c] for c, at in rows if c in committed)
        assert lags, "no alert fired"

        def pct(p: float) -> float:
            return lags[min(len(lags) - 1, int(p * len(lags)))]

        turns = sorted(folder.turns)
        say(f"alerts fired: {len(rows):,} of {len(committed):,} (fired twice: "
            f"{doubles[0] if doubles else 0})")
        say(f"lag ingest → alert.triggered: p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s, "
            f"max {lags[-1]:.2f} s")
        say(f"fold + evaluate turns: {len(turns)}, p50 {turns[len(turns) // 2]:.2f} s, "
            f"max {turns[-1]:.2f} s")
        say(f"ingest with ÷ without alerts: {with_alerts / without:.2f}")
    finally:
        db.engine().dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
