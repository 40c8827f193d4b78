"""The pendulum scheduler (scheduler/schedule.py, scheduler/loop.py): each entity's run at
08:15 local across DST changes; a wake touches only the runs due; a new entity is
scheduled without a restart; a restart after three days down catches every entity up once
with the right run instant; and two schedulers at once — real threads on PostgreSQL —
send each run once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from persistence.db import unit_of_work
from persistence.tables import BillRunRow
from scheduler import run_times
from scheduler.loop import Scheduler
from scheduler.schedule import Schedule
from services import catalog as catalog_service
from services.settings import settings
from workers.broker import QUEUE, stub_broker, use

pytestmark = pytest.mark.integration

ZONES = ["UTC", "America/New_York", "Europe/Oslo", "Asia/Kolkata", "Australia/Lord_Howe",
         "America/Santiago", "Pacific/Apia", "Asia/Kathmandu", "America/St_Johns",
         "Europe/London"]


def catalog(count: int) -> dict[str, Any]:
    return {"entities": [{"id": f"e{i:03d}", "timezone": ZONES[i % len(ZONES)],
                          "invoice_prefix": f"E{i}"} for i in range(count)]}


def sent_runs(broker: Any) -> Counter[tuple[str, str]]:
    from dramatiq import get_encoder

    runs: Counter[tuple[str, str]] = Counter()
    for raw in list(broker.queues[QUEUE].queue):
        message = get_encoder().decode(raw)
        if message["actor_name"] == "bill_run":
            runs[(message["args"][0], message["args"][1])] += 1
        elif message["actor_name"] == "bill_runs":
            for entity, day in message["args"][0]:
                runs[(entity, day)] += 1
    return runs


def test_runs_are_at_0815_local_across_a_dst_change() -> None:
    schedule = Schedule.of({"ny": "America/New_York"}, datetime(2026, 3, 6, 14, tzinfo=UTC))
    seen = []
    for hour in range(0, 24 * 4):
        seen += schedule.pop_due(datetime(2026, 3, 6, 14, tzinfo=UTC) + timedelta(hours=hour))
    assert [(d.local_date, d.run_at) for d in seen] == [
        (date(2026, 3, 6), datetime(2026, 3, 6, 13, 15, tzinfo=UTC)),  # EST
        (date(2026, 3, 7), datetime(2026, 3, 7, 13, 15, tzinfo=UTC)),
        (date(2026, 3, 8), datetime(2026, 3, 8, 12, 15, tzinfo=UTC)),  # EDT from 8 March
        (date(2026, 3, 9), datetime(2026, 3, 9, 12, 15, tzinfo=UTC)),
        (date(2026, 3, 10), datetime(2026, 3, 10, 12, 15, tzinfo=UTC)),
    ]


def test_a_wake_touches_only_the_runs_due(monkeypatch: pytest.MonkeyPatch) -> None:
    zones = {f"e{i}": ZONES[i % len(ZONES)] for i in range(5_000)}
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    schedule = Schedule.of(zones, now)
    schedule.pop_due(now)  # the latest due run of each: all of them
    schedule.pop_due(datetime(2026, 6, 2, 2, 44, tzinfo=UTC))  # Kathmandu's, Apia's, …
    calls = Counter[str]()
    computed = run_times.run_instant

    def counting(day: date, tz: str) -> datetime:
        calls["run_instant"] += 1
        return computed(day, tz)

    monkeypatch.setattr(run_times, "run_instant", counting)
    due = schedule.pop_due(datetime(2026, 6, 2, 2, 45, tzinfo=UTC))  # Kolkata's 08:15
    assert {d.entity for d in due} == {e for e, tz in zones.items() if tz == "Asia/Kolkata"}
    assert calls["run_instant"] == len(due)  # each due entity's next run, nothing else


def test_a_new_entity_is_scheduled_without_a_restart(sqlite_store: str) -> None:
    use(stub_broker(max_retries=0))
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    catalog_service.apply_document(catalog(3), now)
    scheduler = Scheduler("test")
    scheduler.wake(now)
    assert len(scheduler.schedule) == 3
    catalog_service.apply_document({"entities": [
        *catalog(3)["entities"], {"id": "late", "timezone": "Asia/Tokyo",
                                  "invoice_prefix": "L"}]}, now)
    later = now + timedelta(minutes=1)
    scheduler.wake(later)
    assert len(scheduler.schedule) == 4
    with unit_of_work() as session:
        claims = {r.entity_id: r.local_date for r in session.scalars(select(BillRunRow))}
    assert claims["late"] == date(2026, 6, 1)  # Tokyo's 08:15 of 1 June has passed


def test_a_restart_after_three_days_down_catches_up_once(
        sqlite_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = use(stub_broker(max_retries=0))
    monkeypatch.setattr(settings(), "bill_run_resend_seconds", 10**9)  # no worker here
    before = datetime(2026, 3, 5, 12, tzinfo=UTC)
    catalog_service.apply_document(catalog(30), before)
    Scheduler("first").wake(before)
    back = before + timedelta(days=3, hours=1)  # down for three days, across a DST change
    restarted = Scheduler("restarted")
    restarted.wake(back)
    restarted.wake(back + timedelta(seconds=1))  # a wake right after claims nothing again
    with unit_of_work() as session:
        claims = list(session.scalars(select(BillRunRow)))
    by_entity: dict[str, list[BillRunRow]] = {}
    for row in claims:
        by_entity.setdefault(row.entity_id, []).append(row)
    for entity in catalog(30)["entities"]:
        tz = entity["timezone"]
        rows = sorted(by_entity[entity["id"]], key=lambda r: r.local_date)
        assert len(rows) == 2  # the run before, and one catch-up run
        latest = run_times.latest_due(back, tz)
        assert rows[-1].local_date == latest
        assert rows[-1].run_at == run_times.run_instant(latest, tz)
    assert sum(sent_runs(broker).values()) == len(claims)


def test_two_schedulers_at_once_send_each_run_once(pg_store: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    broker = use(stub_broker(max_retries=0))
    monkeypatch.setattr(settings(), "bill_run_resend_seconds", 10**9)  # no worker here
    start = datetime(2026, 3, 6, 0, tzinfo=UTC)  # 4 days across New York's DST change
    catalog_service.apply_document(catalog(60), start)
    instants = sorted({run_times.run_instant(date(2026, 3, 6) + timedelta(days=d), tz)
                       for d in range(4) for tz in ZONES})
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            scheduler = Scheduler(name)
            for at in [start, *instants]:
                barrier.wait(timeout=30)
                scheduler.wake(at)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with unit_of_work() as session:
        claims = {(r.entity_id, r.local_date.isoformat()) for r in session.scalars(
            select(BillRunRow))}
    runs = sent_runs(broker)
    assert set(runs) == claims
    assert all(count == 1 for count in runs.values()), runs.most_common(3)
    assert len(claims) >= 60 * 4


def test_a_wake_beats_and_sets_the_metrics(sqlite_store: str) -> None:
    from prometheus_client import REGISTRY

    from persistence import billruns

    use(stub_broker(max_retries=0))
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    catalog_service.apply_document(catalog(3), now)
    sent_before = REGISTRY.get_sample_value("billing_scheduler_runs_sent_total") or 0
    Scheduler("metrics").wake(now)
    assert REGISTRY.get_sample_value("billing_scheduler_last_wake_timestamp_seconds") == \
        now.timestamp()
    assert REGISTRY.get_sample_value("billing_scheduler_entities") == 3
    assert REGISTRY.get_sample_value("billing_scheduler_runs_sent_total") == sent_before + 3
    with unit_of_work() as session:
        beat = billruns.beats(session)[0]
    assert (beat.scheduler, beat.entities, beat.sent) == ("metrics", 3, 3)
    assert beat.next_run_at is not None and beat.next_run_at > now
