"""A store for the portal's tests: three customers of one entity in Oslo with usage over
the open period, past invoices, and a late event (an adjustment on the estimate).

``build(now)`` fills the configured database as of ``now`` (the real clock in the browser
tests, a simulated one in the HTTP tests) and says what it made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.periods import Interval, bill_run_instant, boundary
from persistence.db import unit_of_work
from services import catalog as catalog_service
from services.invoicing import run_bill_run_now
from services.subscriptions import do_subscribe
from services.usage import ingest

TZ = "Europe/Oslo"
XSS = "<script>alert(1)</script>"
CATALOG: dict[str, Any] = {
    "entities": [{"id": "acme", "timezone": TZ, "invoice_prefix": "AC",
                  "delivery": {"channel": "none"}}],
    "meters": [
        {"id": "tokens", "aggregation": "sum", "unit": {"name": "tokens", "per": 1000000}},
        {"id": "calls", "aggregation": "count"},
    ],
    "plans": [{"id": "pro", "currency": "EUR", "interval": "month", "charges": [
        {"id": "base", "type": "recurring", "amount": "20.00"},
        {"id": "tokens", "type": "usage", "meter": "tokens", "model": "graduated",
         "tiers": [{"up_to": 1000000, "unit_price": "0"},
                   {"up_to": None, "unit_price": "0.000002"}]},
        {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
         "unit_price": "0.01", "minimum": "1.00"},
    ]}],
    "customers": [{"id": "acme-co", "entity": "acme"}, {"id": "other-co", "entity": "acme"},
                  {"id": XSS, "entity": "acme"}],
}


@dataclass(frozen=True)
class Store:
    start: date
    period_start: date


def build(now: datetime) -> Store:
    catalog_service.apply_document(CATALOG, now - timedelta(days=400))
    zone = ZoneInfo(TZ)
    today = now.astimezone(zone).date()
    start = today - timedelta(days=75)
    k = 0
    while bill_run_instant(boundary(start, Interval.MONTH, k + 1), TZ) <= now:
        k += 1
    period_start = boundary(start, Interval.MONTH, k)
    with unit_of_work() as session:
        for sub, customer in (("s-acme", "acme-co"), ("s-other", "other-co"), ("s-xss", XSS)):
            outcome = do_subscribe(session, now - timedelta(days=80),
                                   {"id": sub, "customer": customer, "plan": "pro",
                                    "start": start.isoformat()})
            assert outcome.status == "applied", outcome
    events = []
    day = start
    while day <= today:
        noon = datetime.combine(day, time(12), zone).astimezone(UTC)
        if noon < now:
            n = (day - start).days
            events.append(_event(f"t-{day}", "acme-co", "tokens", 400000 + 10000 * n, noon))
            events += [_event(f"c-{day}-{i}", "acme-co", "calls", 1, noon) for i in range(3)]
            events.append(_event(f"o-{day}", "other-co", "tokens", 7777, noon))
        day += timedelta(days=1)
    with unit_of_work() as session:
        ingest(session, events, now, "portal-data-1")
    for j in range(k + 1):
        run_bill_run_now("acme", boundary(start, Interval.MONTH, j), now)
    if k >= 1:  # usage of the last closed period that arrives late: an adjustment line
        late_at = datetime.combine(period_start - timedelta(days=2), time(9), zone)
        with unit_of_work() as session:
            ingest(session, [_event("late-1", "acme-co", "tokens", 2500000,
                                    late_at.astimezone(UTC))], now, "portal-data-2")
    return Store(start=start, period_start=period_start)


def _event(key: str, customer: str, meter: str, quantity: int, at: datetime) -> dict[str, Any]:
    return {"key": key, "customer": customer, "meter": meter, "quantity": str(quantity),
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
