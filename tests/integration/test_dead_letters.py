"""A message that fails after every retry (a bug, not an outage) is kept with its error;
requeued after a fix, it is processed (same message id, so still exactly once). An outage
is retried for as long as it lasts: it never ends a message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from dramatiq import Worker

from persistence import deadletters
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from services import clock, usage
from tests.integration.helpers import apply_catalog
from workers import actors
from workers.broker import QUEUE, stub_broker, use
from workers.deadletters import requeue

EVENT = {"key": "e-1", "customer": "c-1", "meter": "tokens", "quantity": "5",
         "timestamp": "2026-01-05T10:00:00Z"}


def test_dead_letter_kept_then_requeued(sqlite_store: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    apply_catalog()
    broker = use(stub_broker(max_retries=0))
    clock.use(clock.SimulatedClock(datetime(2026, 1, 6, tzinfo=UTC)))
    worker = Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        def bug(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug in this release")

        monkeypatch.setattr(usage, "ingest", bug)
        message = actors.record_usage.send([EVENT])
        broker.join(QUEUE, fail_fast=False)
        worker.join()
        with unit_of_work() as session:
            (letter,) = deadletters.all(session)
        assert letter.message_id == message.message_id
        assert letter.actor_name == "record_usage"
        assert "RuntimeError: a bug in this release" in letter.error

        monkeypatch.undo()  # the fix is deployed
        assert requeue(broker) == 1
        broker.join(QUEUE, fail_fast=False)
        worker.join()
        with unit_of_work() as session:
            assert deadletters.all(session) == []
            assert usage_repo.outcome_counts(session)["accepted"] == 1
    finally:
        worker.stop()
        clock.reset()


def test_an_outage_is_retried_until_it_ends(sqlite_store: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Far more attempts than ``max_retries`` allows: an infrastructure error never turns a
    usage message into a dead letter; the worker tries again until the outage is over."""
    from dramatiq.brokers.stub import StubBroker

    from services.settings import settings
    from workers import broker as broker_module
    from workers.broker import middleware

    apply_catalog()
    config = settings().model_copy(update={"min_backoff_ms": 1, "max_backoff_ms": 5})
    monkeypatch.setattr(broker_module, "settings", lambda: config)
    broker = use(StubBroker(middleware=middleware(config, max_retries=2)))
    clock.use(clock.SimulatedClock(datetime(2026, 1, 6, tzinfo=UTC)))
    worker = Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    attempts = []
    real = usage.ingest
    try:
        def flaky(*args: Any, **kwargs: Any) -> Any:
            attempts.append(1)
            if len(attempts) < 12:
                raise ConnectionError("database went away")
            return real(*args, **kwargs)

        monkeypatch.setattr(usage, "ingest", flaky)
        actors.record_usage.send([EVENT])
        broker.join(QUEUE, fail_fast=False)
        worker.join()
        with unit_of_work() as session:
            assert deadletters.all(session) == []
            assert usage_repo.outcome_counts(session)["accepted"] == 1
        assert len(attempts) == 12
    finally:
        worker.stop()
        clock.reset()
