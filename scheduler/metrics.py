"""The scheduler's Prometheus metrics: when it last woke and what for, the next run it
waits for, and how long a wake takes (what a due entity waits past its 08:15)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from scheduler.schedule import Due, Woke

LAST_WAKE = Gauge("billing_scheduler_last_wake_timestamp_seconds",
                  "when the scheduler last woke (Unix time)")
NEXT_RUN = Gauge("billing_scheduler_next_run_timestamp_seconds",
                 "when the next bill run is due (Unix time)")
ENTITIES = Gauge("billing_scheduler_entities", "entities the scheduler schedules")
CLAIMED = Counter("billing_scheduler_runs_claimed_total", "bill runs claimed")
SENT = Counter("billing_scheduler_runs_sent_total", "bill_run messages sent (new and again)")
FAILED = Counter("billing_scheduler_wake_failures_total",
                 "wakes that failed (the database or the broker did not answer)")
WAKE_SECONDS = Histogram("billing_scheduler_wake_seconds",
                         "how long a wake takes, from waking to the last message sent",
                         buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))


def woke(now: datetime, woke: Woke, coming: Due | None, entities: int,
         seconds: float) -> None:
    LAST_WAKE.set(now.timestamp())
    NEXT_RUN.set(coming.run_at.timestamp() if coming else 0)
    ENTITIES.set(entities)
    CLAIMED.inc(len(woke.claimed))
    SENT.inc(len(woke.sent))
    WAKE_SECONDS.observe(seconds)


def failed() -> None:
    FAILED.inc()


def serve(port: int) -> bool:
    """Serve the metrics on ``port``; False (and a warning) when the port is taken."""
    try:
        start_http_server(port)
    except OSError as exc:
        structlog.get_logger("billing").warning(
            "scheduler metrics not served", port=port, error=str(exc))
        return False
    return True
