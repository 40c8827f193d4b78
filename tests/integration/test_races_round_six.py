"""Check, then act (issue #20, findings 2 and 3): a catalog guard and the command it guards
against, at the same time, on PostgreSQL with real threads and workers.

- A customer moved to another entity (``PUT /v1/customers/{id}``) while it subscribes
  (``POST /v1/subscriptions``): the move is refused once the customer has a subscription,
  and a subscription is always on its customer's entity — never left behind on the old
  one (its time zone, its numbering, its bill run).
- An entity's time zone changed (a catalog applied) while its first bill run issues: the
  change is refused once the entity has invoices; if it is applied first, the run issues
  in the new zone. Either way every invoice's periods and every subscription's instants
  are in the entity's zone.

Both guards are taken under the lock the guarded command takes (services/catalog.py)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from domain.periods import midnight
from persistence.db import unit_of_work
from persistence.tables import (
    CustomerRow,
    EntityRow,
    InvoiceLineRow,
    InvoiceRow,
    SubscriptionRow,
)
from services import api_keys
from services import catalog as catalog_service
from tests.conftest import Pool
from tests.integration.http_server import serving
from workers import actors

pytestmark = pytest.mark.postgres


def run_all(tasks: list[Callable[[], Any]], threads: int) -> list[Any]:
    """Every task on a pool of ``threads`` threads; their results (an exception is
    re-raised here)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [f.result(timeout=300) for f in [pool.submit(t) for t in tasks]]


# ---------------------------------------------------------------------------- finding 2

CUSTOMERS = 40
THREADS = 16


@pytest.fixture
def api(pool: Pool) -> Iterator[tuple[str, str]]:
    catalog_service.apply_document({
        "entities": [{"id": "old", "timezone": "Europe/Oslo", "invoice_prefix": "OLD"},
                     {"id": "new", "timezone": "America/Los_Angeles", "invoice_prefix": "NEW"}],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [{"id": "pro", "currency": "EUR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "49.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.001"}]}],
        "customers": [{"id": f"c-{i}", "entity": "old"} for i in range(CUSTOMERS)],
    }, datetime(2025, 12, 1, tzinfo=UTC))
    pool.at("2026-01-20T10:00:00Z")
    _, key = api_keys.create("races", datetime(2026, 1, 1, tzinfo=UTC))
    with serving() as base:
        yield base, key


def test_a_customer_moved_while_it_subscribes_never_leaves_its_subscription_behind(
        api: tuple[str, str]) -> None:
    base, key = api
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=120,
                                        headers={"Authorization": f"Bearer {key}"})
        return local.client

    def move(i: int) -> Callable[[], httpx.Response]:
        return lambda: client().put(f"/v1/customers/c-{i}", json={"entity": "new"})

    def subscribe(i: int) -> Callable[[], httpx.Response]:
        return lambda: client().post("/v1/subscriptions", json={
            "id": f"s-{i}", "customer": f"c-{i}", "plan": "pro", "start": "2026-02-01"})

    tasks: list[Callable[[], httpx.Response]] = []
    for i in range(CUSTOMERS):  # each customer's two requests side by side, in either order
        tasks += [move(i), subscribe(i)] if i % 2 else [subscribe(i), move(i)]
    answers = run_all(tasks, THREADS)
    unexpected = [(a.status_code, a.text[:200]) for a in answers
                  if a.status_code not in (200, 201, 409)]
    assert unexpected == []
    with unit_of_work() as session:
        entity_of = dict(session.execute(select(CustomerRow.id, CustomerRow.entity_id)).all())
        subs = list(session.scalars(select(SubscriptionRow)))
    wrong = sorted(s.customer_id for s in subs if s.entity_id != entity_of[s.customer_id])
    moved = sum(entity == "new" for entity in entity_of.values())
    assert len(subs) == CUSTOMERS  # a subscribe is never refused here: it wins, or it follows
    assert wrong == [], (f"{len(wrong)} of {CUSTOMERS} subscriptions stayed on the old entity "
                         f"while their customer moved ({moved} moved): {wrong[:5]}")


# ---------------------------------------------------------------------------- finding 3

ENTITIES = 20
SUBS = 10  # per entity
RUN = "2026-02-01"
# between Tokyo's midnight of 1 February (15:00 UTC on the 31st) and Oslo's (23:00 UTC):
# January's usage in Oslo, February's in Tokyo — the invoice of 1 February tells the zone
USED_AT = "2026-01-31T18:00:00Z"
ZONES = ("Europe/Oslo", "Asia/Tokyo")


def entities_catalog(zone_of: Callable[[int], str]) -> dict[str, Any]:
    return {
        "entities": [{"id": f"e{i:02d}", "timezone": zone_of(i), "invoice_prefix": f"E{i}"}
                     for i in range(ENTITIES)],
        "meters": [{"id": "calls", "aggregation": "sum"}],
        "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "10.00"},
            {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
             "unit_price": "1.00"}]}],
        "customers": [{"id": f"c{i:02d}-{j}", "entity": f"e{i:02d}"}
                      for i in range(ENTITIES) for j in range(SUBS)],
    }


def one_entity(i: int, zone: str) -> dict[str, Any]:
    return {"entities": [{"id": f"e{i:02d}", "timezone": zone, "invoice_prefix": f"E{i}"}]}


def test_a_time_zone_changed_while_the_first_bill_run_issues_leaves_no_invoice_in_the_old_one(
        pool: Pool) -> None:
    catalog_service.apply_document(entities_catalog(lambda _: ZONES[0]),
                                   datetime(2025, 12, 1, tzinfo=UTC))
    pool.at("2025-12-20T10:00:00Z")
    for i in range(ENTITIES):
        for j in range(SUBS):
            actors.subscribe.send(f"s{i:02d}-{j}", f"c{i:02d}-{j}", "p", "2026-01-01")
    pool.drain()
    pool.at("2026-02-01T07:20:00Z")  # after Oslo's 08:15 of 1 February (and Tokyo's)
    actors.record_usage.send([{"key": f"u{i:02d}-{j}", "customer": f"c{i:02d}-{j}",
                               "meter": "calls", "quantity": "1", "timestamp": USED_AT}
                              for i in range(ENTITIES) for j in range(SUBS)])
    pool.drain()

    refused: set[str] = set()
    rng = random.Random(20)

    def change(i: int, delay: float) -> Callable[[], None]:
        def run() -> None:
            time.sleep(delay)
            try:
                catalog_service.apply_document(one_entity(i, ZONES[1]))
            except catalog_service.CatalogRefused:
                refused.add(f"e{i:02d}")
        return run

    for i in range(ENTITIES):  # the bill runs go to the workers …
        actors.bill_run.send(f"e{i:02d}", RUN)
    # … and the catalog moves each entity to Tokyo about 0.15 s later
    run_all([change(i, 0.15 + rng.uniform(-0.1, 0.1)) for i in range(ENTITIES)], ENTITIES)
    pool.drain()

    with unit_of_work() as session:
        zones = dict(session.execute(select(EntityRow.id, EntityRow.timezone)).all())
        subs = list(session.scalars(select(SubscriptionRow)))
        january = session.execute(
            select(InvoiceRow.entity_id, InvoiceRow.subscription_id, InvoiceLineRow.quantity)
            .join(InvoiceLineRow, InvoiceLineRow.invoice_id == InvoiceRow.id)
            .where(InvoiceLineRow.type == "usage",
                   InvoiceLineRow.period_start == date(2026, 1, 1))).all()
        invoices = session.execute(select(InvoiceRow.entity_id, InvoiceRow.boundary)).all()
    wrong: dict[str, list[str]] = {}

    def problem(entity: str, what: str) -> None:
        wrong.setdefault(entity, []).append(what)

    for sub in subs:
        tz = zones[sub.entity_id]
        if sub.start_at != midnight(sub.start, tz):
            problem(sub.entity_id, f"{sub.id}: start_at in another zone")
        if sub.next_boundary_at != midnight(sub.next_boundary, tz):
            problem(sub.entity_id, f"{sub.id}: next_boundary_at {sub.next_boundary_at} is "
                                   f"not {sub.next_boundary} in {tz}")
        if sub.next_boundary != date(2026, 3, 1):
            problem(sub.entity_id, f"{sub.id}: next boundary {sub.next_boundary}")
    for entity, sub_id, quantity in january:
        expected = Decimal(1) if zones[entity] == ZONES[0] else Decimal(0)
        if quantity != expected:
            problem(entity, f"{sub_id}: January billed {quantity} calls, as in another zone "
                            f"than {zones[entity]}")
    for i in range(ENTITIES):
        entity = f"e{i:02d}"
        count = sum(e == entity for e, _ in invoices)
        if count != 2 * SUBS:
            problem(entity, f"{count} invoices, not {2 * SUBS}")
        if (entity in refused) != (zones[entity] == ZONES[0]):
            problem(entity, f"zone {zones[entity]} although the change was "
                            f"{'refused' if entity in refused else 'applied'}")
    moved = sum(tz == ZONES[1] for tz in zones.values())
    assert wrong == {}, (f"{len(wrong)} of {ENTITIES} entities wrong ({moved} moved to "
                         f"Tokyo): {sorted((e, w[:2]) for e, w in wrong.items())[:4]}")


def test_a_chunk_planned_in_the_old_zone_issues_only_what_the_new_zone_has_closed(
        pg_store: str) -> None:
    """The deterministic version of a zone change between a run's plan and its chunk, to
    the west: planned in Oslo (1 January and 1 February due at 07:15 UTC), the entity moved
    to Los Angeles (no invoice yet: allowed), then the chunk runs. January of Los Angeles
    ends at 08:00 UTC on 1 February: that invoice is not issued by this run (its period is
    not over), but by Los Angeles' run — counting an event of 07:30 UTC, January there."""
    catalog_service.apply_document(entities_catalog(lambda _: ZONES[0]),
                                   datetime(2025, 12, 1, tzinfo=UTC))
    from services import invoicing, usage
    from services.commands import run_command
    from services.subscriptions import do_subscribe

    created = datetime(2025, 12, 20, tzinfo=UTC)
    run_command("subscribe", lambda s, _: do_subscribe(s, created, {
        "id": "s", "customer": "c00-0", "plan": "p", "start": "2026-01-01"}, created),
        message_id="sub-s")
    oslo_run = datetime(2026, 2, 1, 7, 15, tzinfo=UTC)
    planned = invoicing.plan_bill_run("e00", date(2026, 2, 1), oslo_run)
    assert not isinstance(planned, invoicing.Outcome)
    assert planned.due == [("s", date(2026, 1, 1)), ("s", date(2026, 2, 1))]
    catalog_service.apply_document(one_entity(0, "America/Los_Angeles"))
    outcomes = invoicing.issue_chunk(planned.due, planned.run_at, oslo_run)
    assert [o.status for o in outcomes] == ["applied", "refused"], outcomes
    usage.ingest_message([{"key": "late-january", "customer": "c00-0", "meter": "calls",
                           "quantity": "1", "timestamp": "2026-02-01T07:30:00Z"}], "m",
                         datetime(2026, 2, 1, 7, 31, tzinfo=UTC))
    la_run = datetime(2026, 2, 1, 16, 15, tzinfo=UTC)
    invoicing.run_bill_run_now("e00", date(2026, 2, 1), la_run)
    with unit_of_work() as session:
        (quantity,) = session.scalars(
            select(InvoiceLineRow.quantity).join(InvoiceRow, InvoiceRow.id ==
                                                 InvoiceLineRow.invoice_id)
            .where(InvoiceLineRow.type == "usage", InvoiceRow.boundary == date(2026, 2, 1)))
        issued_at = session.scalar(select(InvoiceRow.issued_at).where(
            InvoiceRow.boundary == date(2026, 2, 1)))
    assert quantity == Decimal(1) and issued_at == la_run
