"""The broker and its middleware, and the registry of the project's actors.

- In-process (``StubBroker``) when ``BILLING_REDIS_URL`` is unset: the embedded default,
  used by ``billing replay`` and the tests.
- Redis otherwise, for the ``worker`` process of the Procfile.

Messages are JSON in which decimals stay exact: a ``Decimal`` is written as a string and
a JSON number is read back as a ``Decimal``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ParamSpec

import dramatiq
import structlog
from dramatiq.brokers.stub import StubBroker
from dramatiq.encoder import Encoder
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from services.settings import Settings, settings

QUEUE = "billing"
P = ParamSpec("P")
ACTORS: list[dramatiq.Actor[Any, Any]] = []


class ExactJSONEncoder(Encoder):
    def encode(self, data: dict[str, Any]) -> bytes:
        return json.dumps(data, separators=(",", ":"), default=_default).encode("utf-8")

    def decode(self, data: bytes) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(data.decode("utf-8"), parse_float=Decimal)
        return result


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class DeadLetters(Middleware):
    """Keeps every message that failed for good (retries exhausted) in the database, with
    its error, for ``billing dead-letters`` to list and requeue. The broker's own dead-letter
    queue expires after a week; these rows do not."""

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        from persistence import db, deadletters
        from services import clock

        if not db.is_configured():
            return
        exception = getattr(message, "_exception", None)
        error = "" if exception is None else f"{type(exception).__name__}: {exception}"
        try:
            with db.unit_of_work() as session:
                deadletters.add(session, message.message_id, message.queue_name,
                                message.actor_name, message.asdict(), error, clock.now())
        except Exception:  # the store is down: the broker's dead-letter queue still has it
            structlog.get_logger("billing").exception(
                "could not store a dead letter", message_id=message.message_id)


def middleware(config: Settings, *, max_retries: int | None = None,
               prometheus: bool = False) -> list[Middleware]:
    """The middleware of every broker. Prometheus metrics only work in a ``dramatiq`` worker
    process (they are set up when it boots), so only the process's own broker has them."""
    extra: list[Middleware] = []
    if prometheus:
        from dramatiq.middleware.prometheus import Prometheus

        extra.append(Prometheus())
    return [*extra,
        AgeLimit(),
        TimeLimit(time_limit=config.time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(
            max_retries=config.max_retries if max_retries is None else max_retries,
            min_backoff=config.min_backoff_ms,
            max_backoff=config.max_backoff_ms,
        ),
        CurrentMessage(),
        DeadLetters(),
    ]


def redis_broker(config: Settings, *, url: str | None = None, client: Any = None,
                 namespace: str | None = None, max_retries: int | None = None,
                 prometheus: bool = False) -> dramatiq.Broker:
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(  # type: ignore[no-untyped-call]
        url=None if client is not None else (url or config.redis_url),
        client=client,
        namespace=namespace or config.queue_namespace,
        middleware=middleware(config, max_retries=max_retries, prometheus=prometheus),
        heartbeat_timeout=config.redis_heartbeat_timeout_ms,
        maintenance_chance=config.redis_maintenance_chance,
    )


def delete_namespace(redis_url: str, namespace: str) -> None:
    """Remove every Redis key of a broker namespace (a replay's, a benchmark's, a test's)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def build_broker(config: Settings) -> dramatiq.Broker:
    """Redis when ``BILLING_REDIS_URL`` is set, else in-process."""
    if config.redis_url:
        return redis_broker(config, prometheus=config.prometheus)
    return StubBroker(middleware=middleware(config))


def stub_broker(*, max_retries: int = 0) -> StubBroker:
    """A fresh in-process broker. A replay gives it no retries: on the embedded store an
    actor error is a bug to stop at, not an outage to wait out."""
    return StubBroker(middleware=middleware(settings(), max_retries=max_retries))


def use(broker: dramatiq.Broker) -> dramatiq.Broker:
    """Make ``broker`` the one every project actor sends to and is consumed from."""
    dramatiq.set_broker(broker)
    for actor in ACTORS:
        actor.broker = broker
        broker.declare_actor(actor)
    return broker


class RetryLater(Exception):
    """A transient failure of the outside world (a receiver down): retried with backoff,
    and not a bug."""


class FailureRecorder(Middleware):
    """Remembers actor exceptions, so that a replay or a test stops at them (on any broker)
    instead of going on past a dead-lettered message. ``RetryLater`` is not a bug."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if exception is not None and not isinstance(exception, RetryLater):
            self.failures.append(f"{message}: {type(exception).__name__}: {exception}")


def actor(fn: Callable[P, None]) -> dramatiq.Actor[P, None]:
    """Declare a project actor on the billing queue."""
    declared: dramatiq.Actor[P, None] = dramatiq.actor(queue_name=QUEUE)(fn)
    ACTORS.append(declared)
    return declared


dramatiq.set_encoder(ExactJSONEncoder())
dramatiq.set_broker(build_broker(settings()))
