"""A message that fails after every retry is kept with its error; requeued after a fix, it
is processed (same message id, so still exactly once)."""

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
        def outage(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("database went away")

        monkeypatch.setattr(usage, "ingest", outage)
        message = actors.record_usage.send([EVENT])
        broker.join(QUEUE, fail_fast=False)
        worker.join()
        with unit_of_work() as session:
            (letter,) = deadletters.all(session)
        assert letter.message_id == message.message_id
        assert letter.actor_name == "record_usage"
        assert "ConnectionError: database went away" in letter.error

        monkeypatch.undo()  # the outage is over
        assert requeue(broker) == 1
        broker.join(QUEUE, fail_fast=False)
        worker.join()
        with unit_of_work() as session:
            assert deadletters.all(session) == []
            assert usage_repo.outcome_counts(session)["accepted"] == 1
    finally:
        worker.stop()
        clock.reset()
