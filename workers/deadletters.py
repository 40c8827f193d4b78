"""Dead letters: messages that failed after every retry, or that nobody can decode.

They are kept in the database (``dead_letters``) with their error. A message the database
could not take when it failed (an outage) waits in the broker's own dead-letter queue;
``sweep`` moves those into the table, so that ``billing dead-letters`` shows everything
and nothing is left where an operator cannot see it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dramatiq

from persistence.tables import DeadLetterRow
from services import clock
from services.operator import dead_letters
from services.operator.dead_letters import Letter
from workers.broker import QUEUE, UNDECODABLE

UNDECODABLE_ACTOR = "(undecodable)"


def keep_undecodable(message_id: str, raw_base64: str, reason: str, now: datetime) -> None:
    dead_letters.keep([Letter(message_id, QUEUE, UNDECODABLE_ACTOR,
                              json.dumps({"raw_base64": raw_base64}), reason)], now)


def _letter(data: bytes, origin: str) -> Letter:
    """One message found in a broker's dead-letter queue, to store."""
    message = dramatiq.Message.decode(data)
    if message.actor_name == UNDECODABLE:
        raw, reason = message.args
        return Letter(message.message_id, QUEUE, UNDECODABLE_ACTOR,
                      json.dumps({"raw_base64": raw}), reason)
    return Letter(message.message_id, message.queue_name, message.actor_name,
                  message.encode().decode("ascii"),
                  f"found in the broker's dead-letter queue ({origin}); the error was "
                  "not recorded (the database was unavailable when it failed)")


def sweep(broker: dramatiq.Broker) -> int:
    """Move every message of the broker's dead-letter queue into the database; how many."""
    now = clock.now()
    moved = 0
    if hasattr(broker, "client") and hasattr(broker, "namespace"):  # Redis
        client, xq = broker.client, f"{broker.namespace}:{QUEUE}.XQ"
        while True:
            ids = client.zrange(xq, 0, 99)
            if not ids:
                return moved
            bodies = client.hmget(f"{xq}.msgs", ids)
            dead_letters.keep([_letter(body, "Redis") for body in bodies if body is not None],
                              now)
            client.zrem(xq, *ids)
            client.hdel(f"{xq}.msgs", *ids)
            moved += len(ids)
    if hasattr(broker, "channel"):  # RabbitMQ
        channel = broker.channel
        while True:
            method, _, body = channel.basic_get(queue=f"{QUEUE}.XQ", auto_ack=False)
            if method is None:
                return moved
            dead_letters.keep([_letter(body, "RabbitMQ")], now)
            channel.basic_ack(method.delivery_tag)
            moved += 1
    return moved


def rows() -> list[DeadLetterRow]:
    return dead_letters.rows()


def arguments(row: DeadLetterRow) -> str:
    """What the dead message carried, for a listing."""
    try:
        data = json.loads(row.message)
    except ValueError:
        return row.message[:200]
    if "raw_base64" in data:
        raw = base64.b64decode(data["raw_base64"])
        return "raw bytes: " + raw[:160].decode("utf-8", "backslashreplace")
    return json.dumps(data.get("args", []))[:200]


def requeue(broker: dramatiq.Broker, message_ids: Sequence[str] | None = None) -> int:
    """Send dead letters again — the same message id, retries and error reset — and forget
    them (all of them, or those of ``message_ids``). A message nobody can decode is not
    requeued (there is nothing to send). How many were requeued."""
    def send(r: DeadLetterRow) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message.decode(r.message.encode())
        options = {k: v for k, v in message.options.items()
                   if k not in ("retries", "traceback", "eta", "redis_message_id")}
        broker.enqueue(dramatiq.Message(**{**message.asdict(), "queue_name": QUEUE,
                                           "options": options}))

    # taken (deleted) before they are sent, and sent before the commit (see the service)
    return dead_letters.requeue(message_ids, UNDECODABLE_ACTOR, send)
