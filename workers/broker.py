"""The broker and its middleware, and the registry of the project's actors.

- **Redis** (``redis://…``) or **RabbitMQ** (``amqp://…``), chosen by
  ``BILLING_BROKER_URL`` (``BILLING_REDIS_URL`` is read too): the production brokers.
- **In-process** (``StubBroker``) only where it is chosen explicitly: replays, tests, the
  demo and the embedded web try-out. Without a broker URL, sending a message fails loudly
  instead of going nowhere.

Messages are JSON in which numbers stay exact: a ``Decimal`` is written as a JSON number
with its exact digits and a JSON number is read back as a ``Decimal``, so a message
survives encode → decode → encode byte for byte (a retry re-encodes what it decoded).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ParamSpec

import dramatiq
import simplejson
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

from services import clock
from services.outages import is_infrastructure
from services.settings import Settings, settings

QUEUE = "billing"
UNDECODABLE = "undecodable_message"  # the actor that keeps a message nobody can read
P = ParamSpec("P")
ACTORS: list[dramatiq.Actor[Any, Any]] = []
log = structlog.get_logger("billing")

# A JSON integer longer than this is read as a Decimal (Python's int refuses more than
# 4,300 digits, and converting long ones costs the square of their length); the field it
# is in then refuses it with a reason.
_LONG_INT = 300
_REDIS_ID = re.compile(rb'"redis_message_id"\s*:\s*"([0-9a-fA-F-]{1,64})"')
_MESSAGE_ID = re.compile(rb'"message_id"\s*:\s*"([0-9a-zA-Z_.:-]{1,128})"')


def _int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _LONG_INT else Decimal(text)


# Values JSON writes as they are: the walk below leaves them alone without a call (a usage
# message is a thousand events of short strings: most of its values are these).
AS_THEY_ARE = frozenset({str, int, bool, type(None)})


class Plain(list[dict[str, Any]]):
    """A list of dicts under string keys whose values are all ``AS_THEY_ARE``, vouched for
    by the code that built it (``UsageBatcher``): the walk below passes it by, as it would
    have returned it unchanged (issue #21: the walk was a third of a producer's time)."""


def _exact(value: Any) -> Any:
    """Floats as the decimals their shortest text spells, non-finite numbers as text (JSON
    has none), dates as ISO text, tuples as lists: what decoding gives back, so that a
    second encoding is the same bytes."""
    kind = type(value)
    if kind is Plain:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in AS_THEY_ARE else _exact(v)
                for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in AS_THEY_ARE else _exact(v) for v in value]
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") \
            else repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, Decimal):
        return value if value.is_finite() else str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class ExactJSONEncoder(Encoder):
    """JSON with exact numbers (see the module's docstring). A message that cannot be
    decoded — invalid UTF-8 or JSON, nesting too deep — is not an error of the consumer:
    it is handed to the ``undecodable_message`` actor, which keeps it as a dead letter
    with the reason, once, and acknowledges it."""

    def encode(self, data: dict[str, Any]) -> bytes:
        text: str = simplejson.dumps(_exact(data), use_decimal=True, separators=(",", ":"),
                                     ensure_ascii=True, allow_nan=False)
        return text.encode("ascii")

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            result = simplejson.loads(data.decode("utf-8"), use_decimal=True, parse_int=_int)
            problem = _not_a_message(result)
            if problem:
                return undecodable(data, f"not a dramatiq message: {problem}")
            return result  # type: ignore[no-any-return]
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            return undecodable(data, f"{type(exc).__name__}: {str(exc)[:300]}")


_FIELDS = {"queue_name": str, "actor_name": str, "args": list, "kwargs": dict, "options": dict,
           "message_id": str, "message_timestamp": int}


def _not_a_message(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "not a JSON object"
    for name, kind in _FIELDS.items():
        if name not in value:
            if name in ("message_id", "message_timestamp"):
                continue
            return f"{name} is missing"
        if not isinstance(value[name], kind) or isinstance(value[name], bool):
            return f"{name} must be a {kind.__name__}"
    unknown = sorted(set(value) - set(_FIELDS))
    return f"unknown field {unknown[0]!r}" if unknown else None


def undecodable(data: bytes, reason: str) -> dict[str, Any]:
    """A message for the ``undecodable_message`` actor, carrying the raw bytes, under the
    broker ids found in them (so that acknowledging it removes the original)."""
    redis_id = _REDIS_ID.search(data)
    message_id = _MESSAGE_ID.search(data)
    options: dict[str, Any] = {"max_retries": 0}
    if redis_id:
        options["redis_message_id"] = redis_id.group(1).decode()
    fallback = f"undecodable-{hashlib.sha256(data).hexdigest()[:24]}"
    return {
        "queue_name": QUEUE, "actor_name": UNDECODABLE,
        "args": [base64.b64encode(data).decode("ascii"), reason], "kwargs": {},
        "options": options,
        "message_id": message_id.group(1).decode() if message_id else fallback,
        "message_timestamp": 0,
    }


def claim_undecodable(message: Any, raw: bytes) -> None:
    """Make an undecodable message acknowledgeable: on Redis, the broker's id of raw bytes
    that carry none is found by looking for those bytes among the queue's messages."""
    broker: Any = dramatiq.get_broker()
    if "redis_message_id" in message.options or not hasattr(broker, "client"):
        return
    key = f"{broker.namespace}:{QUEUE}.msgs"
    for field, value in broker.client.hscan_iter(key, count=1000):
        if value == raw:
            message.options["redis_message_id"] = field.decode()
            return


class SentAt(Middleware):
    """Stamps every message, when the application enqueues it, with the instant it was
    sent (``options["sent_at"]``, from the sender's clock; strictly increasing within a
    process on the real clock). Commands apply in that order, whatever order dramatiq
    delivers them in. A retry keeps the stamp; an explicit ``sent_at`` is kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = datetime.min.replace(tzinfo=UTC)

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if "sent_at" in message.options:
            return
        now = clock.now()
        if not clock.is_simulated():
            with self.lock:
                now = max(now, self.last + timedelta(microseconds=1))
                self.last = now
        message.options["sent_at"] = now.isoformat()


def sent_at(message: Any) -> datetime:
    """The instant a message was sent: its stamp, else dramatiq's own timestamp (ms)."""
    stamp = message.options.get("sent_at")
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp)
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
        except ValueError:
            pass
    return datetime.fromtimestamp(message.message_timestamp / 1000, UTC)


class DeadLetters(Middleware):
    """Keeps every message that failed for good (retries exhausted) in the database, with
    its error, for ``billing dead-letters`` to list and requeue. When the database cannot
    take it, the broker's own dead-letter queue keeps it (``billing dead-letters`` reads
    that too)."""

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        from persistence import db
        from services.operator.dead_letters import Letter, keep

        if not db.is_configured():
            return
        exception = getattr(message, "_exception", None)
        error = "" if exception is None else f"{type(exception).__name__}: {exception}"
        try:
            keep([Letter(message.message_id, message.queue_name, message.actor_name,
                         message.encode().decode("ascii"), error)], clock.now())
        except Exception:  # the store is down: the broker's dead-letter queue still has it
            log.warning("could not store a dead letter; it stays in the broker's "
                        "dead-letter queue", message_id=message.message_id)


def middleware(config: Settings, *, max_retries: int | None = None,
               prometheus: bool = False) -> list[Middleware]:
    """The middleware of every broker. Prometheus metrics only work in a ``dramatiq`` worker
    process (they are set up when it boots), so only the process's own broker has them.

    Retries: an infrastructure error is ridden out in the worker (``rides_out_outages``);
    any other error is retried ``max_retries`` times, then the message is a dead letter."""
    retries = config.max_retries if max_retries is None else max_retries

    def retry_when(attempts: int, exception: BaseException) -> bool:
        return is_infrastructure(exception) or attempts < retries

    extra: list[Middleware] = []
    if prometheus:
        from dramatiq.middleware.prometheus import Prometheus

        extra.append(Prometheus())
    return [*extra,
        SentAt(),
        AgeLimit(),
        TimeLimit(time_limit=config.time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=retries, min_backoff=config.min_backoff_ms,
                max_backoff=config.max_backoff_ms, retry_when=retry_when),
        CurrentMessage(),
        DeadLetters(),
    ]


DEAD_MESSAGE_TTL_MS = 10 * 365 * 86_400_000  # the broker's dead letters are kept, not expired


def redis_broker(config: Settings, *, url: str | None = None, client: Any = None,
                 namespace: str | None = None, max_retries: int | None = None,
                 prometheus: bool = False) -> dramatiq.Broker:
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(  # type: ignore[no-untyped-call]
        url=None if client is not None else (url or config.broker_url),
        client=client,
        namespace=namespace or config.queue_namespace,
        middleware=middleware(config, max_retries=max_retries, prometheus=prometheus),
        heartbeat_timeout=config.redis_heartbeat_timeout_ms,
        maintenance_chance=config.redis_maintenance_chance,
        dead_message_ttl=DEAD_MESSAGE_TTL_MS,
    )


def rabbitmq_broker(config: Settings, *, url: str | None = None,
                    max_retries: int | None = None,
                    prometheus: bool = False) -> dramatiq.Broker:
    """RabbitMQ with durable queues, persistent messages (dramatiq's defaults) and
    publisher confirms: ``send`` returns once RabbitMQ has the message."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    return RabbitmqBroker(
        url=url or config.broker_url, confirm_delivery=True,
        middleware=middleware(config, max_retries=max_retries, prometheus=prometheus),
    )


def broker_for(url: str, config: Settings, *, namespace: str | None = None,
               max_retries: int | None = None, prometheus: bool = False) -> dramatiq.Broker:
    """The broker a URL names: ``redis://`` / ``rediss://`` or ``amqp://`` / ``amqps://``."""
    if url.startswith(("amqp://", "amqps://")):
        return rabbitmq_broker(config, url=url, max_retries=max_retries, prometheus=prometheus)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return redis_broker(config, url=url, namespace=namespace, max_retries=max_retries,
                            prometheus=prometheus)
    raise ValueError(f"BILLING_BROKER_URL: {url.split('://')[0]}:// is not a broker "
                     "(use redis://… or amqp://…)")


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


class NoBroker(StubBroker):
    """What an application gets without a broker URL: sending fails loudly, instead of
    putting the message in a queue of this process that nothing consumes."""

    REASON = ("no message broker is configured: set BILLING_BROKER_URL (redis://… or "
              "amqp://…); the in-process broker is only for replays, tests and the demo")

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        raise RuntimeError(self.REASON)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> Any:
        raise RuntimeError(self.REASON)


def build_broker(config: Settings) -> dramatiq.Broker:
    """The broker of ``BILLING_BROKER_URL``, else one that refuses to send."""
    if config.broker_url:
        return broker_for(config.broker_url, config, prometheus=config.prometheus)
    return NoBroker(middleware=middleware(config))


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


class InFlight(Middleware):
    """The messages sent by this process that its workers have not finished yet (by id), for
    a replay or a test that drains the broker: it waits on this instead of polling the
    broker's counts. Put it first in the broker's middleware (``track``): a message is
    counted from before it is sent, and a follow-up another middleware sends when a message
    ends (a retry, a pipeline) is counted before that message's worker finishes it. A
    delayed message keeps its id when it is moved to the queue. Messages sent by other
    processes are not seen; ``join`` still asks the broker for those once."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.changed = threading.Condition()

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        with self.changed:
            self.ids.add(message.message_id)

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None
                              ) -> None:
        self._finished(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._finished(message)

    def _finished(self, message: Any) -> None:
        with self.changed:
            self.ids.discard(message.message_id)
            if not self.ids:
                self.changed.notify_all()

    def wait(self) -> None:
        """Until none is in flight."""
        with self.changed:
            while self.ids:
                self.changed.wait(1.0)

    def idle(self) -> bool:
        with self.changed:
            return not self.ids


def track(broker: dramatiq.Broker) -> InFlight:
    """An ``InFlight`` put first in ``broker``'s middleware."""
    inflight = InFlight()
    if broker.middleware:
        broker.add_middleware(inflight, before=type(broker.middleware[0]))
    else:
        broker.add_middleware(inflight)
    return inflight


def join(broker: dramatiq.Broker, workers: Sequence[dramatiq.Worker],
         inflight: InFlight) -> None:
    """Wait until every message, and every follow-up message it sent, is processed (replays
    and tests: they drain the broker before the clock moves on): wait on ``inflight`` (this
    process sends every message), then ask the broker once whether anything is left."""
    if isinstance(broker, StubBroker):
        broker.join(QUEUE, fail_fast=False)
    else:
        while True:
            inflight.wait()
            for worker in workers:  # their messages' follow-ups are counted when this returns
                worker.join()
            if hasattr(broker, "client"):  # Redis: until the acknowledgements are in too
                broker.join(QUEUE, interval=2)  # type: ignore[call-arg]
                left = 0
            else:  # RabbitMQ (its counts leave out what a worker holds): what others sent
                left = sum(broker.get_queue_message_counts(QUEUE)[:-1])  # type: ignore[attr-defined]
            if inflight.idle() and not left:
                break
    for worker in workers:
        worker.join()


class RetryLater(dramatiq.Retry):
    """A transient failure of the outside world (a receiver down): retried with backoff,
    logged as a warning with its reason (not an error with a traceback), and not a bug."""


class FailureRecorder(Middleware):
    """Remembers actor exceptions, so that a replay or a test stops at them (on any broker)
    instead of going on past a dead-lettered message. ``RetryLater`` and an outage (both
    retried until they pass) are not bugs."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if exception is not None and not isinstance(exception, RetryLater) \
                and not is_infrastructure(exception):
            self.failures.append(f"{message}: {type(exception).__name__}: {exception}")


def current_broker() -> dramatiq.Broker:
    return dramatiq.get_broker()


def current_message() -> Any:
    return CurrentMessage.get_current_message()


def rides_out_outages(fn: Callable[P, None]) -> Callable[P, None]:
    """Run ``fn`` until it gets through an outage: an infrastructure error (the database or
    the broker unreachable) is tried again in this thread, with capped exponential backoff
    and no expiry, its time limit starting again with each attempt. The message stays with
    this worker, unacknowledged — never in a delay queue or a dead-letter set — so a
    restarted broker or a killed worker loses nothing, and an outage of any length ends in
    the message being processed (issue #9). Any other error is the message's own: retried
    a few times by dramatiq, then a dead letter."""

    @functools.wraps(fn)
    def attempt(*args: P.args, **kwargs: P.kwargs) -> None:
        config = settings()
        delay = config.min_backoff_ms / 1000
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_infrastructure(exc):
                    raise
                log.warning("outage: trying again", actor=fn.__name__, in_seconds=delay,
                            error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            time.sleep(delay)
            delay = min(delay * 2, config.max_backoff_ms / 1000)
            _restart_time_limit()

    return attempt


def _restart_time_limit() -> None:
    """A new attempt after an outage gets the whole time limit again."""
    for middleware_ in dramatiq.get_broker().middleware:
        if isinstance(middleware_, TimeLimit):
            middleware_.manager.add_timeout(  # type: ignore[no-untyped-call]
                threading.get_ident(), middleware_.time_limit)


def actor(fn: Callable[P, None]) -> dramatiq.Actor[P, None]:
    """Declare a project actor on the billing queue; it rides out outages."""
    declared: dramatiq.Actor[P, None] = dramatiq.actor(queue_name=QUEUE, actor_name=fn.__name__)(
        rides_out_outages(fn))
    ACTORS.append(declared)
    return declared


dramatiq.set_encoder(ExactJSONEncoder())
dramatiq.set_broker(build_broker(settings()))


def queue_depths(broker: dramatiq.Broker) -> dict[str, int]:
    """Messages waiting in the billing queue: ready, delayed (retries) and dead-lettered."""
    if hasattr(broker, "client") and hasattr(broker, "namespace"):  # Redis
        client, base = broker.client, f"{broker.namespace}:{QUEUE}"
        return {"ready": int(client.llen(base)), "delayed": int(client.llen(f"{base}.DQ")),
                "dead": int(client.zcard(f"{base}.XQ"))}
    if hasattr(broker, "get_queue_message_counts"):  # RabbitMQ
        ready, delayed, dead = broker.get_queue_message_counts(QUEUE)
        return {"ready": int(ready), "delayed": int(delayed), "dead": int(dead)}
    queues: Any = getattr(broker, "queues", {})  # in-process
    return {"ready": queues[QUEUE].qsize() if QUEUE in queues else 0, "delayed": 0,
            "dead": 0}
