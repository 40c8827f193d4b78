"""Sending invoices end to end: issue or release → a delivery recorded in the same
transaction → ``deliver_invoice`` after commit → a real HTTP receiver or SMTP server.

Retries use dramatiq's Retries middleware with a short backoff; the receiver verifies
every signature with the Standard Webhooks reference verifier.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dramatiq import Worker
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from persistence.db import unit_of_work
from persistence.tables import DeliveryRow, InvoiceRow
from scheduler.tick import tick
from services import clock, deliveries
from services.settings import settings
from tests.integration.helpers import CATALOG, apply_catalog
from workers import actors
from workers.broker import QUEUE, StubBroker, middleware, use

SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()


@dataclass
class Receiver:
    """A webhook endpoint on loopback that answers from a script of status codes."""

    statuses: list[int] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    verified: int = 0
    url: str = ""

    def unique_ids(self) -> set[str]:
        return {s["id"] for s in self.seen}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    verifier = Webhook(SECRET)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            payload = verifier.verify(body, headers)  # raises on a bad signature
            rec.verified += 1
            rec.seen.append({"id": headers["webhook-id"], "payload": payload})
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/billing"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@dataclass
class Engine:
    broker: StubBroker
    worker: Worker
    clock: clock.SimulatedClock

    def drain(self) -> None:
        self.broker.join(QUEUE, fail_fast=False)
        self.worker.join()

    def at(self, when: str) -> None:
        self.clock.set(datetime.fromisoformat(when.replace("Z", "+00:00")))


@pytest.fixture
def engine(sqlite_store: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[Engine]:
    """SQLite + in-process broker with real retries (short backoff), entity acme
    delivering by webhook to the receiver."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    config = settings().model_copy(update={"min_backoff_ms": 10, "max_backoff_ms": 50})
    broker = StubBroker(middleware=middleware(config, max_retries=5))
    use(broker)
    catalog = json.loads(json.dumps(CATALOG))
    catalog["entities"][0]["delivery"] = {"channel": "webhook", "url": receiver.url,
                                          "secret": SECRET}
    apply_catalog(catalog)
    sim = clock.SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.use(sim)
    worker = Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    yield Engine(broker, worker, sim)
    worker.stop()
    clock.reset()


def deliveries_by_status() -> dict[str, list[DeliveryRow]]:
    with unit_of_work() as session:
        rows = list(session.scalars(select(DeliveryRow)))
    result: dict[str, list[DeliveryRow]] = {}
    for r in rows:
        result.setdefault(r.status, []).append(r)
    return result


def issue_opening_invoice(engine: Engine, customer: str = "c-1") -> None:
    engine.at("2026-01-01T06:00:00Z")
    actors.subscribe.send(f"s-{customer}", customer, "pro", "2026-01-01")
    engine.drain()
    engine.at("2026-01-01T07:15:00Z")
    tick(engine.clock.now())
    engine.drain()


def test_a_sent_invoice_is_delivered_once_signed(engine: Engine, receiver: Receiver) -> None:
    issue_opening_invoice(engine)
    assert receiver.verified == 1
    data = receiver.seen[0]["payload"]["data"]
    assert data["number"] == "AC-000001" and data["total"] == "49.00"
    assert receiver.seen[0]["payload"]["type"] == "invoice.sent"
    done = deliveries_by_status()["done"]
    assert len(done) == 1 and done[0].attempts == 1 and done[0].channel == "webhook"
    # a redelivered message does not deliver again
    actors.deliver_invoice.send(done[0].invoice_id)
    engine.drain()
    assert receiver.verified == 1


def test_500_three_times_then_200_is_delivered_after_retries(
        engine: Engine, receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500, 200]
    issue_opening_invoice(engine)
    assert len(receiver.seen) == 4 and len(receiver.unique_ids()) == 1  # same webhook-id
    (done,) = deliveries_by_status()["done"]
    assert done.attempts == 4 and done.last_error == ""


def test_a_400_is_a_visible_permanent_failure(engine: Engine, receiver: Receiver) -> None:
    receiver.statuses = [400]
    issue_opening_invoice(engine)
    assert len(receiver.seen) == 1  # not retried
    (failed,) = deliveries_by_status()["failed"]
    assert "400" in failed.last_error and failed.attempts == 1


def test_drafts_are_not_delivered_and_release_delivers(
        engine: Engine, receiver: Receiver) -> None:
    issue_opening_invoice(engine, customer="c-2")  # c-2 has draft invoices
    assert receiver.seen == [] and deliveries_by_status() == {}
    actors.release_invoice.send("s-c-2", "2026-01-01")
    engine.drain()
    assert receiver.verified == 1
    assert receiver.seen[0]["payload"]["data"]["number"] == "AC-000001"


def test_a_crash_after_the_receiver_said_2xx_redelivers_with_the_same_id(
        engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    real_send = deliveries._send
    crashes = [True]

    def send_then_crash(*args: Any, **kwargs: Any) -> Any:
        result = real_send(*args, **kwargs)
        if crashes:
            crashes.pop()
            raise RuntimeError("worker died before recording the delivery")
        return result

    monkeypatch.setattr(deliveries, "_send", send_then_crash)
    issue_opening_invoice(engine)
    assert len(receiver.seen) == 2 and len(receiver.unique_ids()) == 1
    (done,) = deliveries_by_status()["done"]
    assert done.attempts == 1  # the crashed attempt was rolled back with its transaction


def test_a_delivery_lost_between_commit_and_enqueue_is_requeued(
        engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actors, "enqueue_deliveries", lambda ids: None)  # the enqueue never happens
    issue_opening_invoice(engine)
    assert receiver.seen == [] and len(deliveries_by_status()["pending"]) == 1
    monkeypatch.undo()
    assert actors.requeue_lost_deliveries(engine.clock.now()) == []  # not stale yet
    later = engine.clock.now() + timedelta(minutes=10)
    assert len(actors.requeue_lost_deliveries(later)) == 1
    engine.drain()
    assert receiver.verified == 1 and "pending" not in deliveries_by_status()


def bill_the_opening_invoice_now() -> list[str]:
    """Subscribe c-1 from 1 January and run acme's bill run of that day by hand: the
    outcomes of the invoice's issue and of its delivery."""
    from services.invoicing import run_bill_run_now
    from services.subscriptions import do_subscribe

    with unit_of_work() as session:
        do_subscribe(session, datetime(2026, 1, 1, tzinfo=UTC),
                     {"id": "s-1", "customer": "c-1", "plan": "pro", "start": "2026-01-01"})
    issued, delivered, _ = run_bill_run_now("acme", datetime(2026, 1, 1).date(),
                                         datetime(2026, 1, 2, tzinfo=UTC))
    return [o.status for o in issued + delivered]


def test_outbox_is_the_default_channel(sqlite_store: str, tmp_path: Path) -> None:
    apply_catalog()  # no delivery on the entity: the deployment default (outbox)
    previous = deliveries.use_outbox(tmp_path)
    try:
        assert bill_the_opening_invoice_now() == ["applied", "applied"]
    finally:
        deliveries.use_outbox(previous)
    files = sorted(p.name for p in (tmp_path / "acme").iterdir())
    assert files == ["AC-000001.html", "AC-000001.json"]
    assert json.loads((tmp_path / "acme" / "AC-000001.json").read_text())["total"] == "49.00"
    with unit_of_work() as session:
        assert session.scalars(select(InvoiceRow)).one().status == "sent"


def test_channel_none_records_the_delivery_without_reading_a_document(
        sqlite_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entity that delivers nothing (invoices are read through the API): the delivery
    is recorded done at once, and no document is prepared for it."""
    catalog = json.loads(json.dumps(CATALOG))
    catalog["entities"][0]["delivery"] = {"channel": "none"}
    apply_catalog(catalog)
    from services import documents

    def no_document(*args: Any) -> Any:
        raise AssertionError("a document was prepared for channel none")

    monkeypatch.setattr(documents, "prepare", no_document)
    assert bill_the_opening_invoice_now() == ["applied", "applied"]
    (done,) = deliveries_by_status()["done"]
    assert (done.channel, done.target, done.attempts) == ("none", "—", 1)


def test_email_channel_sends_text_and_html_to_the_customer(
        sqlite_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    from tests.integration.test_delivery_channels import free_port

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        monkeypatch.setattr(settings(), "smtp_host", "127.0.0.1")
        monkeypatch.setattr(settings(), "smtp_port", port)
        catalog = json.loads(json.dumps(CATALOG))
        catalog["entities"][0]["delivery"] = {"channel": "email", "from": "billing@acme.test"}
        catalog["customers"][0]["email"] = "ap@customer.test"
        apply_catalog(catalog)
        from services.invoicing import run_bill_run_now
        from services.subscriptions import do_subscribe

        with unit_of_work() as session:
            do_subscribe(session, datetime(2026, 1, 1, tzinfo=UTC),
                         {"id": "s-1", "customer": "c-1", "plan": "pro", "start": "2026-01-01"})
        issued, delivered, _ = run_bill_run_now("acme", datetime(2026, 1, 1).date(),
                                             datetime(2026, 1, 2, tzinfo=UTC))
        assert [o.status for o in issued + delivered] == ["applied", "applied"], delivered
    finally:
        controller.stop()
    (raw,) = received
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["To"] == "ap@customer.test" and "AC-000001" in mail["Subject"]
    parts = {p.get_content_type(): p.get_content() for p in mail.walk()
             if not p.is_multipart()}
    assert "AC-000001" in parts["text/plain"] and "€49.00" in parts["text/html"]


def test_a_retried_failure_is_a_warning_with_its_reason_not_an_error(
        engine: Engine, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """A receiver that is down for a while (503 — like an SMTP 4xx, a transient refusal)
    is an expected failure: each attempt logs a warning naming the reason, and nothing is
    logged as an error or with a traceback (issue #10)."""
    import logging

    from structlog.testing import capture_logs

    receiver.statuses = [503, 503, 200]
    with caplog.at_level(logging.DEBUG), capture_logs() as engine_lines:
        issue_opening_invoice(engine)
    (done,) = deliveries_by_status()["done"]
    assert done.attempts == 3
    retried = [e for e in engine_lines if e["event"] == "delivery will be retried"]
    assert len(retried) == 2 and all(e["log_level"] == "warning" for e in retried)
    assert all("HTTP 503" in e["reason"] and e["invoice"] for e in retried), retried
    assert not [e for e in engine_lines if e["log_level"] in ("error", "critical")]
    # dramatiq's own lines (the stdlib's logging): the retry, but no error, no traceback
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], [
        (r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]


def test_status_events_follow_the_invoice_in_order_with_stable_ids(
        engine: Engine, receiver: Receiver) -> None:
    """``invoice.partially_paid`` then ``invoice.paid``, signed, after ``invoice.sent``:
    the later event waits for the earlier one even when its message comes first, and a
    retried event keeps its ``webhook-id``."""
    from services import invoice_events, payments

    issue_opening_invoice(engine)
    engine.at("2026-01-05T10:00:00Z")
    with unit_of_work() as session:
        invoice_id = session.scalars(select(InvoiceRow.id)).one()
        body = {"currency": "EUR", "date": "2026-01-05", "method": "card"}
        first = payments.do_pay(session, engine.clock.now(), invoice_id,
                                {**body, "amount": "9.00"})
        second = payments.do_pay(session, engine.clock.now(), invoice_id,
                                 {**body, "amount": "40.00"})
    (e1,), (e2,) = first.events, second.events
    waiting, _ = invoice_events.deliver(e2, engine.clock.now())
    assert waiting.status == "pending"  # its invoice's earlier event is not out yet
    receiver.statuses = [500]  # the first event's first attempt fails
    actors.enqueue_events([e2, e1])  # out of order
    engine.drain()
    kinds = [(s["payload"]["type"], s["id"]) for s in receiver.seen]
    assert [k for k, _ in kinds] == ["invoice.sent", "invoice.partially_paid",
                                     "invoice.partially_paid", "invoice.paid"]
    assert kinds[1][1] == kinds[2][1] == f"evt_{e1}" and kinds[3][1] == f"evt_{e2}"
    paid = receiver.seen[-1]["payload"]["data"]["invoice"]
    assert (paid["payment_status"], paid["paid"]) == ("paid", "49.00")
    actors.enqueue_events([e1, e2])  # redelivered messages send nothing again
    engine.drain()
    assert len(receiver.seen) == 4
