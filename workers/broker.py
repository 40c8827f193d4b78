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
from typing import Any, TypeVar

import dramatiq
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

from workers.settings import Settings, settings

QUEUE = "billing"
F = TypeVar("F", bound=Callable[..., Any])
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


def middleware(config: Settings, *, max_retries: int | None = None) -> list[Middleware]:
    return [
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
    ]


def build_broker(config: Settings, *, max_retries: int | None = None) -> dramatiq.Broker:
    mw = middleware(config, max_retries=max_retries)
    if config.redis_url:
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=config.redis_url, namespace=config.queue_namespace, middleware=mw)
    return StubBroker(middleware=mw)


def stub_broker(*, max_retries: int = 0) -> StubBroker:
    """A fresh in-process broker (what a replay drives)."""
    broker = StubBroker(middleware=middleware(settings(), max_retries=max_retries))
    return broker


def use(broker: dramatiq.Broker) -> dramatiq.Broker:
    """Make ``broker`` the one every project actor sends to and is consumed from."""
    dramatiq.set_broker(broker)
    for actor in ACTORS:
        actor.broker = broker
        broker.declare_actor(actor)
    return broker


def actor(fn: F) -> F:
    """Declare a project actor on the billing queue."""
    declared = dramatiq.actor(fn, queue_name=QUEUE)
    ACTORS.append(declared)
    return declared  # type: ignore[return-value]


dramatiq.set_encoder(ExactJSONEncoder())
dramatiq.set_broker(build_broker(settings()))
