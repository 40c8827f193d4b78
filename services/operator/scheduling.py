"""The scheduler's reads and writes: entity zones, the catalog's revision, claims, sends
and beats (``scheduler/``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime, timedelta

from persistence import billruns
from persistence.db import unit_of_work
from persistence.tables import SchedulerBeatRow

Run = tuple[str, date]


def entity_zones() -> dict[str, str]:
    """Every entity's time zone."""
    with unit_of_work() as session:
        return billruns.entity_zones(session)


def zones_if_changed(revision: int | None) -> tuple[int, dict[str, str] | None]:
    """The catalog's revision, and every entity's time zone when it is not ``revision``
    (None when it is: nothing changed)."""
    with unit_of_work() as session:
        current = billruns.catalog_revision(session)
        if current == revision:
            return current, None
        return current, billruns.entity_zones(session)


def claim(runs: Sequence[tuple[str, date, datetime]], now: datetime) -> list[Run]:
    """Claim the (entity, local date, run instant) runs not claimed yet; those claimed."""
    with unit_of_work() as session:
        return billruns.claim_many(session, runs, now)


def send_claims(now: datetime, resend_after: timedelta, entity_ids: Collection[str] | None,
                send: Callable[[list[Run]], None]) -> list[Run]:
    """Take every claim not done and not sent within ``resend_after`` and ``send`` them in
    the transaction that marks them sent: committed once ``send`` returned, rolled back
    (left to the next wake) if it raises. The runs taken."""
    with unit_of_work() as session:
        runs = billruns.take_to_send(session, now, resend_after, entity_ids)
        if runs:
            send(runs)
    return runs


def beat(row: SchedulerBeatRow) -> None:
    """Record a scheduler's wake (``billing status`` shows the last of each)."""
    with unit_of_work() as session:
        billruns.beat(session, row)
