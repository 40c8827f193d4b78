"""Messages in Redis's own dead-letter queue (issue #9, finding 3): a message dramatiq
dead-lettered while the database could not take it is listed by `billing dead-letters`
(moved into the database), and `billing dead-letters requeue` sends it again — processed,
it applies once. Real Redis, the real CLI."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from dramatiq import Worker

from persistence import db, migrate
from persistence import subscriptions as subs_repo
from persistence.db import unit_of_work
from services import catalog as catalog_service
from services.settings import settings
from tests import cli_process
from tests.conftest import REDIS_URL, ROOT, flush_redis_namespace, require_services
from tests.integration.helpers import CATALOG
from workers import actors
from workers.broker import redis_broker, use

pytestmark = pytest.mark.postgres


def test_the_brokers_dead_letters_are_listed_and_requeued(tmp_path: Path) -> None:
    require_services()
    namespace = f"billing-test-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db.configure(url)
    migrate.upgrade()
    catalog_service.apply_document(CATALOG, datetime(2026, 1, 1, tzinfo=UTC))
    broker = use(redis_broker(settings(), url=REDIS_URL, namespace=namespace, max_retries=0))
    client = redis.Redis.from_url(REDIS_URL)
    xq = f"{namespace}:billing.XQ"
    try:
        # What dramatiq does with a message that failed for good: the consumer nacks it
        # into the broker's dead-letter queue (the database was down: nothing else has it)
        message = actors.subscribe.message("s-dl", "c-1", "pro", "2026-01-01")
        broker.enqueue(message)
        consumer = broker.consume("billing", prefetch=1, timeout=1000)
        got = next(m for m in consumer if m is not None)
        consumer.nack(got)
        consumer.close()
        assert client.zcard(xq) == 1

        env = {**os.environ, "BILLING_DATABASE_URL": url,
               "BILLING_BROKER_URL": REDIS_URL, "BILLING_QUEUE_NAMESPACE": namespace,
               "BILLING_PROMETHEUS": "false"}

        def billing(*args: str) -> str:
            done = cli_process.run(args, cwd=ROOT, env=env, timeout=120)
            assert done.returncode == 0, done.stderr
            return done.stdout

        listed = json.loads(billing("dead-letters", "list", "--json"))
        assert listed["from_broker"] == 1
        assert [(d["message_id"], d["actor"]) for d in listed["dead_letters"]] == [
            (message.message_id, "subscribe")]
        assert "broker's dead-letter queue (Redis)" in listed["dead_letters"][0]["error"]
        assert client.zcard(xq) == 0  # moved, not copied
        again = json.loads(billing("dead-letters", "list", "--json"))
        assert again["from_broker"] == 0 and len(again["dead_letters"]) == 1

        billing("dead-letters", "requeue")
        assert json.loads(billing("dead-letters", "list", "--json"))["dead_letters"] == []
        db.engine().dispose()
        db.configure(url)
        worker = Worker(broker, worker_threads=1, worker_timeout=100)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while True:
                with unit_of_work() as session:
                    if subs_repo.get(session, "s-dl") is not None:
                        break
                assert time.monotonic() < deadline, "the requeued subscribe was not applied"
                time.sleep(0.2)
        finally:
            worker.stop()
    finally:
        broker.close()
        flush_redis_namespace(namespace)
        db.engine().dispose()
