"""Check, then act, for an entity's time zone and for plan changes (issue #20, the rest;
docs/decisions.md, "Check, then act: what was checked"), on PostgreSQL:

- a zone change is refused once a bill run has moved a subscription of the entity past a
  boundary, with an invoice or without one (the opening boundary of a usage-only plan,
  where nothing is invoiced) — sequentially, and racing the runs of 12 entities;
- a meter charged only by a plan a subscription changes to is charged: the catalog cannot
  change its aggregation, neither after the change nor while the change runs (the change
  share-locks the new plan's meters, as a subscribe does);
- a zone change moves the plan changes' instants (``since_at``) with the subscriptions'
  — also when a plan change has read the entity and is held before it stores.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from domain.periods import bill_run_instant, midnight
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from persistence.tables import EntityRow, MeterRow, PlanChangeRow, SubscriptionRow
from services import catalog as catalog_service
from services import invoicing, plan_changes
from services.commands import run_command
from tests.integration.test_check_then_act import run_all, subscribe

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 20, 10, tzinfo=UTC)
OSLO, TOKYO = "Europe/Oslo", "Asia/Tokyo"


def catalog(entities: int = 1, customers: int = 2) -> dict[str, Any]:
    return {
        "entities": [{"id": f"e{i:02d}", "timezone": OSLO, "invoice_prefix": f"E{i}"}
                     for i in range(entities)],
        "meters": [{"id": "tokens", "aggregation": "sum"}, {"id": "calls", "aggregation": "sum"}],
        "plans": [
            {"id": "usage", "currency": "EUR", "interval": "month", "charges": [
                {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
                 "unit_price": "0.001"}]},
            {"id": "fee", "currency": "EUR", "interval": "month", "charges": [
                {"id": "fee", "type": "recurring", "amount": "10.00"}]},
            {"id": "metered", "currency": "EUR", "interval": "month", "charges": [
                {"id": "fee", "type": "recurring", "amount": "10.00"},
                {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
                 "unit_price": "0.01"}]}],
        "customers": [{"id": f"c{i:02d}-{j}", "entity": f"e{i:02d}"}
                      for i in range(entities) for j in range(customers)],
    }


def to_zone(zone: str, entity: str = "e00") -> dict[str, Any]:
    return {"entities": [{"id": entity, "timezone": zone, "invoice_prefix": f"E{int(entity[1:])}"}]}


def change_plan(subscription: str, plan: str, since: str, now: datetime = NOW) -> str:
    return run_command("change_plan", lambda s, _: plan_changes.do_change_plan(
        s, now, subscription, plan, since, now),
        message_id=f"change-{subscription}-{plan}-{since}").status


# ---------------------------------------------------------------------------- time zones


def test_a_zone_change_after_a_run_passed_an_opening_boundary_without_an_invoice_is_refused(
        pg_store: str) -> None:
    """A usage-only plan: the run of 1 February invoices nothing at the opening boundary
    but moves the subscription on to 1 March (in Oslo). "Has invoices" says no — and the
    zone change was applied, although a run had dealt with the subscription in the old zone
    (the boundary that decides which ingests close its period is then the new zone's)."""
    catalog_service.apply_document(catalog(), NOW)
    assert subscribe("s-1", "c00-0", "usage", "2026-02-01") == "applied"
    invoicing.run_bill_run_now("e00", date(2026, 2, 1), datetime(2026, 2, 1, 7, 20, tzinfo=UTC))
    with unit_of_work() as session:
        row = session.get(SubscriptionRow, "s-1")
        assert row is not None and row.next_k == 1 and row.next_boundary == date(2026, 3, 1)
    with pytest.raises(catalog_service.CatalogRefused, match="time zone"):
        catalog_service.apply_document(to_zone(TOKYO))
    with unit_of_work() as session:
        entity = session.get(EntityRow, "e00")
        assert entity is not None and entity.timezone == OSLO


ENTITIES = 12
SUBS = 3


def test_a_zone_change_racing_a_run_that_invoices_nothing_is_refused_or_comes_first(
        pg_store: str) -> None:
    """The runs of 1 February of 12 entities (usage-only subscriptions: nothing invoiced,
    each moved on) and a zone change of each to Tokyo, in threads, at about the same time.
    Either the zone change comes first (the run then reads Tokyo), or the run does and the
    change is refused: never an entity in Tokyo whose subscriptions a run moved in Oslo."""
    catalog_service.apply_document(catalog(ENTITIES, SUBS), NOW)
    for i in range(ENTITIES):
        for j in range(SUBS):
            assert subscribe(f"s{i:02d}-{j}", f"c{i:02d}-{j}", "usage", "2026-02-01") == "applied"
    now = datetime(2026, 2, 1, 7, 20, tzinfo=UTC)  # after Oslo's 08:15 (and Tokyo's)
    ran_at: dict[str, datetime] = {}
    refused: set[str] = set()
    rng = random.Random(20)

    def run(entity: str, delay: float) -> Callable[[], None]:
        def go() -> None:
            time.sleep(delay)
            planned = invoicing.plan_bill_run(entity, date(2026, 2, 1), now)
            assert not isinstance(planned, invoicing.Outcome), planned
            ran_at[entity] = planned.run_at
        return go

    def change(entity: str, delay: float) -> Callable[[], None]:
        def go() -> None:
            time.sleep(delay)
            try:
                catalog_service.apply_document(to_zone(TOKYO, entity), now)
            except catalog_service.CatalogRefused:
                refused.add(entity)
        return go

    tasks: list[Callable[[], None]] = []
    for i in range(ENTITIES):
        tasks += [run(f"e{i:02d}", rng.uniform(0.1, 0.4)),
                  change(f"e{i:02d}", rng.uniform(0, 0.3))]
    run_all(tasks, 2 * ENTITIES)
    with unit_of_work() as session:
        zones = dict(session.execute(select(EntityRow.id, EntityRow.timezone)).all())
        subs = list(session.scalars(select(SubscriptionRow)))
    wrong: list[str] = []
    for entity, zone in sorted(zones.items()):
        if (entity in refused) == (zone == TOKYO):
            wrong.append(f"{entity}: in {zone} although its change was "
                         f"{'refused' if entity in refused else 'applied'}")
        if ran_at[entity] != bill_run_instant(date(2026, 2, 1), zone):
            wrong.append(f"{entity}: in {zone}, its subscriptions moved on by the run at "
                         f"{ran_at[entity]:%H:%M} UTC (another zone's)")
    for sub in subs:
        zone = zones[sub.entity_id]
        if (sub.next_k, sub.next_boundary_at) != (1, midnight(date(2026, 3, 1), zone)):
            wrong.append(f"{sub.id}: next boundary {sub.next_k} at {sub.next_boundary_at}")
    moved = sum(zone == TOKYO for zone in zones.values())
    assert wrong == [], f"{len(wrong)} wrong ({moved} of {ENTITIES} moved): {wrong[:4]}"


# ---------------------------------------------------------------------------- plan changes


def test_a_meter_charged_only_by_the_plan_changed_to_is_charged(pg_store: str) -> None:
    """``s-1`` on ``fee`` (no meter) changes to ``metered`` (calls) from 15 February:
    calls are then charged — the catalog must not re-aggregate them (it counted only the
    plans subscriptions were sold on: 0, and applied the change)."""
    catalog_service.apply_document(catalog(), NOW)
    assert subscribe("s-1", "c00-0", "fee", "2026-02-01") == "applied"
    assert change_plan("s-1", "metered", "2026-02-15") == "applied"
    changed = {"meters": [{"id": "calls", "aggregation": "max"}]}
    with pytest.raises(catalog_service.CatalogRefused, match="1 subscriptions"):
        catalog_service.apply_document(changed)
    # called off (back to ``fee`` on the same date): calls are charged by no one
    assert change_plan("s-1", "fee", "2026-02-15") == "applied"
    catalog_service.apply_document(changed)


def test_a_meter_changed_while_a_plan_change_to_a_plan_charging_it_runs_waits_for_it(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog change has counted no subscription charging ``calls`` and is held 2 s
    before it writes; a plan change to ``metered`` starts then. It must wait for the
    catalog change (share-locking the new plan's meters, as a subscribe does) — not commit
    in between, leaving a subscription charged for a meter re-aggregated under it."""
    catalog_service.apply_document(catalog(), NOW)
    assert subscribe("s-1", "c00-0", "fee", "2026-02-01") == "applied"
    counted = threading.Event()
    count = catalog_repo.meter_subscription_count

    def slow_count(*args: Any) -> int:
        found = count(*args)
        counted.set()
        time.sleep(2.0)
        return found

    monkeypatch.setattr(catalog_repo, "meter_subscription_count", slow_count)
    changed = {"meters": [{"id": "calls", "aggregation": "max"}]}
    catalog_change = threading.Thread(target=catalog_service.apply_document, args=(changed,))
    catalog_change.start()
    assert counted.wait(30)
    outcome: list[str] = []
    change = threading.Thread(
        target=lambda: outcome.append(change_plan("s-1", "metered", "2026-02-15")))
    change.start()
    change.join(timeout=1.0)
    waited = change.is_alive()
    catalog_change.join(timeout=60)
    change.join(timeout=60)
    with unit_of_work() as session:
        meter = session.get(MeterRow, "calls")
        assert meter is not None and meter.aggregation == "max"
    assert outcome == ["applied"]
    assert waited, "the plan change committed between the catalog's check and its write"


def since_at(subscription: str) -> datetime:
    with unit_of_work() as session:
        row = session.scalars(select(PlanChangeRow).where(
            PlanChangeRow.subscription_id == subscription)).one()
        return row.since_at


def test_a_zone_change_moves_the_plan_changes_instants(pg_store: str) -> None:
    """No run has dealt with the entity yet: the zone change is allowed and moves every
    instant of its subscriptions — the plan change's ``since_at`` too (it stayed at
    midnight in Oslo, where ingest reads which plan is in force on an event's date)."""
    catalog_service.apply_document(catalog(), NOW)
    assert subscribe("s-1", "c00-0", "fee", "2026-02-01") == "applied"
    assert change_plan("s-1", "metered", "2026-02-15") == "applied"
    assert since_at("s-1") == midnight(date(2026, 2, 15), OSLO)
    catalog_service.apply_document(to_zone(TOKYO))
    assert since_at("s-1") == midnight(date(2026, 2, 15), TOKYO)


def test_a_zone_change_while_a_plan_change_runs_leaves_no_instant_in_the_old_zone(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan change has read its entity (Oslo) and is held 2 s before it stores; the
    entity moves to Tokyo then. Its ``since_at`` must be Tokyo's midnight in the end."""
    catalog_service.apply_document(catalog(), NOW)
    assert subscribe("s-1", "c00-0", "fee", "2026-02-01") == "applied"
    read = threading.Event()
    entity = catalog_repo.entity

    def slow_entity(*args: Any, **kwargs: Any) -> Any:
        found = entity(*args, **kwargs)
        if threading.current_thread().name == "change":
            read.set()
            time.sleep(2.0)
        return found

    monkeypatch.setattr(catalog_repo, "entity", slow_entity)
    outcome: list[str] = []
    change = threading.Thread(
        target=lambda: outcome.append(change_plan("s-1", "metered", "2026-02-15")),
        name="change")
    change.start()
    assert read.wait(30)
    catalog_service.apply_document(to_zone(TOKYO))
    change.join(timeout=60)
    assert outcome == ["applied"]
    assert since_at("s-1") == midnight(date(2026, 2, 15), TOKYO), \
        "since_at is midnight of 15 February in the old zone"
