"""The coming bill runs of every entity, earliest first, and what a wake does with the due
ones.

``Schedule`` is a heap of (run instant, entity, local date), one entry per entity: a wake
pops only the entries that are due, so it costs in proportion to the runs due, not to the
entities. Each entity enters at its most recent due run (``latest_due``): after a restart
— even days later — that one run catches the entity up (it issues every invoice still
due, each with its own boundary, under the run instant of that date); then it moves on one
local date at a time. A run claimed before (this scheduler before a restart, or another
one) is not claimed again: claims are unique rows.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import structlog

from scheduler import run_times
from services.operator import scheduling
from services.settings import settings
from workers import actors

log = structlog.get_logger("billing")


@dataclass(frozen=True)
class Due:
    entity: str
    local_date: date
    run_at: datetime


@dataclass
class Schedule:
    """Every entity's next run (pendulum: 08:15 local, DST resolved as SPEC §2 says)."""

    zones: dict[str, str] = field(default_factory=dict)  # entity -> time zone
    heap: list[tuple[datetime, str, date, str]] = field(default_factory=list)

    @classmethod
    def of(cls, zones: Mapping[str, str], now: datetime) -> Schedule:
        schedule = cls(dict(zones))
        latest = {tz: run_times.latest_due(now, tz) for tz in set(zones.values())}
        for entity, tz in zones.items():
            day = latest[tz]
            schedule.heap.append((run_times.run_instant(day, tz), entity, day, tz))
        heapq.heapify(schedule.heap)
        return schedule

    def update(self, zones: Mapping[str, str], now: datetime) -> int:
        """Schedule new entities, and those whose time zone changed, from their latest due
        run (the entries of an old zone are dropped when they come up); how many."""
        changed = {e: tz for e, tz in zones.items() if self.zones.get(e) != tz}
        latest = {tz: run_times.latest_due(now, tz) for tz in set(changed.values())}
        for entity, tz in changed.items():
            self.zones[entity] = tz
            day = latest[tz]
            heapq.heappush(self.heap, (run_times.run_instant(day, tz), entity, day, tz))
        return len(changed)

    def __len__(self) -> int:
        return len(self.zones)

    def next(self) -> Due | None:
        """The earliest coming run."""
        while self.heap and self.zones.get(self.heap[0][1]) != self.heap[0][3]:
            heapq.heappop(self.heap)  # an entity's entry from before its zone changed
        if not self.heap:
            return None
        at, entity, day, _ = self.heap[0]
        return Due(entity, day, at)

    def pop_due(self, now: datetime) -> list[Due]:
        """The runs due at ``now``, each entity's next run taking its place."""
        due: list[Due] = []
        while (coming := self.next()) is not None and coming.run_at <= now:
            _, entity, day, tz = heapq.heappop(self.heap)
            due.append(coming)
            following = run_times.next_run(day)
            heapq.heappush(self.heap, (run_times.run_instant(following, tz), entity, following,
                                       tz))
        return due


@dataclass(frozen=True)
class Woke:
    claimed: list[tuple[str, date]]  # runs claimed at this wake
    sent: list[tuple[str, date]]  # bill_run messages sent at this wake (new and again)


def wake(schedule: Schedule, now: datetime,
         entity_ids: Collection[str] | None = None) -> Woke:
    """Claim the runs due, then send every claim not done and not sent recently, marked
    sent in the transaction that sends it: locked while it is sent, so that two schedulers
    send each run once (a run claimed by one may be sent by the other)."""
    due = schedule.pop_due(now)
    claimed = scheduling.claim([(d.entity, d.local_date, d.run_at) for d in due], now)
    if claimed:  # one line a wake: a wake may claim thousands
        log.info("bill runs claimed", runs=len(claimed), first=f"{claimed[0][0]}@"
                 f"{claimed[0][1].isoformat()}")
    sent = send_claims(now, entity_ids, set(claimed))
    return Woke(claimed, sent)


SEND_BATCH = 500  # runs per bill_runs message


def _send(runs: list[tuple[str, date]]) -> None:
    for start in range(0, len(runs), SEND_BATCH):
        batch = runs[start:start + SEND_BATCH]
        if len(batch) == 1:
            actors.bill_run.send(batch[0][0], batch[0][1].isoformat())
        else:
            actors.bill_runs.send([[e, d.isoformat()] for e, d in batch])


def send_claims(now: datetime, entity_ids: Collection[str] | None = None,
                fresh: Collection[tuple[str, date]] = ()) -> list[tuple[str, date]]:
    """Send every claim that is not done and not sent recently (see ``wake``): taken in one
    statement, sent as ``bill_runs`` messages of up to ``SEND_BATCH`` runs (one run alone
    goes as ``bill_run``), committed once the broker has them all — if it fails midway,
    the rollback leaves them all to the next wake (a run sent twice issues nothing twice)."""
    resend_after = timedelta(seconds=settings().bill_run_resend_seconds)
    runs = scheduling.send_claims(now, resend_after, entity_ids, _send)
    claimed_now = set(fresh)
    again = [r for r in runs if r not in claimed_now]
    if again:
        log.warning("bill runs sent again", runs=len(again),
                    first=f"{again[0][0]}@{again[0][1].isoformat()}")
    return runs
