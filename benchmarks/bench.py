"""The benchmark: ingest, its naive baseline and its floor, a bill run at volume, a replay.

    .venv/bin/python -m benchmarks.bench            # the full run (about 15 minutes)
    .venv/bin/python -m benchmarks.bench --quick    # a smaller run, to try it out
    .venv/bin/python -m benchmarks.bench --baseline main --only ingest floor
                                          # the same measures at main, interleaved, ratios

It uses this machine's PostgreSQL (BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres, where it creates and drops a database of its
own, named BENCH_DB_PREFIX + a random suffix) and Redis (BENCH_REDIS_URL, under a key
prefix of its own), starts the Procfile's worker processes itself, and prints a table. It
is a script, not a test: run it on a quiet machine and copy the table into
docs/performance.md. Before a change to ingest, the bill run or the portal lands, run it
with --baseline (benchmarks/baseline.py) against the commit it starts from.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from benchmarks.events import CUSTOMERS, distinct, events
from services import alerts as alerts_service
from services import rollups as rollups_service
from workers.broker import delete_namespace

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DRAMATIQ = str(Path(sys.executable).with_name("dramatiq"))
BILLING = str(Path(sys.executable).with_name("billing"))
console = Console(stderr=True)


def say(text: str) -> None:
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {text}", highlight=False)


class Folding:
    """A thread folding the rollups every second, as the scheduler process does."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.stop = threading.Event()
        self.events = self.folds = 0
        self.longest = 0.0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while self.every > 0 and not self.stop.wait(self.every):
            began = time.perf_counter()
            self.events += rollups_service.fold().events
            alerts_service.evaluate_folded(datetime.now(UTC))  # no alerts here: a no-op
            self.longest = max(self.longest, time.perf_counter() - began)
            self.folds += 1

    def __enter__(self) -> Folding:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.control: float | None = None  # run 4b', once measured
        admin = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.admin_url = admin
        prefix = os.environ.get("BENCH_DB_PREFIX", "billing_bench_")
        self.name = f"{prefix}{uuid.uuid4().hex[:8]}"
        self.url = admin.rsplit("/", 1)[0] + "/" + self.name
        self.redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        self.namespace = f"billing-bench-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ, "BILLING_DATABASE_URL": self.url, "BILLING_REDIS_URL": self.redis_url,
            "BILLING_QUEUE_NAMESPACE": self.namespace, "BILLING_PROMETHEUS": "false",
            "BILLING_LOG_FORMAT": "json", "BILLING_LOG_LEVEL": "WARNING",
            "BILLING_DELIVERY_CHANNEL": "none",  # issuing is measured here, not delivery
            "PYTHONPATH": str(ROOT),
        }
        self.results: list[tuple[str, str, str]] = []

    # -- setup ------------------------------------------------------------------------
    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def create(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("BILLING_")})
        from persistence import db, migrate

        db.configure(self.url)
        migrate.upgrade()
        self.catalog()

    def catalog(self) -> None:
        from services import catalog as catalog_service

        customers = [{"id": f"c-{i}", "entity": "ingest"} for i in range(CUSTOMERS)]
        customers += [{"id": f"bc-{i}", "entity": "bill"}
                      for i in range(self.args.subscriptions)]
        catalog_service.apply_document({
            "entities": [{"id": "ingest", "timezone": "UTC"},
                         {"id": "bill", "timezone": "UTC", "invoice_prefix": "BILL"}],
            "meters": [{"id": "tokens", "aggregation": "sum"}],
            "plans": [{"id": "metered", "currency": "USD", "interval": "month",
                       "charges": [{"id": "tokens", "type": "usage", "meter": "tokens",
                                    "model": "unit", "unit_price": "0.000002"}]}],
            "customers": customers,
        })

    def drop(self) -> None:
        from persistence import db

        if db.is_configured():
            db.engine().dispose()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        delete_namespace(self.redis_url, self.namespace)

    # -- processes ----------------------------------------------------------------------
    @contextmanager
    def workers(self, module: str = "workers.worker") -> Iterator[list[int]]:
        """The Procfile's worker: dramatiq, 2 processes × N threads."""
        proc = subprocess.Popen(
            [DRAMATIQ, module, "--queues", "billing", "--processes", "2",
             "--threads", str(self.args.threads)],
            env=self.env, cwd=ROOT, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)  # boot
            yield [proc.pid]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def cpu_seconds(self, master: int) -> dict[str, float]:
        """CPU seconds (user + system) so far of each worker process under ``master`` and of
        each PostgreSQL backend connected to the benchmark's database (but this query's):
        what a measure cost in CPU, which a busy machine inflates far less than wall time."""
        pids = [int(row[0]) for row in self.sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
        found: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry.name)
            if stat[1] == str(master) or pid == master:
                found[f"worker {pid}"] = (int(stat[11]) + int(stat[12])) / tick
            elif pid in pids:
                found[f"postgres {pid}"] = (int(stat[11]) + int(stat[12])) / tick
        return found

    @staticmethod
    def worker_memory(master: int) -> tuple[float, float]:
        """(current RSS, peak RSS) in MiB of the worker processes under ``master``."""
        rss = hwm = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("PPid", "").strip() == str(master):
                rss = max(rss, int(fields["VmRSS"].split()[0]) / 1024)
                hwm = max(hwm, int(fields["VmHWM"].split()[0]) / 1024)
        return rss, hwm

    def produce(self, count: int, prefix: str, naive: bool = False) -> subprocess.Popen[str]:
        cmd = [PYTHON, "-m", "benchmarks.producer", "--events", str(count), "--prefix", prefix,
               "--batch", str(self.args.batch)]
        if naive:
            cmd.append("--naive")
        producer = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=subprocess.PIPE,
                                    stdin=subprocess.PIPE, text=True)
        assert producer.stdout is not None
        producer.stdout.readline()  # {"ready": true}: its events are generated
        return producer

    @staticmethod
    def go(producer: subprocess.Popen[str]) -> dict[str, Any]:
        out, _ = producer.communicate("go\n", timeout=3600)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float,
                 on_poll: Callable[[], None] | None = None) -> None:
        """Poll ``done`` (a cheap query) twice a second."""
        deadline = time.monotonic() + timeout
        while not done():
            if on_poll:
                on_poll()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
            time.sleep(0.5)

    # -- 1. ingest ----------------------------------------------------------------------
    def ingest(self) -> float:
        n = self.args.events
        expected = distinct(n)
        say(f"ingest: {n:,} events ({n - expected:,} re-sends) through 2 worker processes")
        samples: dict[int, float] = {}
        producer = self.produce(n, "e")
        folding = Folding(self.args.fold_seconds)  # what the scheduler process does meanwhile
        with self.workers() as (master,), folding:
            cpu_before = self.cpu_seconds(master)
            started = time.perf_counter()

            def stored() -> int:
                query = "SELECT count(*) FROM usage_events WHERE key LIKE 'e-%%'"
                return int(self.sql(query)[0][0])

            def poll() -> None:  # cheap: batches, not events, are counted while it runs
                done = int(self.sql("SELECT count(*) FROM ingest_batches")[0][0])
                progress = done * self.args.batch * 100 // n
                for mark in (25, 50, 75):
                    if progress >= mark and mark not in samples:
                        samples[mark] = self.worker_memory(master)[0]

            sent = self.go(producer)
            messages = sent["messages"]
            say(f"  producer sent {messages:,} messages in {sent['seconds']:.1f} s")

            def finished() -> bool:
                batches = self.sql("SELECT count(*), coalesce(sum(accepted), 0), "
                                   "coalesce(sum(duplicate), 0) FROM ingest_batches")[0]
                return int(batches[0]) >= messages

            self.wait_for("ingest", finished, 3600, poll)
            seconds = time.perf_counter() - started
            samples[100], peak = self.worker_memory(master)
            cpu_after = self.cpu_seconds(master)
        spent = {kind: sum(v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()
                           if k.startswith(kind)) for kind in ("worker", "postgres")}
        last = time.perf_counter()
        tail = rollups_service.fold()
        last = time.perf_counter() - last
        accepted, duplicate = self.sql(
            "SELECT sum(accepted), sum(duplicate) FROM ingest_batches")[0]
        assert int(accepted) == expected and int(duplicate) == n - expected, (
            f"exactly-once broken: accepted {accepted}, duplicate {duplicate}")
        assert stored() == expected
        rate = n / seconds
        self.results.append(("1. ingest, end to end (producer → Redis → 2 workers → PG)",
                             f"{rate:,.0f} events/s", f"{n:,} events in {seconds:.1f} s; "
                             f"stored exactly once ({expected:,} accepted, "
                             f"{n - expected:,} duplicates)"))
        memory = ", ".join(f"{k}%: {v:.0f}" for k, v in sorted(samples.items()))
        self.results.append(("   worker memory (RSS MiB per process)", f"peak {peak:.0f} MiB",
                             f"at {memory}"))
        self.results.append(("   CPU per 1,000 events: workers / PostgreSQL",
                             f"{spent['worker'] * 1e6 / n:.1f} / "
                             f"{spent['postgres'] * 1e6 / n:.1f} ms",
                             "user + system time of the 2 worker processes, and of the "
                             "database's backends (the folder's included)"))
        self.results.append(("   rollups folded meanwhile, every second",
                             f"{folding.events:,} events",
                             f"{folding.folds} folds, the longest {folding.longest:.2f} s; "
                             f"then {tail.events:,} events left, folded in {last:.2f} s"))
        return rate

    # -- 2. naive baseline ------------------------------------------------------------------
    def naive(self) -> float:
        n = self.args.naive_events
        say(f"naive: {n:,} events, one message and one ORM insert per event")
        producer = self.produce(n, "n", naive=True)
        with self.workers("benchmarks.naive"):
            started = time.perf_counter()
            self.go(producer)
            expected = distinct(n)
            self.wait_for("naive", lambda: int(self.sql(
                "SELECT count(*) FROM usage_events WHERE key LIKE 'n-%%'")[0][0]) >= expected,
                3600)  # (the naive path is slow enough that counting rows does not matter)
            seconds = time.perf_counter() - started
        rate = n / seconds
        self.results.append(("2. naive baseline (1 message + 1 ORM insert per event)",
                             f"{rate:,.0f} events/s", f"{n:,} of the same kind of events "
                             f"in {seconds:.1f} s"))
        return rate

    # -- 3. floor -----------------------------------------------------------------------
    def floor(self) -> float:
        n = self.args.events
        say(f"floor: {n:,} rows by COPY + INSERT … ON CONFLICT DO NOTHING, no broker")
        rows = [(e["key"].replace("e-", "f-"), e["customer"], e["meter"], e["quantity"],
                 e["timestamp"], datetime.now(UTC)) for e in events(n, "e")]
        with psycopg.connect(self.url) as conn:
            started = time.perf_counter()
            for start in range(0, n, 1000):
                with conn.cursor() as cur:
                    cur.execute("CREATE TEMP TABLE IF NOT EXISTS stage (key text, customer_id "
                                "text, meter_id text, quantity numeric, ts timestamptz, "
                                "ingested_at timestamptz) ON COMMIT DELETE ROWS")
                    with cur.copy("COPY stage FROM STDIN") as copy:
                        for row in rows[start:start + 1000]:
                            copy.write_row(row)
                    # the rows ingest writes, with a batch number drawn once per batch
                    cur.execute("INSERT INTO usage_events (key, customer_id, meter_id, quantity,"
                                " timestamp, ingested_at, batch_seq) SELECT key, customer_id, "
                                "meter_id, quantity, ts, ingested_at, "
                                "(SELECT nextval('usage_batch_seq')) FROM stage "
                                "ON CONFLICT (key) DO NOTHING")
                conn.commit()
            seconds = time.perf_counter() - started
        rate = n / seconds
        self.results.append(("3. floor (COPY + INSERT ON CONFLICT, batches of 1,000)",
                             f"{rate:,.0f} rows/s", f"{n:,} rows in {seconds:.1f} s"))
        return rate

    def timed_run(self, entity: str, day: date, numbered: int,
                  sample: Callable[[int, int], None] | None = None) -> float:
        """Seconds from the scheduler's tick for ``entity``'s run of ``day`` to its
        ``numbered``-th numbered invoice, with the Procfile's workers. ``sample(master,
        percent)`` is called while it runs and once at 100 %. Then, not measured, the run's
        deliveries finish (a day passes between two runs), so that the next measure does
        not carry them."""
        from scheduler.tick import tick

        def issued() -> int:
            return int(self.sql("SELECT count(*) FROM invoices WHERE entity_id = %s "
                                "AND number IS NOT NULL", entity)[0][0])

        with self.workers() as (master,):
            started = time.perf_counter()
            claimed = tick(datetime(day.year, day.month, day.day, 9, tzinfo=UTC), [entity])
            assert claimed == [(entity, day)], claimed
            poll = (lambda: sample(master, issued() * 100 // numbered)) if sample else None
            self.wait_for(f"{entity} run", lambda: issued() >= numbered, 3600, poll)
            seconds = time.perf_counter() - started
            if sample:
                sample(master, 100)
            self.wait_for("deliveries", lambda: int(self.sql(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0]) == 0, 3600)
        return seconds

    # -- 4. bill run --------------------------------------------------------------------
    def load_month(self, prefix: str, first: str, days: int, subs: int, n: int,
                   customers: tuple[str, ...] = ("bc-",)) -> None:
        """``n`` events over the ``days`` from ``first`` for each group of ``subs``
        customers, straight into the table (index rebuilt, then analysed): data, not the
        measure."""
        self.sql("DROP INDEX ix_usage_customer_meter_ts")
        for customer in customers:
            self.sql("INSERT INTO usage_events (key, customer_id, meter_id, quantity, "
                     "timestamp, ingested_at) SELECT %s || '-' || g, %s || (g %% %s), "
                     "'tokens', (g %% 1000)::numeric / 10, %s::timestamptz + (g %% %s) "
                     "* interval '1 second', %s::timestamptz + interval '1 day' * (%s - 1) "
                     "FROM generate_series(1, %s) g", prefix + customer, customer, subs, first,
                     days * 86400, first, days, n)
        self.sql("CREATE INDEX ix_usage_customer_meter_ts ON usage_events "
                 "(customer_id, meter_id, timestamp)")
        self.sql("VACUUM ANALYZE usage_events")

    def bill_run(self) -> tuple[float, float]:
        subs, n = self.args.subscriptions, self.args.bill_events
        say(f"bill run: {subs:,} subscriptions, {n:,} usage events in the closing period")
        self.sql("INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, plan_version, "
                 "start, start_at, sent_at, created_at, next_k, next_boundary, "
                 "next_boundary_at) SELECT 'bs-' || g, 'bc-' || g, 'bill', 'metered', 1, "
                 "'2026-10-01', '2026-10-01T00:00:00Z', '2026-09-01T00:00:00Z', "
                 "'2026-09-01T00:00:00Z', 1, '2026-11-01', '2026-11-01T00:00:00Z' "
                 "FROM generate_series(0, %s - 1) g", subs)
        loading = time.perf_counter()
        self.load_month("b", "2026-10-01", 31, subs, n)
        say(f"  loaded in {time.perf_counter() - loading:.0f} s")
        started = time.perf_counter()
        plain = self.sql("SELECT count(*) FROM (SELECT customer_id, meter_id, sum(quantity) "
                         "FROM usage_events WHERE meter_id = 'tokens' AND timestamp >= "
                         "'2026-10-01T00:00:00Z' AND timestamp < '2026-11-01T00:00:00Z' "
                         "AND customer_id LIKE 'bc-%%' GROUP BY 1, 2) t")
        group_by = time.perf_counter() - started
        assert int(plain[0][0]) == subs
        from dramatiq.brokers.redis import RedisBroker  # noqa: F401  (the env picks Redis)

        from services.settings import Settings
        from workers.broker import redis_broker, use

        use(redis_broker(Settings()))
        seconds = self.timed_run("bill", date(2026, 11, 1), subs)
        numbers = self.sql("SELECT count(DISTINCT number), min(number), max(number), "
                           "sum(total) FROM invoices WHERE entity_id = 'bill'")[0]
        assert int(numbers[0]) == subs and numbers[2] == f"BILL-{subs:06d}", numbers
        expected_total = self.sql(
            "SELECT sum(round(s * 0.000002, 2)) FROM (SELECT sum(quantity) s FROM usage_events "
            "WHERE customer_id LIKE 'bc-%%' GROUP BY customer_id) t")[0][0]
        assert numbers[3] == expected_total, (numbers[3], expected_total)
        self.results.append(("4. bill run (tick → last invoice stored and numbered)",
                             f"{seconds:.1f} s", f"{subs:,} invoices over {n:,} events; "
                             f"plain GROUP BY over the same rows: {group_by:.1f} s "
                             f"(×{seconds / group_by:.1f})"))
        return seconds, group_by

    # -- 4b. the next bill run, with 1 % late usage ----------------------------------------
    def late_run(self, plain_seconds: float) -> float:
        """After the November run: 1 % of October's events arrive late (ingested like any
        usage, so they are flagged late), November's closing period is loaded like
        October's, and the December run issues every invoice with its adjustment lines."""
        from persistence.db import unit_of_work
        from services.usage import ingest

        subs, n = self.args.subscriptions, self.args.bill_events
        late = n // 100
        say(f"late run: {late:,} late October events, then the December run over {n:,} "
            "November events")
        now = datetime(2026, 11, 5, tzinfo=UTC)
        for offset in range(0, late, 5000):
            rows = [{"key": f"late-{i}", "customer": f"bc-{i % subs}", "meter": "tokens",
                     "quantity": "75000", "timestamp": (datetime(2026, 10, 2, tzinfo=UTC)
                                                      + timedelta(seconds=i)).isoformat()}
                    for i in range(offset, min(offset + 5000, late))]
            with unit_of_work() as session:
                ingest(session, rows, now, f"late-{offset}")
        flagged = int(self.sql("SELECT count(*) FROM late_usage")[0][0])
        assert flagged == late, f"{flagged} of {late} late events were flagged late"
        # the control: another entity's 10,000 subscriptions in the same state (October
        # invoiced) without late usage, the same number of November events, the same table
        self.sql("INSERT INTO entities (id, timezone, invoice_prefix) "
                 "VALUES ('ctrl', 'UTC', 'CTRL')")
        self.sql("INSERT INTO customers (id, entity_id, draft_invoices) "
                 "SELECT 'cc-' || g, 'ctrl', false FROM generate_series(0, %s - 1) g", subs)
        self.sql("INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, plan_version, "
                 "start, start_at, sent_at, created_at, next_k, next_boundary, "
                 "next_boundary_at, closed_until_at) SELECT 'cs-' || g, 'cc-' || g, 'ctrl', "
                 "'metered', 1, '2026-10-01', '2026-10-01T00:00:00Z', '2026-09-01T00:00:00Z', "
                 "'2026-09-01T00:00:00Z', 2, '2026-12-01', '2026-12-01T00:00:00Z', "
                 "'2026-10-01T00:00:00Z' FROM generate_series(0, %s - 1) g", subs)
        self.sql("INSERT INTO invoices (subscription_id, boundary, plan_version, entity_id, "
                 "customer_id, currency, status, number, final, issued_at, computed_at, "
                 "sent_at, subtotal, discount, total) SELECT 'cs-' || g, '2026-11-01', 1, "
                 "'ctrl', 'cc-' || g, 'USD', 'sent', 'CTRL-' || lpad((g + 1)::text, 6, '0'), "
                 "false, '2026-11-01T08:15:00Z', '2026-11-01T08:15:00Z', "
                 "'2026-11-01T08:15:00Z', 1, 0, 1 FROM generate_series(0, %s - 1) g", subs)
        self.sql("INSERT INTO invoice_lines (invoice_id, type, charge_id, period_start, "
                 "period_end, quantity, amount) SELECT id, 'usage', 'tokens', '2026-10-01', "
                 "'2026-11-01', 500000, 1 FROM invoices WHERE entity_id = 'ctrl'")
        self.sql("INSERT INTO invoice_counters (entity_id, last_number) VALUES ('ctrl', %s)",
                 subs)
        self.load_month("n", "2026-11-01", 30, subs, n, customers=("bc-", "cc-"))
        control = self.timed_run("ctrl", date(2026, 12, 1), 2 * subs)
        self.results.append(("4b'. the same December run without late usage (control)",
                             f"{control:.1f} s", f"{subs:,} invoices, same table and "
                             "November events"))
        seconds = self.timed_run("bill", date(2026, 12, 1), 2 * subs)
        adjusted = int(self.sql("SELECT count(DISTINCT invoice_id) FROM invoice_lines "
                                "WHERE type = 'adjustment'")[0][0])
        accounted = int(self.sql("SELECT count(*) FROM late_usage "
                                 "WHERE accounted_by IS NOT NULL")[0][0])
        assert accounted == late, f"{accounted} of {late} late events billed"
        self.results.append(("4b. the next bill run, 1 % of the last period's events late",
                             f"{seconds:.1f} s", f"{adjusted:,} invoices with an adjustment "
                             f"line; ×{seconds / control:.2f} the same run without late "
                             f"usage (target ≤ ×1.3), ×{seconds / plain_seconds:.2f} run 4"))
        self.control = control
        return seconds

    # -- 4c. the same run with two years of history behind it ---------------------------
    def history_run(self, plain_seconds: float, control: float | None = None) -> float:
        """Another entity's 10,000 subscriptions, started two years earlier: 24 sent invoices
        each (240,000, with their lines) and 24 months of usage behind them, then the same
        closing period as run 4 (its own 10,000,000 events). A run reads each subscription's
        next boundary, never its history: it should cost what run 4 cost."""

        subs, n = self.args.subscriptions, self.args.bill_events
        past = n // 4  # 24 months of older usage: a quarter of a closing period's events
        say(f"history run: {subs:,} subscriptions with 24 invoices each and {past:,} older "
            f"events behind them, then {n:,} events in the closing period")
        self.sql("INSERT INTO entities (id, timezone, invoice_prefix) "
                 "VALUES ('hist', 'UTC', 'HIST')")
        self.sql("INSERT INTO customers (id, entity_id, draft_invoices) "
                 "SELECT 'hc-' || g, 'hist', false FROM generate_series(0, %s - 1) g", subs)
        self.sql("INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, plan_version, "
                 "start, start_at, sent_at, created_at, next_k, next_boundary, "
                 "next_boundary_at, closed_until_at) SELECT 'hs-' || g, 'hc-' || g, 'hist', "
                 "'metered', 1, '2024-10-01', '2024-10-01T00:00:00Z', "
                 "'2024-09-01T00:00:00Z', '2024-09-01T00:00:00Z', 25, '2026-11-01', "
                 "'2026-11-01T00:00:00Z', '2026-09-01T00:00:00Z' "
                 "FROM generate_series(0, %s - 1) g", subs)
        self.sql("INSERT INTO invoices (subscription_id, boundary, plan_version, entity_id, "
                 "customer_id, currency, status, number, final, issued_at, computed_at, "
                 "sent_at, subtotal, discount, total) SELECT 'hs-' || g, "
                 "('2024-10-01'::date + k * interval '1 month')::date, 1, 'hist', 'hc-' || g, "
                 "'USD', 'sent', 'HIST-' || lpad(((k - 1) * %s + g + 1)::text, 6, '0'), false, "
                 "b, b, b, 1, 0, 1 FROM generate_series(0, %s - 1) g, "
                 "generate_series(1, 24) k, LATERAL (SELECT '2024-10-01'::timestamptz "
                 "+ k * interval '1 month' + interval '8 hours 15 minutes' AS b) t", subs, subs)
        self.sql("INSERT INTO invoice_lines (invoice_id, type, charge_id, period_start, "
                 "period_end, quantity, amount) SELECT id, 'usage', 'tokens', "
                 "(boundary - interval '1 month')::date, boundary, 500000, 1 FROM invoices "
                 "WHERE entity_id = 'hist'")
        self.sql("INSERT INTO invoice_counters (entity_id, last_number) "
                 "VALUES ('hist', %s)", 24 * subs)
        self.sql("DROP INDEX ix_usage_customer_meter_ts")
        self.sql("INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
                 "ingested_at) SELECT 'ho-' || g, 'hc-' || (g %% %s), 'tokens', "
                 "(g %% 1000)::numeric / 10, '2024-10-01'::timestamptz + (g %% (730 * 86400)) "
                 "* interval '1 second', '2026-09-01'::timestamptz FROM generate_series(1, %s) g",
                 subs, past)
        self.sql("INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
                 "ingested_at) SELECT 'hn-' || g, 'hc-' || (g %% %s), 'tokens', "
                 "(g %% 1000)::numeric / 10, '2026-10-01'::timestamptz + (g %% (31 * 86400)) "
                 "* interval '1 second', '2026-10-31'::timestamptz FROM generate_series(1, %s) g",
                 subs, n)
        self.sql("CREATE INDEX ix_usage_customer_meter_ts ON usage_events "
                 "(customer_id, meter_id, timestamp)")
        self.sql("VACUUM ANALYZE")
        seconds = self.timed_run("hist", date(2026, 11, 1), 25 * subs)
        last = self.sql("SELECT max(number) FROM invoices WHERE entity_id = 'hist'")[0][0]
        assert last == f"HIST-{25 * subs:06d}", last
        self.results.append(("4c. the same run with two years of history behind it",
                             f"{seconds:.1f} s", f"{subs:,} invoices; {24 * subs:,} older "
                             f"invoices and {past:,} older events in the tables; "
                             f"×{seconds / plain_seconds:.2f} run 4"
                             + (f", ×{seconds / control:.2f} run 4b' (a table of about the "
                                "same size)" if control else "") + " (target ≤ ×1.2)"))
        return seconds

    # -- 4d. one entity with ten times the subscriptions ---------------------------------
    def big_run(self, plain_seconds: float) -> float:
        """One entity with 100,000 subscriptions over the same 10,000,000 events (100 each):
        the run fans out 400 chunks; its time beside run 4's, and the workers' memory."""

        subs, n = self.args.subscriptions * 10, self.args.bill_events
        say(f"big run: one entity, {subs:,} subscriptions, {n:,} events")
        self.sql("INSERT INTO entities (id, timezone, invoice_prefix) VALUES ('big', 'UTC', "
                 "'BIG')")
        self.sql("INSERT INTO customers (id, entity_id, draft_invoices) "
                 "SELECT 'xc-' || g, 'big', false FROM generate_series(0, %s - 1) g", subs)
        self.sql("INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, plan_version, "
                 "start, start_at, sent_at, created_at, next_k, next_boundary, "
                 "next_boundary_at) SELECT 'xs-' || g, 'xc-' || g, 'big', 'metered', 1, "
                 "'2026-10-01', '2026-10-01T00:00:00Z', '2026-09-01T00:00:00Z', "
                 "'2026-09-01T00:00:00Z', 1, '2026-11-01', '2026-11-01T00:00:00Z' "
                 "FROM generate_series(0, %s - 1) g", subs)
        self.sql("DROP INDEX ix_usage_customer_meter_ts")
        self.sql("INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
                 "ingested_at) SELECT 'x-' || g, 'xc-' || (g %% %s), 'tokens', "
                 "(g %% 1000)::numeric / 10, '2026-10-01'::timestamptz + (g %% (31 * 86400)) "
                 "* interval '1 second', '2026-10-31'::timestamptz FROM generate_series(1, %s) g",
                 subs, n)
        self.sql("CREATE INDEX ix_usage_customer_meter_ts ON usage_events "
                 "(customer_id, meter_id, timestamp)")
        self.sql("VACUUM ANALYZE")
        samples: dict[int, float] = {}
        peak = 0.0

        def sample(master: int, progress: int) -> None:
            nonlocal peak
            for mark in (25, 50, 75, 100):
                if progress >= mark and mark not in samples:
                    samples[mark], peak = self.worker_memory(master)

        seconds = self.timed_run("big", date(2026, 11, 1), subs, sample)
        last = self.sql("SELECT max(number) FROM invoices WHERE entity_id = 'big'")[0][0]
        assert last == f"BIG-{subs:06d}", last
        memory = ", ".join(f"{m}%: {samples[m]:.0f}" for m in sorted(samples))
        self.results.append((f"4d. one entity, {subs:,} subscriptions, {n:,} events",
                             f"{seconds:.1f} s", f"×{seconds / plain_seconds:.1f} the "
                             f"{self.args.subscriptions:,}-subscription run (target ≤ ×10); "
                             f"worker RSS MiB at {memory}; peak {peak:.0f}"))
        return seconds

    # -- 7. the scheduler ---------------------------------------------------------------
    def scheduler(self) -> None:
        """N entities spread over every IANA zone, the real scheduler (its heap, claims,
        sends to Redis, beats) driven through a simulated day: each wake starts at the
        instant its runs are due, so what a due entity waits past its 08:15 is at most
        that wake's duration. Then a restart after three days down."""
        import zoneinfo

        from scheduler import run_times
        from scheduler.loop import Scheduler
        from services.settings import Settings
        from workers.broker import redis_broker, use

        n = self.args.entities
        zones = sorted(zoneinfo.available_timezones())
        say(f"scheduler: {n:,} entities over {len(zones)} zones, a simulated day")
        self.sql("INSERT INTO entities (id, timezone, invoice_prefix) SELECT 'se-' || g, "
                 "(%s::text[])[1 + g %% %s], 'S' FROM generate_series(0, %s - 1) g",
                 zones, len(zones), n)
        self.sql("INSERT INTO catalog_revision (id, revision) VALUES (1, 1) ON CONFLICT (id) "
                 "DO UPDATE SET revision = catalog_revision.revision + 1")
        use(redis_broker(Settings()))
        start = datetime(2026, 3, 28, 0, 0, tzinfo=UTC)  # Europe's DST change on the 29th
        scheduler = Scheduler("bench")
        begun = time.perf_counter()
        scheduler.wake(start)  # the first wake schedules (and claims) every entity
        first = time.perf_counter() - begun
        self.sql("UPDATE bill_runs SET status = 'done'")  # the workers' part, not measured
        lags: list[float] = []  # per entity: the duration of the wake that sent its run
        wakes: list[tuple[int, float]] = []
        now = start
        while True:
            coming = scheduler.schedule.next()
            assert coming is not None
            if coming.run_at >= start + timedelta(days=1):
                break
            now = coming.run_at
            began = time.perf_counter()
            due_before = len(lags)
            scheduler.wake(now)
            seconds = time.perf_counter() - began
            sent = int(self.sql("SELECT count(*) FROM bill_runs WHERE status = 'sent'")[0][0])
            lags.extend([seconds] * sent)
            wakes.append((len(lags) - due_before, seconds))
            self.sql("UPDATE bill_runs SET status = 'done' WHERE status = 'sent'")
        idle_began = time.perf_counter()
        for i in range(20):  # wakes with nothing due (every BILLING_TICK_SECONDS)
            scheduler.wake(now + timedelta(milliseconds=i + 1))
        idle = (time.perf_counter() - idle_began) / 20
        lags.sort()
        p99 = lags[int(len(lags) * 0.99) - 1] if lags else 0.0
        per_entity = sum(s for _, s in wakes) / max(1, len(lags))
        biggest = max(wakes)
        self.results.append(("7. scheduler: one simulated day, N entities over all zones",
                             f"p99 {p99 * 1000:.0f} ms", f"{n:,} entities, {len(lags):,} runs "
                             f"sent in {len(wakes):,} wakes; the largest wake ({biggest[0]:,} "
                             f"runs due at once) {biggest[1] * 1000:.0f} ms; per due run "
                             f"{per_entity * 1e6:.0f} µs; a wake with nothing due "
                             f"{idle * 1000:.1f} ms; target p99 ≤ 1 s"))
        # the scheduler is down for three days, then starts again
        back = now + timedelta(days=3)
        restarted = Scheduler("restarted")
        began = time.perf_counter()
        restarted.wake(back)
        seconds = time.perf_counter() - began
        claims = self.sql("SELECT entity_id, local_date, run_at FROM bill_runs "
                          "WHERE claimed_at = %s AND entity_id LIKE 'se-%%'", back)
        tz_of = dict(self.sql("SELECT id, timezone FROM entities WHERE id LIKE 'se-%%'"))
        assert len(claims) == n == len({e for e, _, _ in claims}), "not once per entity"
        for entity, day, at in claims:
            tz = tz_of[entity]
            assert day == run_times.latest_due(back, tz), (entity, day)
            assert at == run_times.run_instant(day, tz), (entity, at)
        self.results.append(("7b. scheduler restarted after three days down",
                             f"{seconds:.1f} s", f"{n:,} entities caught up with one run "
                             f"each, at its latest date's 08:15 (checked); first start "
                             f"{first:.1f} s"))

    # -- 5. replay ----------------------------------------------------------------------
    def replay(self) -> float:
        path = Path("/tmp") / f"{self.namespace}-replay.yaml"
        path.write_text(two_year_scenario())
        say("replay: a 2-year scenario with daily bill runs, on the embedded default")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        started = time.perf_counter()
        done = subprocess.run([BILLING, "replay", str(path), "--out", str(path) + ".json"],
                              env=env, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        invoices = len(json.loads(Path(str(path) + ".json").read_text())["invoices"])
        path.unlink()
        Path(str(path) + ".json").unlink()
        self.results.append(("5. replay, 2 years of daily bill runs (SQLite, in-process)",
                             f"{seconds:.1f} s", f"2 entities, 730 days × 2 runs, "
                             f"{invoices} invoices"))
        return seconds

    # -- 1b. ingest over HTTP ------------------------------------------------------------
    def http(self) -> float:
        """The same events through the front door: the Python client (4 sender threads)
        → the web process → Redis → the 2 worker processes → PostgreSQL."""
        from services import api_keys

        n = self.args.events
        expected = distinct(n)
        _, key = api_keys.create(f"bench-{uuid.uuid4().hex[:6]}", datetime.now(UTC))
        port = free_port()
        say(f"http: {n:,} events ({n - expected:,} re-sends) client → web → Redis → workers")
        web = subprocess.Popen([PYTHON, "-m", "web"], cwd=ROOT, start_new_session=True,
                               env={**self.env, "PORT": str(port), "HOST": "127.0.0.1",
                                    "BILLING_BROKER_URL": self.redis_url},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import httpx

            self.wait_for("web", lambda: _answers(f"http://127.0.0.1:{port}/healthz", httpx),
                          60)
            before = int(self.sql("SELECT count(*) FROM ingest_batches")[0][0])
            cmd = [PYTHON, "-m", "benchmarks.producer", "--events", str(n), "--prefix", "h",
                   "--batch", str(self.args.batch), "--http", f"http://127.0.0.1:{port}",
                   "--key", key]
            producer = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=subprocess.PIPE,
                                        stdin=subprocess.PIPE, text=True)
            assert producer.stdout is not None
            producer.stdout.readline()
            with self.workers():
                started = time.perf_counter()
                sent = self.go(producer)
                messages = sent["messages"]
                say(f"  the client sent {messages:,} requests in {sent['seconds']:.1f} s")
                self.wait_for("http ingest", lambda: int(self.sql(
                    "SELECT count(*) FROM ingest_batches")[0][0]) - before >= messages, 3600)
                seconds = time.perf_counter() - started
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(30)
        stored = int(self.sql("SELECT count(*) FROM usage_events WHERE key LIKE 'h-%%'")[0][0])
        assert stored == expected, f"exactly-once broken over HTTP: {stored} != {expected}"
        rate = n / seconds
        self.results.append(("1b. ingest over HTTP (client → web → Redis → 2 workers → PG)",
                             f"{rate:,.0f} events/s", f"{n:,} events in {seconds:.1f} s, "
                             f"{messages:,} requests; stored exactly once"))
        return rate

    # -- 6. the portal ------------------------------------------------------------------
    def portal(self) -> None:
        """One customer with N events in its open period (ingested like any usage): the
        portal page and /estimate answered in-process, p50/p95 of repeated requests, and
        one plain SQL SUM over the same events for comparison."""
        from fastapi.testclient import TestClient

        from persistence.db import unit_of_work
        from services import api_keys, invoicing
        from services import catalog as catalog_service
        from services import portal as portal_service
        from services.subscriptions import do_subscribe
        from services.usage import ingest
        from web.app import create_app

        n = self.args.portal_events
        groups = self.args.portal_groups  # filters on the tokens charge (SPEC §13)
        # filter g prices model m<g>; an event of model m<groups> (or without one) falls in
        # the default group: the events spread over every group
        filters = [{"id": f"model-{g}", "match": {"model": [f"m{g}"]}, "model": "unit",
                    "unit_price": f"0.00000{g + 1}"} for g in range(groups)]
        now = datetime.now(UTC).replace(microsecond=0)
        start = (now - timedelta(days=29)).date()  # monthly: the open period is 29 days old
        catalog_service.apply_document({
            "entities": [{"id": "portal", "timezone": "Europe/Oslo", "invoice_prefix": "P"}],
            "meters": [{"id": "p-tokens", "aggregation": "sum",
                        "unit": {"name": "tokens", "per": 1000000}},
                       {"id": "p-peak", "aggregation": "max"}],
            "plans": [{"id": "portal-plan", "currency": "USD", "interval": "month",
                       "charges": [
                           {"id": "base", "type": "recurring", "amount": "20.00"},
                           {"id": "tokens", "type": "usage", "meter": "p-tokens",
                            "model": "graduated", "tiers": [
                                {"up_to": 1000000, "unit_price": "0"},
                                {"up_to": None, "unit_price": "0.000002"}],
                            **({"filters": filters} if filters else {})},
                           {"id": "peak", "type": "usage", "meter": "p-peak",
                            "model": "unit", "unit_price": "0.5"}]}],
            "customers": [{"id": "portal-c", "entity": "portal"}],
        }, now - timedelta(days=60))
        with unit_of_work() as session:
            do_subscribe(session, now - timedelta(days=60), {
                "id": "portal-s", "customer": "portal-c", "plan": "portal-plan",
                "start": start.isoformat()})
        first = datetime.combine(start, datetime.min.time(), UTC) + timedelta(hours=2)
        span = (now - first).total_seconds()
        say(f"portal: {n:,} events of one customer over {span / 86400:.1f} days"
            + (f", a charge with {groups} filters" if groups else "") + ", ingested")
        batch = 5000
        began = time.perf_counter()
        for offset in range(0, n, batch):
            rows = []
            for i in range(offset, min(offset + batch, n)):
                at = first + timedelta(seconds=span * i / n)
                meter = "p-tokens" if i % 4 else "p-peak"
                rows.append({"key": f"p-{i}", "customer": "portal-c", "meter": meter,
                             "quantity": str(100 + i % 900),
                             "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                             **({"properties": {"model": f"m{i % (groups + 1)}"}}
                                if groups else {})})
            with unit_of_work() as session:
                ingest(session, rows, now, f"portal-{offset}")
        say(f"  ingested in {time.perf_counter() - began:.1f} s")
        folded = time.perf_counter()
        report = rollups_service.fold()  # what the scheduler process does every second
        folded = time.perf_counter() - folded
        say(f"  {report.events:,} events folded into the hourly rollups in {folded:.1f} s")
        os.environ["BILLING_PORTAL_SECRET"] = "benchmark-portal-secret"
        from services.settings import settings

        settings.cache_clear()
        link = portal_service.create_link("portal-c", None, now)
        _, key = api_keys.create("bench", now)

        def timed(call: Callable[[], Any], times: int = 40) -> tuple[float, float]:
            call()  # warm
            spent = []
            for _ in range(times):
                t = time.perf_counter()
                call()
                spent.append((time.perf_counter() - t) * 1000)
            spent.sort()
            return spent[len(spent) // 2], spent[int(len(spent) * 0.95) - 1]

        with TestClient(create_app()) as client:
            path = link.url.split("/portal/", 1)[1]
            page = client.get(f"/portal/{path}")
            assert page.status_code == 200, page.text[:200]
            p50, p95 = timed(lambda: client.get(f"/portal/{path}"))
            e50, e95 = timed(lambda: client.get(
                "/v1/subscriptions/portal-s/estimate",
                headers={"Authorization": f"Bearer {key}"}))
        estimate = invoicing.preview("portal-s", now, latest=True)
        tokens = [ln for ln in estimate.lines if ln.charge == "tokens"]
        assert len(tokens) == groups + 1, tokens
        assert sum(ln.quantity for ln in tokens) == sum(
            100 + i % 900 for i in range(n) if i % 4), tokens
        r50, r95 = timed(lambda: self.sql(
            "SELECT sum(quantity) FROM usage_events WHERE customer_id = 'portal-c' "
            "AND meter_id = 'p-tokens'"), 10)
        over = f" over {groups + 1} groups" if groups else ""
        self.results.append((f"6. portal page, {n:,} events{over} in the open period "
                             "(p50 / p95)",
                             f"{p50:.0f} / {p95:.0f} ms", "target p95 ≤ 100 ms"))
        self.results.append(("   /v1/subscriptions/{id}/estimate (p50 / p95)",
                             f"{e50:.0f} / {e95:.0f} ms", "target p95 ≤ 100 ms"))
        self.results.append(("   one plain SUM over the meter's events (p50 / p95)",
                             f"{r50:.0f} / {r95:.0f} ms", "the floor without pre-aggregation"))
        self.results.append(("   folding those events into the rollups, once",
                             f"{folded:.1f} s", f"{report.events:,} events, done by the "
                             "scheduler process every second as they come"))

    def report(self) -> None:
        table = Table(title="Benchmark", title_justify="left")
        table.add_column("measure")
        table.add_column("result", justify="right")
        table.add_column("detail")
        for row in self.results:
            table.add_row(*row)
        Console().print(table)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str, httpx: Any) -> bool:
    try:
        return bool(httpx.get(url, timeout=2).status_code == 200)
    except httpx.HTTPError:
        return False


def two_year_scenario() -> str:
    lines = [
        "entities:",
        "  - {id: eu, timezone: Europe/Oslo}",
        "  - {id: us, timezone: America/New_York}",
        "meters:",
        "  - {id: tokens, aggregation: sum}",
        "  - {id: seats, aggregation: max}",
        "plans:",
        "  - id: pro",
        "    currency: USD",
        "    interval: month",
        "    charges:",
        "      - {id: base, type: recurring, amount: '49.00'}",
        "      - {id: tokens, type: usage, meter: tokens, model: graduated,",
        "         tiers: [{up_to: 1000000, unit_price: '0'}, "
        "{up_to: null, unit_price: '0.000002'}]}",
        "      - {id: seats, type: usage, meter: seats, model: unit, unit_price: '10'}",
        "customers:",
    ]
    customers = [(f"{e}-{i}", e) for e in ("eu", "us") for i in range(10)]
    lines += [f"  - {{id: {c}, entity: {e}}}" for c, e in customers]
    lines.append("timeline:")
    for c, _ in customers:
        lines.append("  - at: '2025-01-01T00:00:00Z'")
        lines.append(f"    subscribe: {{id: s-{c}, customer: {c}, plan: pro, start: '2025-01-01'}}")
    day = datetime(2025, 1, 3, 12, tzinfo=UTC)
    n = 0
    while day < datetime(2026, 12, 31, tzinfo=UTC):
        lines.append(f"  - at: '{day.isoformat()}'")
        lines.append("    usage:")
        for c, _ in customers:
            n += 1
            at = (day - timedelta(hours=1)).isoformat()
            lines.append(f"      - {{key: k-{n}, customer: {c}, meter: tokens, "
                         f"quantity: {n * 37 % 90000}, timestamp: '{at}'}}")
        day += timedelta(days=7)
    lines.append("until: '2026-12-31T00:00:00Z'")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--naive-events", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--bill-events", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="events per message")
    parser.add_argument("--quick", action="store_true", help="a tenth of everything")
    parser.add_argument("--portal-events", type=int, default=1_000_000)
    parser.add_argument("--portal-groups", type=int, default=0,
                        help="the portal's tokens charge has this many filters (SPEC §13): "
                             "its events spread over them and the default group")
    parser.add_argument("--live-usage", action="store_true",
                        help="ingest events timestamped as they happen, not over 30 days")
    parser.add_argument("--fold-seconds", type=float, default=1.0,
                        help="fold the rollups this often during ingest (0: not)")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--only", nargs="*", default=["ingest", "http", "naive", "floor",
                                                      "bill", "late", "history", "big",
                                                      "replay", "portal", "scheduler"])
    parser.add_argument("--baseline", metavar="REF",
                        help="run the same measures at REF too (a cached git worktree and "
                             "virtualenv), interleaved with this tree's, and print ratios")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --baseline: runs of each side (REF, tree, tree, REF, …)")
    parser.add_argument("--cache", help="with --baseline: where REF's worktree and "
                                        "virtualenv are kept (default $BENCH_CACHE, else "
                                        "bench-cache beside the repository)")
    args = parser.parse_args()
    if args.baseline:
        from benchmarks import baseline

        baseline.compare(args.baseline, sys.argv[1:], args.repeat, args.cache)
        return
    if args.live_usage:  # for the producer processes, and this one's floor
        import benchmarks.events

        os.environ["BENCH_TIMESTAMPS"] = benchmarks.events.TIMESTAMPS = "live"
    if args.quick:
        args.events //= 10
        args.naive_events //= 4
        args.subscriptions //= 10
        args.bill_events //= 10
        args.portal_events //= 10
        args.entities //= 10
    bench = Bench(args)
    bench.create()
    try:
        rates: dict[str, float] = {}
        if "ingest" in args.only:
            rates["ingest"] = bench.ingest()
        if "naive" in args.only:
            rates["naive"] = bench.naive()
        if "http" in args.only:
            rates["http"] = bench.http()
        if "floor" in args.only:
            rates["floor"] = bench.floor()
        if {"ingest", "floor"} <= rates.keys():
            bench.results.append(("   ingest / floor", f"{rates['ingest'] / rates['floor']:.0%}",
                                  "target ≥ 70%"))
        if {"ingest", "http"} <= rates.keys():
            bench.results.append(("   HTTP / actor path", f"{rates['http'] / rates['ingest']:.2f}×",
                                  "target ≥ 0.8×"))
        if {"ingest", "naive"} <= rates.keys():
            bench.results.append(("   ingest / naive", f"×{rates['ingest'] / rates['naive']:.0f}",
                                  "target ≥ ×50"))
        if "bill" in args.only:
            plain, _ = bench.bill_run()
            if "late" in args.only:
                bench.late_run(plain)
            if "history" in args.only:
                bench.history_run(plain, bench.control)
            if "big" in args.only:
                bench.big_run(plain)
        if "replay" in args.only:
            bench.replay()
        if "portal" in args.only:
            bench.portal()
        if "scheduler" in args.only:
            bench.scheduler()
        if "features" in args.only:  # not in the default run: --only features
            from benchmarks.features import features_run

            features_run(bench)
    finally:
        bench.report()
        bench.drop()


if __name__ == "__main__":
    main()
