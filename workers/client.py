"""What an application uses to send usage: batches of events per message.

    from workers.client import UsageBatcher

    with UsageBatcher(batch_size=500) as usage:
        for request in requests:
            usage.add(key=request.id, customer=request.customer, meter="api-calls",
                      quantity=1, timestamp=request.at)

Many events per message is what makes ingest fast (a message costs about as much to move
as the inserts of hundreds of events). ``flush()`` sends what is buffered; leaving the
``with`` block flushes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

import dramatiq

from workers.broker import AS_THEY_ARE, QUEUE, Plain

RECORD_USAGE = "record_usage"  # the actor (workers/actors.py), sent to by name


def send_usage(events: list[dict[str, Any]]) -> None:
    """What ``record_usage.send(events)`` does, by the actor's name and queue: so that an
    application sending usage imports the broker, not the billing engine behind the actor
    (a third of the import time; issue #21)."""
    dramatiq.get_broker().enqueue(dramatiq.Message(
        queue_name=QUEUE, actor_name=RECORD_USAGE, args=(events,), kwargs={}, options={}))


class UsageBatcher:
    def __init__(self, batch_size: int = 500) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.pending: list[dict[str, Any]] = []
        self.plain = True  # every event so far is of strings (and ints, booleans, None)
        self.sent_messages = 0

    def add(self, *, key: str, customer: str, meter: str, quantity: Decimal | int | str,
            timestamp: datetime | str, properties: dict[str, Any] | None = None) -> None:
        """Buffer one event; a full batch is sent at once."""
        if isinstance(timestamp, datetime):
            if timestamp.tzinfo is None:
                raise ValueError("timestamp must be timezone-aware")
            timestamp = timestamp.isoformat()
        event: dict[str, Any] = {"key": key, "customer": customer, "meter": meter,
                                 "quantity": quantity if type(quantity) is str else str(quantity),
                                 "timestamp": timestamp}
        if not (type(key) is str and type(customer) is str and type(meter) is str
                and type(timestamp) is str):
            self.plain = False
        if properties:
            event["properties"] = properties
            if self.plain and not all(type(k) is str and type(v) in AS_THEY_ARE
                                      for k, v in properties.items()):
                self.plain = False
        pending = self.pending
        pending.append(event)
        if len(pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            send_usage(Plain(self.pending) if self.plain else self.pending)
            self.pending = []
            self.plain = True
            self.sent_messages += 1

    def __enter__(self) -> UsageBatcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.flush()
