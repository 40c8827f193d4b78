"""Late usage under real concurrency, on PostgreSQL: late events ingested by several
threads while the covering draft is regenerated again and again, and while the next bill
run adjusts the period. A `sum` or `count` meter's adjustment is computed from the covering
line's quantity plus the late events it did not count (services/late.py), so an event that
a regeneration counted but did not record as billed would be billed twice: the locks in
``flag_late`` and ``do_regenerate`` are what prevent it. Whatever the interleaving, the
lines for January add up to January priced on every event, and each late event is billed
by exactly one invoice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from domain.periods import bill_run_instant
from persistence.db import unit_of_work
from persistence.tables import InvoiceLineRow, InvoiceRow, LateUsageRow, UsageEventRow
from services import catalog as catalog_service
from services import invoicing, late, subscriptions, usage

pytestmark = pytest.mark.integration

CATALOG: dict[str, Any] = {
    "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E"}],
    "meters": [{"id": "calls", "aggregation": "sum"}, {"id": "hits", "aggregation": "count"}],
    "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
        {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
         "unit_price": "1.00"},
        {"id": "hits", "type": "usage", "meter": "hits", "model": "unit",
         "unit_price": "0.10"},
    ]}],
    "customers": [{"id": "c", "entity": "e"}],
}
JANUARY = date(2026, 1, 1)


def late_sender(name: str, count: int, now: datetime) -> Callable[[], None]:
    """Late January events, a few per message, from one thread."""
    def send() -> None:
        for i in range(count):
            events = [{"key": f"{name}-{i}-{m}", "customer": "c", "meter": meter,
                       "quantity": 1 + (i + j) % 3,
                       "timestamp": datetime(2026, 1, 1 + (i + j) % 28, 12,
                                             tzinfo=UTC).isoformat()}
                      for j, (m, meter) in enumerate([("a", "calls"), ("b", "hits")])]
            usage.ingest_message(events, f"{name}-{i}", now + timedelta(milliseconds=i))
    return send


def run_threads(*targets: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_late_usage_racing_regenerations_and_the_next_run_is_billed_once(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # widen the window between a regeneration reading the late events it bills and
    # counting the period's events: an ingest in between is what the locks must hold back
    read_covered = late.account_regenerated_covering

    def slow_read(*args: Any) -> list[str]:
        found = read_covered(*args)
        time.sleep(0.02)
        return found

    monkeypatch.setattr(late, "account_regenerated_covering", slow_read)
    now = datetime(2025, 12, 20, tzinfo=UTC)
    catalog_service.apply_document(CATALOG, now)
    with unit_of_work() as session:
        subscriptions.do_subscribe(session, now, {"id": "s", "customer": "c", "plan": "p",
                                                  "start": JANUARY.isoformat()})
        subscriptions.do_set_draft_invoices(session, now, "c", True, now)
    usage.ingest_message([{"key": f"jan-{i}", "customer": "c", "meter": "calls",
                           "quantity": 2, "timestamp": f"2026-01-{i + 1:02d}T08:00:00Z"}
                          for i in range(10)], "jan", now)
    invoicing.run_bill_run_now("e", date(2026, 2, 1), bill_run_instant(date(2026, 2, 1), "UTC"))

    # 1. late events from three threads while the covering draft is regenerated over and over
    feb = datetime(2026, 2, 2, 9, tzinfo=UTC)
    done = threading.Event()

    def regenerate() -> None:
        n = 0
        while not done.is_set() or n < 3:
            with unit_of_work() as session:
                invoicing.do_regenerate(session, feb + timedelta(seconds=n), "s", "2026-02-01")
            n += 1

    senders = [late_sender(f"r{t}", 40, feb) for t in range(3)]

    def send_all() -> None:
        run_threads(*senders)
        done.set()

    run_threads(send_all, regenerate)
    with unit_of_work() as session:
        invoicing.do_release(session, feb + timedelta(minutes=5), "s", "2026-02-01")
        subscriptions.do_set_draft_invoices(session, feb, "c", False, feb)

    # 2. more late events while the March run adjusts January (and then after it)
    march = bill_run_instant(date(2026, 3, 1), "UTC")
    run_threads(late_sender("m0", 40, march - timedelta(seconds=1)),
                late_sender("m1", 40, march - timedelta(seconds=1)),
                lambda: invoicing.run_bill_run_now("e", date(2026, 3, 1), march))
    run_threads(late_sender("a0", 20, march + timedelta(hours=1)))
    april = bill_run_instant(date(2026, 4, 1), "UTC")
    invoicing.run_bill_run_now("e", date(2026, 4, 1), april)

    with unit_of_work() as session:
        events = session.execute(select(UsageEventRow.meter_id, func.sum(UsageEventRow.quantity),
                                        func.count()).where(UsageEventRow.timestamp
                                                            < datetime(2026, 2, 1, tzinfo=UTC))
                                 .group_by(UsageEventRow.meter_id)).all()
        lines = session.execute(
            select(InvoiceLineRow.charge_id, func.sum(InvoiceLineRow.amount),
                   func.count()).join(InvoiceRow, InvoiceRow.id == InvoiceLineRow.invoice_id)
            .where(InvoiceLineRow.period_start == JANUARY)
            .group_by(InvoiceLineRow.charge_id)).all()
        late_rows = list(session.scalars(select(LateUsageRow)))
        statuses = set(session.scalars(select(InvoiceRow.status)))
    quantity = {meter: (total, count) for meter, total, count in events}
    billed = {charge: amount for charge, amount, _ in lines}
    assert billed["calls"] == quantity["calls"][0] * Decimal("1.00")
    assert billed["hits"] == Decimal(quantity["hits"][1]) * Decimal("0.10")
    assert statuses == {"sent"}
    assert len(late_rows) == 2 * (3 * 40 + 2 * 40 + 20)  # every event after February's run
    assert all(row.accounted_by is not None for row in late_rows), "a late event never billed"
