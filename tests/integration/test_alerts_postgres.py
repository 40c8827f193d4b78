"""Alerts with real workers and the scheduler's folder on PostgreSQL + Redis: a burst of
usage fires each threshold once, within the bound (10 s from ingest); two folders at once,
an evaluation racing them, and a folder restarted half-way never fire a threshold twice nor
skip one; each event reaches the webhook receiver signed, under a stable id."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from domain.alerts import Thresholds
from persistence.db import unit_of_work
from persistence.tables import AlertCrossingRow, AlertStateRow, SubscriptionRow
from scheduler.loop import fold_loop
from services import alerts, rollups
from services import catalog as catalog_service
from services.commands import run_command
from services.settings import settings
from services.subscriptions import do_subscribe
from tests.conftest import Pool
from tests.integration.test_delivery_flow import SECRET, Receiver, receiver  # noqa: F401
from workers import actors

pytestmark = pytest.mark.postgres

CUSTOMERS = [f"c-{i:02d}" for i in range(24)]
SPEND = Thresholds((Decimal(10), Decimal(20), Decimal(50)), Decimal(50))
CALLS = Thresholds((Decimal(25),))
BATCHES = 16


def setup(receiver_url: str) -> None:
    catalog_service.apply_document({
        "entities": [{"id": "al", "timezone": "UTC", "invoice_prefix": "AL",
                      "delivery": {"channel": "webhook", "url": receiver_url,
                                   "secret": SECRET}}],
        "meters": [{"id": "calls", "aggregation": "sum"}],
        "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
             "unit_price": "1.00"}]}],
        "customers": [{"id": c, "entity": "al"} for c in CUSTOMERS]},
        datetime(2000, 1, 1, tzinfo=UTC))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with unit_of_work() as session:
        for c in CUSTOMERS:
            assert do_subscribe(session, at, {"id": f"s-{c}", "customer": c, "plan": "p",
                                              "start": "2026-01-01"}).status == "applied"
    for c in CUSTOMERS:
        for request in ({"id": f"spend-{c}", "customer": c, "subscription": f"s-{c}",
                         "kind": "usage_amount", "thresholds": ["10", "20", "50"],
                         "recurring_step": "50"},
                        {"id": f"calls-{c}", "customer": c, "kind": "usage_quantity",
                         "meter": "calls", "thresholds": ["25"]}):
            assert run_command("create_alert", lambda s, now, r=request:
                               alerts.do_create(s, now, r)).status == "applied"


def caught_up() -> bool:
    lag = rollups.lag()
    with unit_of_work() as session:
        state = session.get(AlertStateRow, 1)
        evaluated = state.evaluated if state else -1
    return lag.folded >= lag.drawn and evaluated >= lag.folded


def start_folders(count: int, cadence: tuple[float, float] = (0.05, 0.0)
                  ) -> tuple[threading.Event, list[threading.Thread]]:
    """``count`` schedulers' fold threads, folding every ``cadence[0]`` seconds and
    evaluating alerts at most every ``cadence[1]`` (0: after every fold)."""
    stop = threading.Event()
    threads = [threading.Thread(target=fold_loop, args=(stop, *cadence), daemon=True)
               for _ in range(count)]
    for t in threads:
        t.start()
    return stop, threads


@pytest.mark.parametrize(("racing_evaluation", "defaults"),
                         [(False, False), (True, False), (False, True)],
                         ids=["folders", "racing", "the scheduler's cadence"])
def test_a_burst_fires_each_threshold_once_within_the_bound(
        pool: Pool, receiver: Receiver, racing_evaluation: bool, defaults: bool,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two schedulers' folders (restarted half-way) fire each threshold crossed once, within
    10 s of the last batch sent — folding every 0.05 s and evaluating after every fold, or
    as ``python -m scheduler`` does (``BILLING_FOLD_SECONDS``, ``BILLING_ALERT_SECONDS``)."""
    cadence = (settings().fold_seconds, settings().alert_seconds) if defaults else (0.05, 0.0)
    if racing_evaluation:  # and chunks of 5 customers, evaluated 3 at a time
        monkeypatch.setattr(alerts, "CHUNK", 5)
    setup(receiver.url)
    pool.at("2026-01-15T12:00:00Z")
    rng = random.Random(26)
    totals: Counter[str] = Counter()
    stop, folders = start_folders(2, cadence)  # two schedulers' folders at once
    racing = threading.Event()

    def race() -> None:  # an evaluation racing the folders' (as from an HTTP create)
        while not racing.is_set():
            actors.enqueue_alert_events(alerts.evaluate_customers(CUSTOMERS,
                                                                  pool.clock.now()))
            time.sleep(0.05)

    racer = threading.Thread(target=race, daemon=True)
    if racing_evaluation:
        racer.start()
    try:
        for n in range(BATCHES):
            if n == BATCHES // 2:  # the scheduler restarted half-way
                stop.set()
                for t in folders:
                    t.join(30)
                stop, folders = start_folders(2, cadence)
            events = []
            for c in CUSTOMERS:
                quantity = rng.randint(0, 9)
                totals[c] += quantity
                events.append({"key": f"{c}-{n}", "customer": c, "meter": "calls",
                               "quantity": str(quantity),
                               "timestamp": f"2026-01-{1 + n % 14:02d}T10:00:00Z"})
            actors.record_usage.send(events)
        sent = time.monotonic()
        deadline = sent + 60
        while not caught_up():
            assert time.monotonic() < deadline, "the folder did not catch up"
            time.sleep(0.05)
        lag = time.monotonic() - sent
    finally:
        racing.set()
        if racing_evaluation:
            racer.join(30)
        stop.set()
        for t in folders:
            t.join(30)
    pool.drain()  # ingest, then the deliveries of the events
    assert lag < 10, f"{lag:.1f} s from the last batch sent to its alerts evaluated"

    with unit_of_work() as session:
        rows = list(session.scalars(select(AlertCrossingRow)))
        assert session.scalar(select(SubscriptionRow.id).limit(1)) is not None
    crossed = Counter((r.alert_id, r.threshold) for r in rows)
    assert all(n == 1 for n in crossed.values()), "a threshold fired twice"
    expected = {(f"spend-{c}", t) for c in CUSTOMERS for t in SPEND.up_to(Decimal(totals[c]))}
    expected |= {(f"calls-{c}", t) for c in CUSTOMERS for t in CALLS.up_to(Decimal(totals[c]))}
    assert set(crossed) == expected
    fired = alerts.events()
    named = Counter((e.alert_id, Decimal(t)) for e in fired for t in e.payload["thresholds"])
    assert set(named) == expected and all(n == 1 for n in named.values())
    assert {e.status for e in fired} == {"done"}
    # at least once, signed, the same id on every attempt
    ids = {f"alert_evt_{e.id}" for e in fired}
    assert receiver.unique_ids() == ids
    for seen in receiver.seen:
        assert seen["payload"]["type"] == "alert.triggered"
        assert seen["payload"]["data"]["id"] == seen["id"]
