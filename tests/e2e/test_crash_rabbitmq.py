"""Crash recovery on RabbitMQ (issue #9): the crash test's world — 100,000 usage events
from a producer process, a bill run over 2,000 subscriptions — with the Procfile's workers
on RabbitMQ, one of them ``kill -9``-ed during ingest and another during the bill run.
RabbitMQ gives a dead connection's unacknowledged messages back at once; afterwards every
count is exact, every due invoice exists once with gapless numbers, no message is left in
any queue and no dead letter is stored."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest

from tests.conftest import require_rabbitmq
from tests.e2e import producer as world
from tests.e2e.test_crash_recovery import (
    PLANS,
    SEED,
    Processes,
    latest_run,
    scalar,
    setup_store,
)

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]
TIMEOUT = 300.0


def queued(url: str) -> int:
    """Messages in the billing queues (ready ones: a stopped worker's are back by then)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        return sum(channel.queue_declare(queue=q, passive=True).method.message_count
                   for q in ("billing", "billing.DQ", "billing.XQ"))
    finally:
        connection.close()


def consumers(url: str) -> int:
    """Consumers of the billing queue: one per worker process that has started consuming."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(
            queue="billing", passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nobody consumes
        return 0
    finally:
        if connection.is_open:
            connection.close()


def wait(what: str, check: Any, procs: Processes, timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}\n{procs.tails()}")
        time.sleep(0.1)


def test_kill_9_on_rabbitmq_loses_and_doubles_nothing(
        processes: Processes, sql: psycopg.Connection[Any], rabbitmq_vhost: str,
        tmp_path: Path) -> None:
    require_rabbitmq()
    processes.env["BILLING_BROKER_URL"] = rabbitmq_vhost
    processes.env.pop("BILLING_REDIS_URL", None)
    subs = setup_store()
    workers = {name: processes.worker(name) for name in ("worker-a", "worker-b")}
    wait("both workers to consume", lambda: consumers(rabbitmq_vhost) >= 2, processes)

    def stored() -> int:
        return int(scalar(sql, "SELECT count(*) FROM usage_events"))

    manifest = tmp_path / "manifest.json"
    producer = processes.start("producer", [sys.executable, "-m", "tests.e2e.producer",
                                            "--seed", str(SEED), "--manifest", str(manifest)])
    wait("20% of the events", lambda: stored() >= 0.2 * world.N_ORIGINALS, processes)
    workers["worker-a"].kill()  # ---- kill -9 during ingest
    workers["worker-a"] = processes.worker("worker-a-restarted")
    wait("the producer", lambda: producer.popen.poll() is not None, processes)
    assert producer.popen.returncode == 0, processes.tails()
    messages = json.loads(manifest.read_text())["messages"]
    wait("every batch", lambda: scalar(sql, "SELECT count(*) FROM ingest_batches")
         == len(messages), processes)
    totals = dict(zip(("accepted", "duplicate", "conflict", "rejected"), sql.execute(
        "SELECT sum(accepted), sum(duplicate), sum(conflict), sum(rejected) "
        "FROM ingest_batches").fetchone() or (), strict=True))
    assert totals == {"accepted": world.N_ORIGINALS,
                      "duplicate": world.N_RESENDS + world.N_EQUIVALENT,
                      "conflict": world.N_CONFLICTS, "rejected": world.N_INVALID}
    assert stored() == world.N_ORIGINALS

    now = datetime.now(UTC)
    expected: set[tuple[str, date]] = set()
    for sub_id, (_, plan, start, entity) in subs.items():
        run_at = latest_run(now, world.ENTITIES[entity][0])
        for _, b in world.expected_invoice_boundaries(
                start, world.ENTITIES[entity][0], run_at, PLANS[plan][0]):
            expected.add((sub_id, b))

    def invoices() -> int:
        return int(scalar(sql, "SELECT count(*) FROM invoices"))

    processes.start("scheduler", [sys.executable, "-m", "scheduler"])
    wait("20% of the invoices", lambda: invoices() >= 0.2 * len(expected), processes)
    workers["worker-b"].kill()  # ---- kill -9 during the bill run
    workers["worker-b"] = processes.worker("worker-b-restarted")
    wait("every due invoice", lambda: invoices() >= len(expected), processes)
    time.sleep(3)  # later ticks add nothing
    found = sql.execute("SELECT subscription_id, boundary, entity_id, number "
                        "FROM invoices").fetchall()
    pairs = Counter((s, b) for s, b, _, _ in found)
    assert not [p for p, n in pairs.items() if n > 1]
    assert set(pairs) == expected
    numbers: dict[str, list[str]] = defaultdict(list)
    for _, _, entity, number in found:
        if number is not None:
            numbers[entity].append(number)
    for entity, got in numbers.items():
        prefix = world.ENTITIES[entity][1]
        assert sorted(got) == [f"{prefix}-{n:06d}" for n in range(1, len(got) + 1)]
    wait("every message (deliveries too) to be processed",
         lambda: queued(rabbitmq_vhost) == 0, processes)
    time.sleep(2)
    processes.close()  # the workers' unacknowledged messages would go back to their queues
    assert queued(rabbitmq_vhost) == 0
    assert scalar(sql, "SELECT count(*) FROM dead_letters") == 0
