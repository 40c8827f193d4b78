"""Bill runs always complete (issue #8, findings 4 and 5), on PostgreSQL + Redis:

- a claimed run whose ``bill_run`` message could not be sent (the broker was down) is sent
  by the next tick once the broker is back, and keeps its own instant as ``issued_at``;
- one subscription whose invoice cannot be computed does not block the others of its
  chunk: they are issued, and the failure is recorded for the operator and retried by the
  next run.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dramatiq import Worker
from sqlalchemy import text

from persistence import db
from scheduler.tick import tick
from services import catalog as catalog_service
from services import clock, invoicing
from services.settings import settings
from tests.conftest import Pool
from tests.integration.helpers import invoices
from tests.servers import private_redis
from workers import actors
from workers.broker import QUEUE, redis_broker, use

pytestmark = pytest.mark.postgres


def catalog(n: int) -> dict[str, Any]:
    return {
        "entities": [{"id": "acme", "timezone": "Europe/Oslo", "invoice_prefix": "AC"}],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [{"id": "pro", "currency": "EUR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "49.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.001"}]}],
        "customers": [{"id": f"c-{i}", "entity": "acme"} for i in range(n)],
    }


def apply(data: dict[str, Any]) -> None:
    catalog_service.apply_document(data, datetime(2000, 1, 1, tzinfo=UTC))


RUN_AT = datetime(2026, 1, 1, 7, 15, tzinfo=UTC)  # 08:15 in Oslo


def test_a_claim_whose_send_failed_is_sent_by_the_next_tick(pg_store: str,
                                                           tmp_path: Path) -> None:
    apply(catalog(4))
    sim = clock.SimulatedClock(datetime(2025, 12, 20, tzinfo=UTC))
    clock.use(sim)
    namespace = f"billing-test-{uuid.uuid4().hex[:8]}"
    try:
        with private_redis(tmp_path) as redis:
            broker = use(redis_broker(settings(), url=redis.url, namespace=namespace,
                                      max_retries=0))

            def run_worker() -> None:
                worker = Worker(broker, worker_threads=2, worker_timeout=20)
                worker.start()
                try:
                    broker.join(QUEUE, interval=2)  # type: ignore[call-arg]
                    worker.join()
                finally:
                    worker.stop()

            for i in range(4):
                actors.subscribe.send(f"s-{i}", f"c-{i}", "pro", "2026-01-01")
            run_worker()

            redis.stop()  # the broker goes down between the claim and its send
            sim.set(RUN_AT)
            with pytest.raises(Exception):  # noqa: B017 - whatever the broker client raises
                tick(RUN_AT)
            with db.engine().connect() as conn:  # the claim was committed
                assert conn.execute(text("SELECT count(*) FROM bill_runs")).scalar() == 1

            redis.start()
            sim.set(datetime(2026, 1, 1, 7, 15, 30, tzinfo=UTC))
            tick(sim.now())  # the next tick, the broker being back
            run_worker()
            issued = invoices()
            assert len(issued) == 4
            assert {i.issued_at for i in issued} == {RUN_AT}
            broker.close()
    finally:
        clock.reset()


def test_a_poison_subscription_leaves_the_rest_of_its_run_issued(pool: Pool) -> None:
    n = 300  # two issue_invoices chunks
    apply(catalog(n))
    pool.at("2025-12-20T10:00:00Z")
    for i in range(n):
        actors.subscribe.send(f"s-{i:03d}", f"c-{i}", "pro", "2026-01-01")
    pool.drain()
    # A row that no command accepts any more (it predates the bounds on amounts): its
    # invoice cannot be computed.
    with db.engine().begin() as conn:
        conn.execute(text("""UPDATE subscriptions SET discount = '{"amount": "1e999999"}' """
                          "WHERE id = 's-007'"))
    pool.at("2026-01-01T07:15:00Z")
    tick(pool.clock.now())
    pool.drain()
    issued = {i.subscription_id for i in invoices()}
    assert "s-007" not in issued
    assert len(issued) == n - 1
    failures = invoicing.failures()
    assert [(f.subscription, f.boundary.isoformat()) for f in failures] == [
        ("s-007", "2026-01-01")]
    assert "discount" in failures[0].error

    # The next run tries it again (still failing) and issues nothing twice.
    pool.at("2026-01-02T07:15:00Z")
    tick(pool.clock.now())
    pool.drain()
    assert len(invoices()) == n - 1
    assert invoicing.failures()[0].attempts == 2
    # Fixed, it is issued by the next run, and the failure is gone.
    with db.engine().begin() as conn:
        conn.execute(text("UPDATE subscriptions SET discount = NULL WHERE id = 's-007'"))
    pool.at("2026-01-03T07:15:00Z")
    tick(pool.clock.now())
    pool.drain()
    assert len(invoices()) == n
    assert invoicing.failures() == []
