"""The benchmark's usage events, generated the same way wherever they are needed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

CUSTOMERS = 1000
START = datetime(2026, 10, 1, tzinfo=UTC)
# "spread" (the default): timestamps spread over 30 days, as a backfill sends them; "live":
# 500 events a second of event time, as usage that arrives as it happens
TIMESTAMPS = os.environ.get("BENCH_TIMESTAMPS", "spread")


def events(count: int, prefix: str = "e", resend_every: int = 20) -> Iterator[dict[str, Any]]:
    """``count`` events; every ``resend_every``-th is an exact re-send of an earlier one
    (5% with the default), so ``count - count // resend_every`` keys are distinct."""
    sent = 0
    i = 0
    while sent < count:
        sent += 1
        if resend_every and sent % resend_every == 0:
            j = (i * 7919) % max(i, 1)  # an earlier event
            yield event(j, prefix)
            continue
        yield event(i, prefix)
        i += 1


def event(i: int, prefix: str) -> dict[str, Any]:
    ts = (START + timedelta(seconds=i // 500) if TIMESTAMPS == "live"
          else START + timedelta(seconds=(i * 37) % (30 * 86400)))
    return {"key": f"{prefix}-{i}", "customer": f"c-{i % CUSTOMERS}", "meter": "tokens",
            "quantity": f"{i % 997}.{i % 10}", "timestamp": ts.isoformat()}


def distinct(count: int, resend_every: int = 20) -> int:
    return count - (count // resend_every if resend_every else 0)
