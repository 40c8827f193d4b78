"""A drain (``workers.broker.join`` with an ``InFlight``) returns only when every message
this process sent is finished: follow-ups sent by an actor, a retry after a failure, a
delayed message — and it returns at once when nothing is in flight."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import fakeredis
import pytest
from dramatiq import Worker

from services.settings import settings
from workers.broker import QUEUE, InFlight, join, rabbitmq_broker, redis_broker, track


@pytest.fixture(params=["fakeredis", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def setup(request: pytest.FixtureRequest
          ) -> Iterator[tuple[dramatiq.Broker, Worker, InFlight, list[str]]]:
    """RabbitMQ is the broker whose counts leave out the messages a worker holds: there
    only ``InFlight`` knows of them."""
    config = settings().model_copy(update={"min_backoff_ms": 30, "max_backoff_ms": 60})
    broker: dramatiq.Broker
    if request.param == "rabbitmq":
        broker = rabbitmq_broker(config, url=request.getfixturevalue("rabbitmq_vhost"),
                                 max_retries=1)
        broker.flush_all()  # type: ignore[attr-defined]
    else:
        broker = redis_broker(config, client=fakeredis.FakeRedis(), max_retries=1,
                              namespace=f"billing-test-{uuid.uuid4().hex[:8]}")
    inflight = track(broker)
    worker = Worker(broker, worker_threads=2, worker_timeout=20)
    done: list[str] = []
    yield broker, worker, inflight, done
    worker.stop()
    broker.close()


def actors(broker: dramatiq.Broker, done: list[str]) -> dict[str, Any]:
    failed = threading.Event()

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name=f"leaf_{uuid.uuid4().hex}")
    def leaf(name: str) -> None:
        time.sleep(0.05)
        done.append(name)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name=f"tree_{uuid.uuid4().hex}")
    def tree(depth: int) -> None:
        time.sleep(0.02)
        if depth:
            tree.send(depth - 1)
        else:
            leaf.send("tree")

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name=f"flaky_{uuid.uuid4().hex}")
    def flaky() -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("the first attempt fails")
        done.append("flaky")

    return {"leaf": leaf, "tree": tree, "flaky": flaky}


def test_the_first_middleware_counts_every_message(
        setup: tuple[dramatiq.Broker, Worker, InFlight, list[str]]) -> None:
    broker, _, inflight, _ = setup
    assert broker.middleware[0] is inflight


def test_a_drain_waits_for_follow_ups_retries_and_delayed_messages(
        setup: tuple[dramatiq.Broker, Worker, InFlight, list[str]]) -> None:
    broker, worker, inflight, done = setup
    a = actors(broker, done)
    worker.start()
    a["tree"].send(5)
    a["flaky"].send()
    a["leaf"].send_with_options(args=("delayed",), delay=200)
    join(broker, [worker], inflight)
    assert sorted(done) == ["delayed", "flaky", "tree"]
    assert inflight.idle()


def test_a_drain_with_nothing_in_flight_returns_at_once(
        setup: tuple[dramatiq.Broker, Worker, InFlight, list[str]]) -> None:
    broker, worker, inflight, _ = setup
    worker.start()
    started = time.perf_counter()
    join(broker, [worker], inflight)
    assert time.perf_counter() - started < 1.0
