"""Requeueing dead letters: messages that failed after every retry, kept in the database."""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq

from persistence import deadletters
from persistence.db import unit_of_work


def requeue(broker: dramatiq.Broker, message_ids: Sequence[str] | None = None) -> int:
    """Send dead letters again — the same message id, retries and error reset — and forget
    them (all of them, or those of ``message_ids``). How many were requeued."""
    with unit_of_work() as session:
        rows = [r for r in deadletters.all(session)
                if not message_ids or r.message_id in message_ids]
        for r in rows:
            options = {k: v for k, v in r.message.get("options", {}).items()
                       if k not in ("retries", "traceback", "eta")}
            message: dramatiq.Message[object] = dramatiq.Message(
                **{**r.message, "options": options})
            broker.enqueue(message)
            deadletters.remove(session, r.message_id)
    return len(rows)
