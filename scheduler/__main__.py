"""``python -m scheduler``: tick with the real clock, forever."""

from __future__ import annotations

import signal
import threading

import structlog

from persistence import db, migrate
from scheduler.tick import requeue_lost_deliveries, tick
from services import clock, logs
from services.settings import settings


def loop(stop: threading.Event | None = None) -> None:
    """Tick every ``BILLING_TICK_SECONDS`` until ``stop`` is set."""
    config = settings()
    log = structlog.get_logger("billing")
    stop = stop or threading.Event()
    log.info("scheduler started", tick_seconds=config.tick_seconds)
    while not stop.is_set():
        try:
            now = clock.now()
            tick(now)
            requeue_lost_deliveries(now)
        except Exception:  # a database or broker outage: log, and try again next tick
            log.exception("tick failed")
        stop.wait(config.tick_seconds)
    log.info("scheduler stopped")


def main() -> None:
    config = settings()
    logs.configure(config.log_format, config.log_level)
    db.configure(config.database_url)
    migrate.upgrade()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    loop(stop)


if __name__ == "__main__":
    main()
