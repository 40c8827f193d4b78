"""What operators see of time: the coming bill runs of each entity (local and UTC, with the
DST changes that move them), and the state of the scheduler, queues and stores
(``billing schedule``, ``billing status``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from persistence.tables import SchedulerBeatRow
from scheduler import run_times
from services import rollups
from services.operator import scheduling
from services.operator import status as stores_status
from workers.broker import queue_depths


@dataclass(frozen=True)
class ComingRun:
    entity: str
    timezone: str
    local_date: date
    run_at: datetime  # UTC
    utc_offset: str  # of 08:15 local that day, e.g. "+01:00"
    dst_change: str | None  # "+01:00 → +02:00" when the offset differs from the day before


def _offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def coming_runs(now: datetime, *, entity: str | None = None, days: int = 7
                ) -> list[ComingRun]:
    """Each entity's runs after ``now`` over the next ``days`` local dates, by instant."""
    zones = scheduling.entity_zones()
    if entity is not None:
        zones = {e: tz for e, tz in zones.items() if e == entity}
    runs: list[ComingRun] = []
    for entity_id, tz in sorted(zones.items()):
        day = run_times.latest_due(now, tz)
        before = run_times.utc_offset_minutes(run_times.run_instant(day, tz), tz)
        for _ in range(days):
            day = run_times.next_run(day)
            at = run_times.run_instant(day, tz)
            offset = run_times.utc_offset_minutes(at, tz)
            change = f"{_offset(before)} → {_offset(offset)}" if offset != before else None
            runs.append(ComingRun(entity_id, tz, day, at, _offset(offset), change))
            before = offset
    return sorted(runs, key=lambda r: (r.run_at, r.entity))


NO_BROKER = "not configured (BILLING_BROKER_URL)"


@dataclass(frozen=True)
class Status:
    database: str  # "ok", or why not
    broker: str  # "ok", "not configured", or why not
    queues: dict[str, int] | None
    dead_letters: int | None  # kept in the database
    unfinished_runs: int | None  # claimed or sent, not done
    schedulers: list[SchedulerBeatRow]
    batches_not_folded: int | None = None  # ingest batches the rollups lack (PostgreSQL)


def status(broker: object | None) -> Status:
    """Whether the database and the broker answer, the queue's depths, dead letters, runs
    not done, and every scheduler's last beat (when it woke, the next run it waits for)."""
    database, dead, unfinished, beats, behind = "ok", None, None, [], None
    try:
        stores = stores_status.stores()
        dead, unfinished, beats = stores.dead_letters, stores.unfinished_runs, stores.schedulers
        lag = rollups.lag()
        behind = lag.behind if lag.folds else None
    except Exception as exc:
        database = f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    queues, broker_state = None, NO_BROKER
    if broker is not None:
        try:
            queues = queue_depths(broker)  # type: ignore[arg-type]
            broker_state = "ok"
        except Exception as exc:
            broker_state = f"unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    return Status(database, broker_state, queues, dead, unfinished, beats, behind)
