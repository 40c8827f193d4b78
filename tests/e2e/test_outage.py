"""Usage survives outages, end to end (issue #9): the Procfile's workers against a private
PostgreSQL and a private Redis (append-only), a producer process sending 50,000 events —
poison ones among them — while PostgreSQL is stopped for far longer than the retry window
and Redis is restarted. Afterwards:

- every message was processed exactly once, and sent = accepted + duplicate + conflict +
  rejected, exactly;
- every valid event is stored once, every poison one rejected on its own with a reason
  naming its field;
- nothing is anywhere an operator cannot see: no queued, delayed, unacknowledged or
  dead-lettered message in Redis, no dead letter in the database (an outage is waited out,
  never turned into a dead letter);
- no message ran into the time limit (nothing stalled a worker).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import require_services
from tests.e2e.test_crash_recovery import Proc, Processes
from tests.servers import PrivatePostgres, PrivateRedis, private_postgres

pytestmark = pytest.mark.postgres

EVENTS = 51_000  # some are not sent (a conflict in its original's batch): >= 50,000 are
OUTAGE = 20.0  # seconds PostgreSQL is down: the retry window below is about 2 s


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    require_services()  # the machine can run the PostgreSQL tier
    with private_postgres() as pg:
        server = PrivateRedis(tmp_path / "redis", appendonly=True)
        (tmp_path / "redis").mkdir()
        server.start()
        try:
            yield pg, server
        finally:
            server.stop()


def count(url: str, sql: str) -> int:
    with psycopg.connect(url, connect_timeout=3) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_outages_lose_corrupt_and_stall_nothing(servers: tuple[PrivatePostgres, PrivateRedis],
                                                tmp_path: Path) -> None:
    pg, broker_server = servers
    database = pg.url
    namespace = f"billing-outage-{uuid.uuid4().hex[:8]}"
    from persistence import db, migrate
    from services import catalog
    from tests.e2e.outage_producer import CUSTOMERS, customer

    db.configure(database)
    try:
        migrate.upgrade()
        catalog.apply_document({
            "entities": [{"id": "o", "timezone": "UTC"}],
            "meters": [{"id": "tokens", "aggregation": "sum"}],
            "customers": [{"id": customer(i), "entity": "o"} for i in range(CUSTOMERS)]})
    finally:
        db.engine().dispose()

    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({
        "BILLING_DATABASE_URL": database, "BILLING_BROKER_URL": broker_server.url,
        "BILLING_QUEUE_NAMESPACE": namespace, "BILLING_LOG_FORMAT": "json",
        "BILLING_LOG_LEVEL": "WARNING", "BILLING_PROMETHEUS": "false",
        "BILLING_MAX_RETRIES": "2", "BILLING_MIN_BACKOFF_MS": "100",
        "BILLING_MAX_BACKOFF_MS": "1000", "BILLING_TIME_LIMIT_MS": "30000",
        "BILLING_REDIS_HEARTBEAT_TIMEOUT_MS": "5000",
        "BILLING_REDIS_MAINTENANCE_CHANCE": "200000", "PYTHONUNBUFFERED": "1",
    })
    procs = Processes(tmp_path, env)
    try:
        for name in ("worker-a", "worker-b"):
            procs.worker(name)
        manifest = tmp_path / "manifest.json"
        producer: Proc = procs.start("producer", [
            sys.executable, "-m", "tests.e2e.outage_producer", "--events", str(EVENTS),
            "--manifest", str(manifest)])

        def stored() -> int:
            try:
                return count(database, "SELECT count(*) FROM ingest_batches")
            except psycopg.OperationalError:
                return -1

        deadline = time.monotonic() + 120
        while stored() < 10:  # ten batches in: the stream is flowing
            assert time.monotonic() < deadline, procs.tails()
            assert producer.popen.poll() in (None, 0), procs.tails()
            time.sleep(0.1)

        pg.stop()  # ---- PostgreSQL down, far longer than the retry window
        time.sleep(OUTAGE / 2)
        broker_server.stop()  # ---- and Redis restarts meanwhile (append-only: nothing lost)
        time.sleep(2)
        broker_server.start()
        time.sleep(OUTAGE / 2)
        pg.start()

        expected = json.loads((Path(str(manifest) + ".expected")).read_text())
        deadline = time.monotonic() + 240
        while producer.popen.poll() is None:
            assert time.monotonic() < deadline, f"the producer did not finish\n{procs.tails()}"
            time.sleep(0.2)
        assert producer.popen.returncode == 0, procs.tails()
        retried_sends = producer.log.read_text().count("send failed")
        sent = json.loads(manifest.read_text())
        client = redis.Redis.from_url(broker_server.url)

        def leftovers() -> dict[str, int]:
            found = {}
            for key in client.scan_iter(match=f"{namespace}:*"):
                name = key.decode()
                if name.endswith("__heartbeats__"):
                    continue
                kind = client.type(key).decode()
                size = {"list": client.llen, "hash": client.hlen, "set": client.scard,
                        "zset": client.zcard}.get(kind, lambda _k: -1)(key)
                found[name.removeprefix(namespace + ":")] = size
            return found

        while stored() < len(set(sent["messages"])) or leftovers():
            assert time.monotonic() < deadline, (
                f"{stored()} of {len(sent['messages'])} batches; {leftovers()}\n"
                f"{procs.tails()}")
            time.sleep(0.3)
        client.close()
    finally:
        procs.close()

    with psycopg.connect(database) as conn:
        totals = conn.execute("SELECT sum(accepted), sum(duplicate), sum(conflict), "
                              "sum(rejected), count(*) FROM ingest_batches").fetchone()
        assert totals is not None
        events = conn.execute("SELECT count(*) FROM usage_events").fetchone()
        rejected = conn.execute("SELECT reason, payload FROM rejected_usage").fetchall()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        strings = conn.execute("SELECT count(*) FROM usage_events WHERE "
                               "jsonb_typeof(properties->'ratio') = 'string'").fetchone()
    counts = dict(zip(("accepted", "duplicate", "conflict", "rejected"),
                      map(int, totals[:4]), strict=True))
    assert counts == expected["counts"]
    assert sum(counts.values()) == expected["events"] >= 50_000
    assert totals[4] == len(set(sent["messages"]))  # each message once
    assert events == (expected["counts"]["accepted"],)
    assert strings == (0,)  # a retried message kept its numbers numbers
    wrong = []
    for reason, payload in rejected:
        field = expected["poison"].get(json.loads(payload)["key"])
        if field is None or not (reason.startswith(f"{field}:") or f"; {field}:" in reason
                                 or (field == "key" and reason.startswith("key:"))):
            wrong.append((reason, payload[:80], field))
    assert not wrong, wrong[:5]
    assert dead == (0,)
    logs = "\n".join(p.log.read_text(errors="replace") for p in procs.started)
    assert "TimeLimitExceeded" not in logs and "Time limit exceeded" not in logs
    print(f"\n[outage] {expected['events']} events in {len(sent['messages'])} messages: "
          f"{counts}; PostgreSQL down {OUTAGE:.0f} s, Redis restarted meanwhile "
          f"({retried_sends} sends tried again while it was down)")
