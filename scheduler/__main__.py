"""``python -m scheduler``: the scheduler process (scheduler/loop.py), with Prometheus
metrics on ``BILLING_SCHEDULER_METRICS_PORT``."""

from __future__ import annotations

import signal
import threading

from persistence import db, migrate
from scheduler import metrics
from scheduler.loop import loop
from services import logs
from services.settings import settings


def main() -> None:
    config = settings()
    logs.configure(config.log_format, config.log_level)
    db.configure(config.database_url)
    migrate.upgrade()
    if config.scheduler_metrics_port:
        metrics.serve(config.scheduler_metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    loop(stop)


if __name__ == "__main__":
    main()
