"""A worker killed with ``kill -9`` in the middle of a webhook delivery: the delivery is not
lost, it is retried by another worker with the same ``webhook-id`` (so the receiver can
drop the repeat), and it ends up done exactly once.

Real processes: ``dramatiq workers.worker`` against this machine's Redis and PostgreSQL; a
Standard Webhooks receiver on loopback in the test process.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from persistence import db
from persistence.db import unit_of_work
from services import catalog as catalog_service
from services.subscriptions import do_subscribe
from tests.conftest import REDIS_URL
from tests.e2e.test_crash_recovery import Broker, Processes

pytestmark = pytest.mark.postgres

SECRET = "whsec_" + base64.b64encode(b"kill -9 in the middle of a POST.").decode()


@dataclass
class StallingReceiver:
    """Answers 200, but holds its first request for ``stall`` seconds."""

    stall: float = 8.0
    requests: list[str] = field(default_factory=list)  # webhook-ids, verified
    first: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[StallingReceiver]:
    rec = StallingReceiver()
    verifier = Webhook(SECRET)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            verifier.verify(body, headers)
            rec.requests.append(headers["webhook-id"])
            if len(rec.requests) == 1:
                rec.first.set()
                time.sleep(rec.stall)  # the worker waits here, and is killed
            try:
                self.send_response(200)
                self.end_headers()
            except OSError:
                pass  # the client is gone

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/billing"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def wait(what: str, check: Any, timeout: float, procs: Processes) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s\n{procs.tails()}"
        time.sleep(0.2)


def test_worker_killed_mid_delivery(database: str, namespace: str, processes: Processes,
                                    broker: Broker, sql: psycopg.Connection[Any],
                                    receiver: StallingReceiver,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    db.create_schema()
    created = datetime(2026, 9, 1, tzinfo=UTC)
    catalog_service.apply_document({
        "entities": [{"id": "hooked", "timezone": "UTC", "delivery": {
            "channel": "webhook", "url": receiver.url, "secret": SECRET}}],
        "plans": [{"id": "flat", "currency": "USD", "interval": "month",
                   "charges": [{"id": "fee", "type": "recurring", "amount": "10.00"}]}],
        "customers": [{"id": "c-1", "entity": "hooked"}],
    }, created)
    with unit_of_work() as session:
        do_subscribe(session, created, {"id": "s-1", "customer": "c-1", "plan": "flat",
                                        "start": "2026-10-01"})
    processes.env.update({"BILLING_DELIVERY_CHANNEL": "outbox", "NO_PROXY": "127.0.0.1",
                          "BILLING_WEBHOOK_TIMEOUT_S": "30"})
    first = processes.worker("worker-a")

    # the app side: a bill run through Redis (b_0 and b_1 are due: two invoices, one stalls)
    from services.settings import Settings
    from workers import actors
    from workers.broker import redis_broker, use

    monkeypatch.setenv("BILLING_QUEUE_NAMESPACE", namespace)
    use(redis_broker(Settings(), url=REDIS_URL, namespace=namespace))
    actors.bill_run.send("hooked", "2026-11-01")

    assert receiver.first.wait(60), processes.tails()
    killed_at = time.monotonic()
    first.kill()  # kill -9 while it waits for the receiver's answer
    processes.worker("worker-b")

    def delivered() -> bool:
        return sql.execute("SELECT count(*) FROM deliveries WHERE status = 'done'"
                           ).fetchone()[0] == 2  # type: ignore[index]

    wait("both deliveries done", delivered, 90, processes)
    recovered = time.monotonic() - killed_at
    print(f"webhook-ids received: {receiver.requests}")
    print(f"\nkilled mid-delivery; delivered by the restarted worker {recovered:.1f} s later")
    ids = receiver.requests
    # two invoices, each with one webhook-id on every attempt: a receiver that keeps the
    # ids it has seen takes each invoice once
    assert len(set(ids)) == 2, ids
    # the delivery the worker was killed in (its POST got no answer) came again, same id;
    # the other may come again too, if the kill fell between its 2xx and its commit
    assert ids.count(ids[0]) >= 2, ids
    attempts = sql.execute("SELECT attempts FROM deliveries ORDER BY invoice_id").fetchall()
    assert [a for (a,) in attempts] == [1, 1]  # a killed attempt never commits
    wait("nothing left in Redis", lambda: not broker.leftovers(), 30, processes)
