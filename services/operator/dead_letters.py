"""Dead letters kept in the database: keep, list, take for a requeue (``workers/``,
``billing dead-letters``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from persistence import deadletters
from persistence.db import unit_of_work
from persistence.tables import DeadLetterRow


@dataclass(frozen=True)
class Letter:
    message_id: str
    queue_name: str
    actor_name: str
    message: str  # the encoded message (or the JSON of raw bytes)
    error: str


def keep(letters: Sequence[Letter], now: datetime) -> None:
    """Store dead letters, in one transaction."""
    with unit_of_work() as session:
        for letter in letters:
            deadletters.add(session, letter.message_id, letter.queue_name,
                            letter.actor_name, letter.message, letter.error, now)


def rows() -> list[DeadLetterRow]:
    """Every dead letter kept."""
    with unit_of_work() as session:
        return deadletters.all(session)


def requeue(message_ids: Sequence[str] | None, skip_actor: str,
            send: Callable[[DeadLetterRow], None]) -> int:
    """Take (delete) the dead letters of ``message_ids`` (all when None) but those of
    ``skip_actor``, and ``send`` each before the commit: two requeues at once send each
    once, and one failing again at once is kept again (its insert waits for this commit)
    — if sending fails, the rollback keeps them all. How many were sent."""
    count = 0
    with unit_of_work() as session:
        for row in deadletters.take(session, message_ids or None, skip_actor=skip_actor):
            send(row)
            count += 1
    return count
