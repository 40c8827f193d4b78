"""The scheduler process's loop. It keeps every entity's next bill run in a ``Schedule``
(pendulum: 08:15 local) and sleeps until the earliest is due — at most
``BILLING_TICK_SECONDS``, after which it looks whether the catalog changed (one row: its
revision), sends again what was lost, and beats (``billing status`` shows the beats)."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime

import structlog

from persistence.tables import SchedulerBeatRow
from scheduler import metrics
from scheduler.schedule import Schedule, wake
from scheduler.tick import requeue_lost_deliveries
from services import alerts, clock, rollups
from services.operator import scheduling
from services.settings import settings
from workers.actors import enqueue_alert_events

log = structlog.get_logger("billing")


class Scheduler:
    """One scheduler process's state: its schedule and the catalog revision it is of."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.schedule = Schedule()
        self.revision: int | None = None
        self.started_at = clock.now()

    def refresh(self, now: datetime) -> None:
        """Schedule new and changed entities when the catalog's revision moved."""
        revision, zones = scheduling.zones_if_changed(self.revision)
        if zones is None:
            return
        added = self.schedule.update(zones, now)
        self.revision = revision
        log.info("schedule updated", entities=len(self.schedule), added=added,
                 catalog_revision=revision)

    def wake(self, now: datetime) -> None:
        started = time.perf_counter()
        self.refresh(now)
        woke = wake(self.schedule, now)
        requeue_lost_deliveries(now)
        try:  # an alert that cannot be evaluated never holds a bill run up
            enqueue_alert_events(alerts.evaluate_balances(now))
        except Exception:
            log.exception("balance alerts not evaluated")
        coming = self.schedule.next()
        scheduling.beat(SchedulerBeatRow(
            scheduler=self.name, started_at=self.started_at, woke_at=now,
            entities=len(self.schedule), sent=len(woke.sent),
            next_run_at=coming.run_at if coming else None,
            next_entity=coming.entity if coming else None,
            next_local_date=coming.local_date if coming else None))
        metrics.woke(now, woke, coming, len(self.schedule), time.perf_counter() - started)

    def seconds_to_sleep(self, now: datetime) -> float:
        """Until the next run is due, at most ``BILLING_TICK_SECONDS``."""
        limit = settings().tick_seconds
        coming = self.schedule.next()
        if coming is None:
            return limit
        return max(0.0, min(limit, (coming.run_at - now).total_seconds()))


def fold_pause(every: float, elapsed: float) -> float:
    """How long to wait after a turn that took ``elapsed`` seconds: the rest of the
    period (a long turn is followed by the next at once, not by a whole period more)."""
    return max(0.0, every - elapsed)


def evaluation_due(last: float | None, now: float, alert_every: float, every: float) -> bool:
    """Whether a fold turn starting at ``now`` evaluates alerts, the last evaluation having
    started at ``last``: at most every ``alert_every`` seconds, counted in fold turns of
    ``every`` (half a turn early is on time: turns do not start to the microsecond)."""
    return last is None or now - last >= alert_every - every / 2


def fold_loop(stop: threading.Event, every: float, alert_every: float = 0.0) -> None:
    """Fold new usage into the hourly rollups every ``every`` seconds until ``stop``, and
    evaluate the alerts of the customers folded at most every ``alert_every`` seconds (0:
    after every turn): an evaluation prices every folded customer's period, so under a steady
    flow of usage it costs more than the fold."""
    evaluated: float | None = None
    while not stop.is_set():
        began = time.perf_counter()
        try:
            report = rollups.fold()
            if not report.folds:
                return  # SQLite: nothing to fold
            if report.busy:
                log.info("usage fold deferred to the next turn",
                         behind=report.behind)
            elif report.events:
                log.debug("usage folded", events=report.events, batches=report.batches)
        except Exception:  # an outage: try again at the next turn
            log.exception("usage fold failed")
        if evaluation_due(evaluated, began, alert_every, every):
            evaluated = began
            try:  # the alerts of the customers folded (by this turn, an earlier one, by hand)
                enqueue_alert_events(alerts.evaluate_folded(clock.now()))
            except Exception:  # the watermark stays: the next evaluation takes them again
                log.exception("alerts not evaluated")
        stop.wait(fold_pause(every, time.perf_counter() - began))


def loop(stop: threading.Event | None = None) -> None:
    """Wake when the next run is due (or every ``BILLING_TICK_SECONDS``) until ``stop``;
    meanwhile, in a thread of its own, fold usage every ``BILLING_FOLD_SECONDS``."""
    stop = stop or threading.Event()
    if settings().fold_seconds > 0:
        threading.Thread(target=fold_loop, args=(stop, settings().fold_seconds,
                                                 settings().alert_seconds),
                         name="fold", daemon=True).start()
    scheduler = Scheduler()
    log.info("scheduler started", scheduler=scheduler.name,
             tick_seconds=settings().tick_seconds)
    while not stop.is_set():
        try:
            scheduler.wake(clock.now())
        except Exception:  # a database or broker outage: log, and try again soon
            log.exception("scheduler wake failed")
            metrics.failed()
            stop.wait(min(5.0, settings().tick_seconds))
            continue
        stop.wait(scheduler.seconds_to_sleep(clock.now()))
    log.info("scheduler stopped")
