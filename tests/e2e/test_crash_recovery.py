"""Crash recovery, end to end, on this machine's PostgreSQL and Redis.

The real Procfile processes run as child processes: two ``dramatiq workers.worker``
worker groups (one process, four threads each) and ``python -m scheduler`` on the real
clock. A separate producer process (``tests/e2e/producer.py``) sends 100,000 usage events
through ``UsageBatcher``: originals, 5% exact re-sends (plus a few re-sends equal by
value), conflicts and invalid events. One worker group is ``kill -9``-ed while the events
are being stored, and again (the other one) while the bill run issues invoices; each is
restarted at once. Afterwards:

- every valid event is stored exactly once, with the payload sent first; each re-send is
  counted as a duplicate, each conflict recorded, each invalid event rejected with a
  reason that names its field (SPEC §3);
- every due invoice exists exactly once, its usage lines hold the customer's usage of the
  period, and the numbers of each entity are gapless (SPEC §7, §8);
- nothing is left unacknowledged or dead-lettered in Redis, and no dead letter is stored.

The time the killed worker's messages took to come back is printed (run with ``-s``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, REDIS_URL, require_services
from tests.e2e import producer as world
from workers.broker import delete_namespace

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEED = 20261121
POLL = 0.05
STARTUP_TIMEOUT = 60.0
PHASE_TIMEOUT = 240.0  # each wait; a run takes about a minute
BUDGET = 420.0  # all waits together, well within the suite's 600 s pytest timeout

# plan id -> (has a recurring charge, {usage charge id: meter})
PLANS = {"pro": (True, {"tokens": "tokens", "calls": "calls"}),
         "payg": (False, {"tokens": "tokens"})}
# customer i's subscription: (plan, start), by (i // 2) % 4 — every entity gets each kind
KINDS = [("pro", date(2026, 9, 1)), ("pro", date(2026, 10, 1)),
         ("payg", date(2026, 9, 1)), ("payg", date(2026, 10, 1))]
CATALOG: dict[str, Any] = {
    "entities": [{"id": e, "timezone": tz, "invoice_prefix": prefix}
                 for e, (tz, prefix) in world.ENTITIES.items()],
    "meters": [{"id": m, "aggregation": "sum"} for m in world.METERS],
    "plans": [
        {"id": "pro", "currency": "USD", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "20.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.002"},
            {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
             "unit_price": "0.01", "included": "100"},
        ]},
        {"id": "payg", "currency": "USD", "interval": "month", "charges": [
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "graduated",
             "tiers": [{"up_to": "10000", "unit_price": "0.003"},
                       {"up_to": None, "unit_price": "0.001", "flat_price": "5.00"}]},
        ]},
    ],
    "customers": [{"id": world.customer_id(i), "entity": world.entity_of(i),
                   "draft_invoices": i % 50 == 7} for i in range(world.N_CUSTOMERS)],
}
CENT = Decimal("0.01")


def money(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def price(plan: str, charge: str, q: Decimal) -> Decimal:
    """The amount of a usage line, computed here from SPEC §5 (not by the engine)."""
    if plan == "pro" and charge == "tokens":
        return money(q * Decimal("0.002"))
    if plan == "pro" and charge == "calls":
        return money(max(Decimal(0), q - 100) * Decimal("0.01"))
    first = min(q, Decimal(10000)) * Decimal("0.003")
    rest = max(Decimal(0), q - 10000)
    return money(first + rest * Decimal("0.001") + (Decimal("5.00") if rest > 0 else 0))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def local_midnight(day: date, tz: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def latest_run(now: datetime, tz: str) -> datetime:
    """The instant of the latest 08:15-local bill run due at ``now`` (SPEC §7)."""
    zone = ZoneInfo(tz)
    day = now.astimezone(zone).date()
    run = datetime.combine(day, clock_time(8, 15), tzinfo=zone)
    if run > now:
        run = datetime.combine(day - timedelta(days=1), clock_time(8, 15), tzinfo=zone)
    return run.astimezone(UTC)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of our own, the test process's store pointed at it; dropped at the end."""
    require_services()
    from persistence import db

    name = f"billing_e2e_{uuid.uuid4().hex[:10]}"
    admin = psycopg.conninfo.make_conninfo(PG_URL, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    for attribute in ("_engine", "_schema"):  # restored by monkeypatch afterwards
        monkeypatch.setattr(db, attribute, None)
    try:
        db.configure(url)
        yield url
    finally:
        if db.is_configured():
            db.engine().dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def namespace() -> Iterator[str]:
    """A Redis key prefix of our own; every key under it is deleted at the end."""
    require_services()
    ns = f"billing-e2e-{uuid.uuid4().hex[:10]}"
    try:
        yield ns
    finally:
        delete_namespace(REDIS_URL, ns)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole process group (dramatiq's supervisor and its worker)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)


@dataclass
class Processes:
    tmp: Path
    env: dict[str, str]
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def worker(self, name: str) -> Proc:
        return self.start(name, [sys.executable, "-m", "workers",
                                 "--processes", "1", "--threads", "4"])

    def tails(self, lines: int = 25) -> str:
        parts = []
        for proc in self.started:
            text = proc.log.read_text(errors="replace").splitlines() if proc.log.exists() else []
            status = proc.popen.poll()
            parts.append(f"--- {proc.name} (pid {proc.popen.pid}, exit {status}), "
                         f"last {lines} of {len(text)} lines:\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def close(self) -> None:
        for proc in self.started:
            proc.kill()


@pytest.fixture
def sql(database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database, autocommit=True) as conn:
        yield conn


@pytest.fixture
def broker(namespace: str) -> Iterator[Broker]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield Broker(client, namespace)
    finally:
        client.close()


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path, database: str,
              namespace: str) -> Iterator[Processes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({
        "BILLING_DATABASE_URL": database,
        "BILLING_REDIS_URL": REDIS_URL,
        "BILLING_QUEUE_NAMESPACE": namespace,
        "BILLING_LOG_FORMAT": "json",
        "BILLING_LOG_LEVEL": "WARNING",
        "BILLING_PROMETHEUS": "false",
        "BILLING_REDIS_HEARTBEAT_TIMEOUT_MS": "5000",
        "BILLING_REDIS_MAINTENANCE_CHANCE": "200000",
        "BILLING_TICK_SECONDS": "1",
        "BILLING_SCHEDULER_METRICS_PORT": "0",  # no fixed port: tests run in parallel
        "BILLING_DELIVERY_CHANNEL": "none",  # delivery has tests of its own
        "PYTHONUNBUFFERED": "1",
    })
    procs = Processes(tmp_path, env)
    failed_before = request.session.testsfailed
    try:
        yield procs
    finally:
        procs.close()
        if request.session.testsfailed > failed_before:  # the call failed: show the logs
            print(f"\nlogs of the processes (in {tmp_path}):\n{procs.tails(60)}")


# --------------------------------------------------------------------------- helpers


@dataclass
class Broker:
    """Read-only looks at our namespace in Redis."""

    client: redis.Redis
    ns: str

    def workers(self) -> set[str]:
        return {m.decode() for m in self.client.zrange(f"{self.ns}:__heartbeats__", 0, -1)}

    def leftovers(self) -> dict[str, str]:
        """Every key of the namespace but the heartbeats, with its type and size: queues,
        delay queues, dead-letter queues, message hashes and unacked sets. Redis deletes an
        emptied list, set or hash, so a quiet broker has none."""
        found: dict[str, str] = {}
        for raw in self.client.scan_iter(match=f"{self.ns}:*", count=1000):
            key = raw.decode()
            if key == f"{self.ns}:__heartbeats__":
                continue
            kind = self.client.type(raw).decode()
            size = {"list": self.client.llen, "hash": self.client.hlen, "set": self.client.scard,
                    "zset": self.client.zcard}.get(kind, lambda _k: -1)(raw)
            found[key.removeprefix(self.ns + ":")] = f"{kind}[{size}]"
        return found

    def unacked(self, worker_id: str) -> list[tuple[str, str]]:
        """(queue, message id) fetched by ``worker_id`` and not acknowledged."""
        prefix = f"{self.ns}:__acks__.{worker_id}."
        held = []
        for raw in self.client.scan_iter(match=prefix + "*", count=1000):
            queue = raw.decode().removeprefix(prefix)
            held += [(queue, m.decode()) for m in self.client.smembers(raw)]
        return held


@dataclass
class Recovery:
    """What a killed worker held, and when it came back: requeued (its unacked set is
    gone, moved back to the queue by another worker's maintenance) and processed (no
    longer in the broker's message hashes, i.e. acknowledged)."""

    label: str
    worker_id: str
    killed_at: float
    progress: str
    lost: list[tuple[str, str]]
    requeued_after: float | None = None
    processed_after: float | None = None

    def poll(self, broker: Broker) -> None:
        now = time.monotonic()
        if self.requeued_after is None and not broker.unacked(self.worker_id):
            self.requeued_after = now - self.killed_at
        if self.requeued_after is not None and self.processed_after is None:
            pipe = broker.client.pipeline()
            for _, message_id in self.lost:
                for queue in ("billing", "billing.DQ"):
                    pipe.hexists(f"{broker.ns}:{queue}.msgs", message_id)
            if not any(pipe.execute()):
                self.processed_after = now - self.killed_at

    @property
    def done(self) -> bool:
        return self.processed_after is not None

    def report(self) -> str:
        def secs(x: float | None) -> str:
            return "never" if x is None else f"{x:.1f} s"

        return (f"{self.label}: killed worker {self.worker_id} at {self.progress}; it held "
                f"{len(self.lost)} unacked message(s); requeued {secs(self.requeued_after)} "
                f"and all processed {secs(self.processed_after)} after the kill")


_budget_end = [0.0]


def wait_until(what: str, check: Callable[[], bool], timeout: float,
               diagnose: Callable[[], str], tick: Callable[[], object] = lambda: None) -> float:
    """Poll ``check`` until true; fail after ``timeout`` or when the test's budget is spent."""
    started = time.monotonic()
    end = min(started + timeout, _budget_end[0])
    while True:
        tick()
        if check():
            return time.monotonic() - started
        if time.monotonic() > end:
            pytest.fail(f"timed out after {time.monotonic() - started:.0f} s waiting for "
                        f"{what}\n{diagnose()}")
        time.sleep(POLL)


def scalar(conn: psycopg.Connection[Any], sql: str, *args: Any) -> Any:
    row = conn.execute(sql, args or None).fetchone()
    assert row is not None
    return row[0]


def setup_store() -> dict[str, tuple[str, str, date, str]]:
    """Schema, catalog and one subscription per customer, created well before the run.
    Returns subscription id -> (customer, plan, start, entity)."""
    from persistence import db
    from services import catalog
    from services.subscriptions import do_subscribe

    db.create_schema()
    created = datetime(2026, 8, 15, tzinfo=UTC)
    catalog.apply_document(CATALOG, created)
    subs: dict[str, tuple[str, str, date, str]] = {}
    with db.unit_of_work() as session:
        for i in range(world.N_CUSTOMERS):
            plan, start = KINDS[(i // 2) % 4]
            entity = world.entity_of(i)
            sub_id = f"sub-{i:04d}"
            subs[sub_id] = (world.customer_id(i), plan, start, entity)
            outcome = do_subscribe(session, created, {"id": sub_id, "customer":
                                   world.customer_id(i), "plan": plan, "start": start.isoformat()})
            assert outcome.status == "applied", outcome
    return subs


def same_properties(a: Any, b: Any) -> bool:
    return (a or {}) == (b or {})


# --------------------------------------------------------------------------- the test


def test_kill_9_during_ingest_and_bill_run_loses_and_doubles_nothing(
        processes: Processes, sql: psycopg.Connection[Any], broker: Broker,
        tmp_path: Path) -> None:
    began = time.monotonic()
    _budget_end[0] = began + BUDGET
    conn = sql
    timings: dict[str, float] = {}
    events = world.generate(SEED)
    originals = events.originals()
    assert len(originals) == world.N_ORIGINALS
    subs = setup_store()

    diagnose = processes.tails

    # Two worker groups. Each one's broker id (its heartbeat in Redis) is learnt as the one
    # id that appears after it starts: nothing else enqueues or consumes meanwhile.
    worker_ids: dict[str, str] = {}
    workers: dict[str, Proc] = {}
    known_before: dict[str, set[str]] = {}

    def start_worker(name: str, log_name: str) -> None:
        known_before[name] = broker.workers()
        workers[name] = processes.worker(log_name)

    restarted: list[str] = []

    def identify(name: str, ignore: frozenset[str] | set[str] = frozenset()) -> None:
        def new() -> set[str]:
            return broker.workers() - known_before[name] - ignore

        wait_until(f"{name} to start consuming", lambda: bool(new()), STARTUP_TIMEOUT, diagnose)
        assert len(new()) == 1, new()
        (worker_ids[name],) = new()

    for name in ("worker-a", "worker-b"):
        start_worker(name, name)
        identify(name)

    def kill_busiest_and_restart(label: str, progress: str) -> Recovery:
        """kill -9 the worker group holding the most unacked messages, restart it."""
        name = max(sorted(workers), key=lambda n: len(broker.unacked(worker_ids[n])))
        workers[name].kill()
        killed_at = time.monotonic()
        recovery = Recovery(label, worker_ids[name], killed_at, progress,
                            broker.unacked(worker_ids[name]))
        start_worker(name, f"{name}-restarted-{label.replace(' ', '-')}")
        restarted.append(name)
        return recovery

    # ------------------------------------------------------------------ phase 1: ingest
    manifest_path = tmp_path / "manifest.json"
    t0 = time.monotonic()
    producer = processes.start("producer", [
        sys.executable, "-m", "tests.e2e.producer", "--seed", str(SEED),
        "--manifest", str(manifest_path)])

    def stored() -> int:
        return int(scalar(conn, "SELECT count(*) FROM usage_events"))

    def producer_alive() -> bool:
        code = producer.popen.poll()
        assert code in (None, 0), f"the producer failed (exit {code})\n{diagnose()}"
        return code is None

    wait_until("20% of the events to be stored",
               lambda: stored() >= 0.2 * world.N_ORIGINALS, PHASE_TIMEOUT, diagnose,
               tick=producer_alive)
    at = stored()
    ingest_kill = kill_busiest_and_restart(
        "ingest", f"{at} of {world.N_ORIGINALS} events stored "
        f"({100 * at / world.N_ORIGINALS:.0f}%)")
    assert ingest_kill.lost, "the killed worker held no message: the kill tested nothing"
    lost_ids = [m for _, m in ingest_kill.lost]
    already = scalar(conn, "SELECT count(*) FROM ingest_batches WHERE message_id = ANY(%s)",
                     lost_ids)
    wait_until("the producer to finish", lambda: not producer_alive(), PHASE_TIMEOUT, diagnose,
               tick=lambda: ingest_kill.poll(broker))
    manifest = json.loads(manifest_path.read_text())
    messages: list[str] = manifest["messages"]
    assert manifest["events"] == world.TOTAL_EVENTS
    assert len(messages) == events.all[-1].batch + 1

    def ingest_settled() -> bool:
        return (scalar(conn, "SELECT count(*) FROM ingest_batches") == len(messages)
                and ingest_kill.done and not broker.leftovers())

    wait_until("every usage batch to be processed and acknowledged", ingest_settled,
               PHASE_TIMEOUT, lambda: f"{broker.leftovers()}\n{ingest_kill.report()}\n"
               + diagnose(), tick=lambda: ingest_kill.poll(broker))
    timings["ingest"] = time.monotonic() - t0

    # Every message was processed once: one ingest_batches row per message sent.
    batch_ids = [r[0] for r in conn.execute("SELECT message_id FROM ingest_batches")]
    assert sorted(batch_ids) == sorted(messages)

    # Each event got exactly its outcome.
    totals = dict(zip(("accepted", "duplicate", "conflict", "rejected"), conn.execute(
        "SELECT sum(accepted), sum(duplicate), sum(conflict), sum(rejected) "
        "FROM ingest_batches").fetchone() or (), strict=True))
    assert totals == {
        "accepted": world.N_ORIGINALS,
        "duplicate": world.N_RESENDS + world.N_EQUIVALENT,
        "conflict": world.N_CONFLICTS,
        "rejected": world.N_INVALID,
    }, diagnose()

    # Every valid event is stored exactly once, with the payload sent first.
    rows = conn.execute("SELECT key, customer_id, meter_id, quantity, timestamp, properties "
                        "FROM usage_events").fetchall()
    assert len(rows) == world.N_ORIGINALS
    wrong = []
    for key, customer, meter, quantity, ts, props in rows:
        sent = originals.get(key)
        if sent is None or (customer, meter) != (sent["customer"], sent["meter"]) \
                or quantity != Decimal(sent["quantity"]) or ts != instant(sent["timestamp"]) \
                or not same_properties(props, sent.get("properties")):
            wrong.append((key, customer, meter, quantity, ts, props, sent))
    assert not wrong, f"{len(wrong)} stored events differ from what was sent first: {wrong[:5]}"

    # Each invalid event is rejected once, with its raw payload and a reason naming the field.
    invalid = {s.event["key"]: s for s in events.all if s.kind == "invalid"}
    rejected = conn.execute(
        "SELECT key, reason, payload, message_id FROM rejected_usage").fetchall()
    assert len(rejected) == world.N_INVALID
    assert Counter(r[0] for r in rejected) == Counter(list(invalid))
    bad_reasons = []
    for key, reason, payload, message_id in rejected:
        sent = invalid[key]
        named = reason.startswith(f"{sent.invalid_field}:") or \
            f"; {sent.invalid_field}:" in reason
        if not named or json.loads(payload) != sent.event or message_id != messages[sent.batch]:
            bad_reasons.append((key[:40], sent.invalid_field, reason, payload, message_id))
    assert not bad_reasons, f"{len(bad_reasons)} rejections are wrong: {bad_reasons[:5]}"

    # Each conflict is recorded once, the stored payload being the first one.
    conflicts = conn.execute(
        "SELECT key, stored_payload, received_payload FROM usage_conflicts").fetchall()
    sent_conflicts = {s.event["key"]: s.event for s in events.all if s.kind == "conflict"}
    assert len(conflicts) == world.N_CONFLICTS
    assert Counter(c[0] for c in conflicts) == Counter(list(sent_conflicts))
    bad_conflicts = []
    for key, kept, received in conflicts:
        first, second = originals[key], sent_conflicts[key]
        for payload, event in ((kept, first), (received, second)):
            if Decimal(payload["quantity"]) != Decimal(event["quantity"]) \
                    or instant(payload["timestamp"]) != instant(event["timestamp"]) \
                    or not same_properties(payload.get("properties"), event.get("properties")):
                bad_conflicts.append((key, kept, received, first, second))
    assert not bad_conflicts, f"{len(bad_conflicts)} conflicts are wrong: {bad_conflicts[:3]}"

    # ------------------------------------------------------------------ phase 2: bill run
    now = datetime.now(UTC)
    run_at = {e: latest_run(now, tz) for e, (tz, _) in world.ENTITIES.items()}
    expected: set[tuple[str, date]] = set()
    k_of: dict[tuple[str, date], int] = {}
    for sub_id, (_, plan, start, entity) in subs.items():
        for k, b in world.expected_invoice_boundaries(
                start, world.ENTITIES[entity][0], run_at[entity], PLANS[plan][0]):
            expected.add((sub_id, b))
            k_of[(sub_id, b)] = k

    # The restarted worker's broker id (the producer's is the one other that may have come
    # and gone meanwhile), before the scheduler enqueues.
    identify(restarted.pop(), ignore={manifest["broker_id"]})
    t0 = time.monotonic()
    processes.start("scheduler", [sys.executable, "-m", "scheduler"])

    def invoices() -> int:
        return int(scalar(conn, "SELECT count(*) FROM invoices"))

    wait_until("20% of the invoices to be issued", lambda: invoices() >= 0.2 * len(expected),
               PHASE_TIMEOUT, diagnose)
    at = invoices()
    bill_kill = kill_busiest_and_restart(
        "bill run", f"{at} of {len(expected)} invoices issued "
        f"({100 * at / len(expected):.0f}%)")
    assert bill_kill.lost, "the killed worker held no message: the kill tested nothing"

    def billing_settled() -> bool:
        return invoices() >= len(expected) and bill_kill.done and not broker.leftovers()

    wait_until("every due invoice to be issued and every message acknowledged",
               billing_settled, PHASE_TIMEOUT,
               lambda: f"{invoices()} of {len(expected)} invoices; {broker.leftovers()}\n"
               f"{bill_kill.report()}\n{diagnose()}", tick=lambda: bill_kill.poll(broker))
    timings["bill run"] = time.monotonic() - t0
    time.sleep(2 * float(processes.env["BILLING_TICK_SECONDS"]))  # a later tick adds nothing

    # One claimed run per entity: the latest 08:15 local (or the next one, had the test
    # straddled it — the invoices due are the same until 2026-12-01).
    runs = conn.execute("SELECT entity_id, run_at FROM bill_runs").fetchall()
    later = {e: latest_run(datetime.now(UTC), tz) for e, (tz, _) in world.ENTITIES.items()}
    assert {e for e, _ in runs} == set(world.ENTITIES), runs
    assert all(r in (run_at[e], later[e]) for e, r in runs), (runs, run_at)

    # Every due invoice exists exactly once, and no other.
    found = conn.execute("SELECT id, subscription_id, boundary, entity_id, customer_id, status, "
                         "number, final, subtotal, discount, total FROM invoices").fetchall()
    pairs = Counter((r[1], r[2]) for r in found)
    doubled = {p: n for p, n in pairs.items() if n > 1}
    assert not doubled, f"invoiced more than once: {list(doubled.items())[:5]}"
    assert set(pairs) == expected, (
        f"missing {sorted(expected - set(pairs))[:5]} ({len(expected - set(pairs))}), "
        f"unexpected {sorted(set(pairs) - expected)[:5]} ({len(set(pairs) - expected)})")

    # Numbers: PREFIX-000001 … PREFIX-N per entity, no gap, no repeat; drafts have none.
    sent_numbers: dict[str, list[str]] = defaultdict(list)
    for _, sub_id, _, entity, customer, status, number, *_ in found:
        draft = int(customer.removeprefix("cust-")) % 50 == 7
        assert (status, number is None) == (("draft", True) if draft else ("sent", False)), \
            (sub_id, status, number)
        if number is not None:
            sent_numbers[entity].append(number)
    counters = dict(conn.execute("SELECT entity_id, last_number FROM invoice_counters").fetchall())
    for entity, numbers in sent_numbers.items():
        prefix = world.ENTITIES[entity][1]
        gapless = [f"{prefix}-{n:06d}" for n in range(1, len(numbers) + 1)]
        assert sorted(numbers) == gapless, (
            f"{entity}: numbers are not {gapless[0]}..{gapless[-1]}: missing "
            f"{sorted(set(gapless) - set(numbers))[:5]}, extra or repeated "
            f"{[n for n, c in Counter(numbers).items() if c > 1 or n not in gapless][:5]}")
        assert counters[entity] == len(numbers)

    # Lines: the usage of each period, priced; the recurring fee in advance.
    usage: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = defaultdict(list)
    for event in originals.values():
        usage[(event["customer"], event["meter"])].append(
            (instant(event["timestamp"]), Decimal(event["quantity"])))
    lines: dict[int, list[tuple[str, str, date, date, Decimal, Decimal]]] = defaultdict(list)
    for invoice_id, *line in conn.execute(
            "SELECT invoice_id, type, charge_id, period_start, period_end, quantity, amount "
            "FROM invoice_lines"):
        lines[invoice_id].append(tuple(line))
    bad_lines = []
    november_usage_lines = 0
    for (invoice_id, sub_id, boundary, entity, customer, _, _, final,
         subtotal, discount, total) in found:
        _, plan, start, _ = subs[sub_id]
        tz = world.ENTITIES[entity][0]
        k = k_of[(sub_id, boundary)]
        has_recurring, charges = PLANS[plan]
        nxt = date(boundary.year + boundary.month // 12, boundary.month % 12 + 1, 1)
        prev = date(boundary.year - (boundary.month == 1), (boundary.month - 2) % 12 + 1, 1)
        want = []
        if has_recurring:
            want.append(("recurring", "base", boundary, nxt, Decimal(1), Decimal("20.00")))
        if k >= 1:
            for charge, meter in charges.items():
                lo, hi = local_midnight(prev, tz), local_midnight(boundary, tz)
                q = sum((q for ts, q in usage[(customer, meter)] if lo <= ts < hi), Decimal(0))
                want.append(("usage", charge, prev, boundary, q, price(plan, charge, q)))
                november_usage_lines += boundary == date(2026, 11, 1)
        got = sorted(lines[invoice_id])
        amounts = sum((line[5] for line in want), Decimal(0))
        if got != sorted(want) or (final, subtotal, discount, total) != (
                False, amounts, 0, amounts):
            bad_lines.append((sub_id, boundary, got, sorted(want), subtotal, total))
    assert not bad_lines, f"{len(bad_lines)} invoices have wrong lines: {bad_lines[:3]}"

    # Nothing is left unacknowledged, delayed or dead-lettered, in Redis or in the store.
    assert broker.leftovers() == {}
    assert scalar(conn, "SELECT count(*) FROM dead_letters") == 0, \
        conn.execute("SELECT message_id, actor_name, error FROM dead_letters LIMIT 5").fetchall()

    retries = sum(p.log.read_text(errors="replace").count("Retrying message")
                  for p in processes.started)
    print(f"\n[crash-recovery] {world.TOTAL_EVENTS} events in {len(messages)} messages, "
          f"{len(expected)} invoices ({november_usage_lines} usage lines on 2026-11-01)")
    print(f"[crash-recovery] {ingest_kill.report()}; {already} of them had committed before "
          f"the kill (their redelivery was a no-op)")
    print(f"[crash-recovery] {bill_kill.report()}")
    print(f"[crash-recovery] ingest {timings['ingest']:.1f} s (producer: "
          f"{ {k: v for k, v in manifest.items() if k.endswith('seconds')} }), bill run "
          f"{timings['bill run']:.1f} s, {retries} retried message(s) in the worker logs, "
          f"whole test {time.monotonic() - began:.1f} s")
