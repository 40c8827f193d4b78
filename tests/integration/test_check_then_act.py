"""Check, then act, everywhere else (issue #20): each pair of a check and an act that
another request, actor, command or the scheduler could slip between, at the same time on
PostgreSQL (docs/decisions.md, "Check, then act: what was checked").

- a meter's aggregation changed while a subscribe to a plan charging it runs;
- one subscription id subscribed by two customers at once; one new customer PUT twice at
  once; one portal link asked twice at once with one Idempotency-Key (each was a 500);
- API keys created with one name, or revoked, at once; dead letters requeued twice at once;
- an uncancel processed after a bill run dealt with the final boundary of a plan whose
  final invoice has no line (no invoice to contradict, but the run moved past it), and a
  run's plan advancing past that boundary while the uncancel commits.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from domain.periods import midnight
from persistence import catalog as catalog_repo
from persistence import deadletters as deadletters_repo
from persistence.db import unit_of_work
from persistence.tables import (
    ApiKeyRow,
    CustomerRow,
    EntityRow,
    InvoiceRow,
    MeterRow,
    PortalLinkRow,
    SubscriptionRow,
)
from services import api_keys, invoicing, subscriptions
from services import catalog as catalog_service
from services.commands import run_command
from tests.conftest import Pool
from tests.integration.http_server import serving
from workers import actors
from workers import deadletters as deadletters_worker

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 20, 10, tzinfo=UTC)


def run_all(tasks: list[Callable[[], Any]], threads: int = 16) -> list[Any]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [f.result(timeout=300) for f in [pool.submit(t) for t in tasks]]


def base_catalog(customers: int = 2) -> dict[str, Any]:
    return {
        "entities": [{"id": "acme", "timezone": "Europe/Oslo", "invoice_prefix": "AC"}],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [{"id": "pro", "currency": "EUR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "49.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.001"}]},
                  {"id": "fee", "currency": "EUR", "interval": "month", "charges": [
                      {"id": "fee", "type": "recurring", "amount": "10.00"}]}],
        "customers": [{"id": f"c-{i}", "entity": "acme"} for i in range(customers)],
    }


def subscribe(subscription: str, customer: str, plan: str = "pro",
              start: str = "2026-02-01", now: datetime = NOW) -> str:
    return run_command("subscribe", lambda s, _: subscriptions.do_subscribe(
        s, now, {"id": subscription, "customer": customer, "plan": plan, "start": start}, now),
        message_id=f"sub-{subscription}-{customer}").status


# ---------------------------------------------------------------------------- the catalog


def test_a_meter_changed_while_a_subscribe_charging_it_runs_waits_for_it_or_is_refused(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deterministic version: the catalog change has counted no subscription charging
    the meter and is held 2 s before it writes; a subscribe to a plan charging the meter
    starts then. It must wait for the change (sold on the new aggregation) — not commit in
    between, leaving a subscription whose meter is re-aggregated under it."""
    catalog_service.apply_document(base_catalog(), NOW)
    counted = threading.Event()
    count = catalog_repo.meter_subscription_count

    def slow_count(*args: Any) -> int:
        found = count(*args)
        counted.set()
        time.sleep(2.0)
        return found

    monkeypatch.setattr(catalog_repo, "meter_subscription_count", slow_count)
    changed = {"meters": [{"id": "tokens", "aggregation": "max"}]}
    change = threading.Thread(target=catalog_service.apply_document, args=(changed,))
    change.start()
    assert counted.wait(30)
    outcome: list[str] = []
    sub = threading.Thread(target=lambda: outcome.append(subscribe("s-1", "c-1")))
    sub.start()
    sub.join(timeout=1.0)
    waited = sub.is_alive()  # the subscribe waits for the change's commit
    change.join(timeout=60)
    sub.join(timeout=60)
    with unit_of_work() as session:
        meter = session.get(MeterRow, "tokens")
        assert meter is not None and meter.aggregation == "max"
    assert outcome == ["applied"]
    assert waited, "the subscribe committed between the change's check and its write"


def test_a_time_zone_changed_while_a_subscribe_runs_leaves_no_instant_in_the_old_zone(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other way round, for a zone: a subscribe has read its entity (Oslo) and is held
    2 s before it stores the subscription; a catalog change moves the entity to Tokyo
    then. The change must wait for the subscribe (and move its subscription), not commit
    in between and leave a subscription with the old zone's instants."""
    catalog_service.apply_document(base_catalog(), NOW)
    read = threading.Event()
    lock_meters = catalog_repo.lock_meters

    def slow_lock(*args: Any, **kwargs: Any) -> None:
        lock_meters(*args, **kwargs)
        if kwargs.get("share"):  # the subscribe, right after it read its entity
            read.set()
            time.sleep(2.0)

    monkeypatch.setattr(catalog_repo, "lock_meters", slow_lock)
    outcome: list[str] = []
    sub = threading.Thread(target=lambda: outcome.append(subscribe("s-1", "c-1")))
    sub.start()
    assert read.wait(30)
    catalog_service.apply_document(
        {"entities": [{"id": "acme", "timezone": "Asia/Tokyo", "invoice_prefix": "AC"}]})
    sub.join(timeout=60)
    with unit_of_work() as session:
        row = session.get(SubscriptionRow, "s-1")
        zone = session.get(EntityRow, "acme")
    assert outcome == ["applied"] and row is not None and zone is not None
    assert zone.timezone == "Asia/Tokyo"
    assert row.start_at == midnight(row.start, "Asia/Tokyo"), \
        f"start_at {row.start_at} is midnight of {row.start} in the old zone"


@pytest.fixture
def api(pool: Pool) -> Iterator[tuple[httpx.Client, str]]:
    catalog_service.apply_document(base_catalog(40), NOW)
    pool.at("2026-01-20T10:00:00Z")
    _, key = api_keys.create("races", NOW)
    with serving() as base, httpx.Client(base_url=base, timeout=120, headers={
            "Authorization": f"Bearer {key}"}) as client:
        yield client, key


def test_one_subscription_id_subscribed_by_two_customers_at_once_is_one_subscription(
        api: tuple[httpx.Client, str]) -> None:
    client, _ = api
    tasks = [(lambda i=i, c=c: client.post("/v1/subscriptions", json={
        "id": f"s-{i}", "customer": f"c-{2 * i + c}", "plan": "pro", "start": "2026-02-01"}))
        for i in range(20) for c in (0, 1)]
    answers = run_all(tasks)
    codes = Counter(a.status_code for a in answers)
    assert codes == {201: 20, 409: 20}, [a.text[:200] for a in answers if a.status_code >= 500]
    with unit_of_work() as session:
        assert len(list(session.scalars(select(SubscriptionRow)))) == 20


def test_a_new_customer_put_twice_at_once_is_created_once(
        api: tuple[httpx.Client, str]) -> None:
    client, _ = api
    tasks = [(lambda i=i, n=n: client.put(f"/v1/customers/new-{i}", json={
        "entity": "acme", "email": f"ap{n}@example.com"})) for i in range(20) for n in (0, 1)]
    answers = run_all(tasks)
    codes = Counter(a.status_code for a in answers)
    assert codes == {201: 20, 200: 20}, [a.text[:200] for a in answers if a.status_code >= 500]
    with unit_of_work() as session:
        assert sum(c.id.startswith("new-") for c in session.scalars(select(CustomerRow))) == 20


def test_a_portal_link_asked_twice_at_once_with_one_key_is_one_link(
        api: tuple[httpx.Client, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from services.settings import settings

    monkeypatch.setenv("BILLING_PORTAL_SECRET", "a-secret-of-the-tests-" + "x" * 16)
    settings.cache_clear()
    client, _ = api
    tasks = [(lambda i=i: client.post("/v1/portal-links", json={"customer": f"c-{i}"},
                                      headers={"Idempotency-Key": f"link-{i}"}))
             for i in range(20) for _ in (0, 1)]
    answers = run_all(tasks)
    settings.cache_clear()
    assert Counter(a.status_code for a in answers) == {201: 40}, \
        [a.text[:200] for a in answers if a.status_code != 201]
    for i in range(20):
        assert answers[2 * i].json() == answers[2 * i + 1].json()
    with unit_of_work() as session:
        assert len(list(session.scalars(select(PortalLinkRow)))) == 20


# ---------------------------------------------------------------------------- operators


def test_api_keys_made_with_one_name_or_revoked_at_once(pg_store: str) -> None:
    def create() -> str:
        try:
            api_keys.create("twice", NOW)
            return "created"
        except api_keys.Invalid as exc:
            return exc.message

    made = run_all([create] * 8, threads=8)
    assert made.count("created") == 1, made
    assert all("exists" in m for m in made if m != "created"), made

    revoked = run_all([(lambda s=s: api_keys.revoke("twice", NOW + timedelta(seconds=s)))
                       for s in range(8)], threads=8)
    with unit_of_work() as session:
        (row,) = session.scalars(select(ApiKeyRow))
    assert {r.revoked_at for r in revoked if r is not None} == {row.revoked_at}, \
        "two revocations each recorded their own instant"


class Counting(StubBroker):
    """A stub broker that counts what is sent to it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: Counter[str] = Counter()
        self.lock = threading.Lock()

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        with self.lock:
            self.sent[message.message_id] += 1
        time.sleep(0.002)  # a broker's round trip
        return message


def test_dead_letters_requeued_twice_at_once_are_sent_once_each(pg_store: str) -> None:
    letters = 60
    with unit_of_work() as session:
        for i in range(letters):
            message = actors.cancel.message(f"s-{i}")
            deadletters_repo.add(session, message.message_id, message.queue_name,
                                 message.actor_name, message.encode().decode("ascii"),
                                 "RuntimeError: a bug", NOW)
    broker = Counting()
    counts = run_all([lambda: deadletters_worker.requeue(broker)] * 2, threads=2)
    assert sum(counts) == letters and len(broker.sent) == letters
    assert set(broker.sent.values()) == {1}, \
        f"{sum(n > 1 for n in broker.sent.values())} of {letters} dead letters sent twice"
    with unit_of_work() as session:
        assert deadletters_repo.all(session) == []


# ---------------------------------------------------------------------------- cancel/run


def final_boundary_dealt_with(pg_store: str) -> None:
    """``s-1`` on a plan without usage charges (its final invoice has no line), invoiced on
    1 January and cancelled: it ends 2026-02-01, where the run of 1 February has nothing
    to invoice (and moves past)."""
    catalog_service.apply_document(base_catalog(), NOW)
    subscribe("s-1", "c-1", "fee", "2026-01-01", datetime(2025, 12, 20, tzinfo=UTC))
    invoicing.run_bill_run_now("acme", date(2026, 1, 1), datetime(2026, 1, 1, 7, 15,
                                                                   tzinfo=UTC))
    jan = datetime(2026, 1, 10, tzinfo=UTC)
    assert run_command("cancel", lambda s, t: subscriptions.do_cancel(s, t, "s-1", jan),
                       message_id="cancel-1").status == "applied"


def test_an_uncancel_processed_after_the_run_passed_the_final_boundary_is_refused(
        pg_store: str) -> None:
    final_boundary_dealt_with(pg_store)
    run_at = datetime(2026, 2, 1, 7, 15, tzinfo=UTC)
    invoicing.run_bill_run_now("acme", date(2026, 2, 1), run_at)
    sent = datetime(2026, 1, 31, 20, tzinfo=UTC)  # sent before the end, processed late
    outcome = run_command("uncancel", lambda s, t: subscriptions.do_uncancel(
        s, run_at + timedelta(hours=1), "s-1", sent), message_id="uncancel-1")
    # had it applied, February would never be invoiced: the run has moved past 1 February
    with unit_of_work() as session:
        row = session.get(SubscriptionRow, "s-1")
        invoiced = sorted(session.scalars(select(InvoiceRow.boundary)))
    assert row is not None
    assert outcome.status == "refused" and row.end == date(2026, 2, 1), outcome
    assert invoiced == [date(2026, 1, 1)]


def test_a_run_planned_before_an_uncancel_does_not_move_past_the_boundary_it_now_bills(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's plan read the subscription with its end (nothing to invoice at the end)
    and is held before it moves the subscription on; the uncancel (sent in time) commits
    then. The run must not move past the boundary that now has an invoice."""
    final_boundary_dealt_with(pg_store)
    planned = threading.Event()
    advance = invoicing.subs_repo.advance

    def slow_advance(*args: Any, **kwargs: Any) -> None:
        planned.set()
        time.sleep(1.5)
        advance(*args, **kwargs)

    monkeypatch.setattr(invoicing.subs_repo, "advance", slow_advance)
    run_at = datetime(2026, 2, 1, 7, 15, tzinfo=UTC)
    run = threading.Thread(target=invoicing.plan_bill_run,
                           args=("acme", date(2026, 2, 1), run_at))
    run.start()
    assert planned.wait(30)
    sent = datetime(2026, 1, 31, 20, tzinfo=UTC)
    outcome = run_command("uncancel", lambda s, t: subscriptions.do_uncancel(
        s, run_at, "s-1", sent), message_id="uncancel-1")
    run.join(timeout=60)
    monkeypatch.undo()
    invoicing.run_bill_run_now("acme", date(2026, 2, 2),
                               datetime(2026, 2, 2, 7, 15, tzinfo=UTC))
    with unit_of_work() as session:
        row = session.get(SubscriptionRow, "s-1")
        invoiced = sorted(session.scalars(select(InvoiceRow.boundary)))
    assert row is not None
    if outcome.status == "applied":  # it won: February is invoiced (by the next run)
        assert row.end is None and invoiced == [date(2026, 1, 1), date(2026, 2, 1)], \
            (outcome, invoiced)
    else:  # the run won: the uncancel is refused, the subscription ends
        assert row.end == date(2026, 2, 1) and invoiced == [date(2026, 1, 1)]


def test_a_cancel_racing_the_issue_of_its_subscription_waits_instead_of_deadlocking(
        pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue of ``s-1``'s invoice has locked the subscription and is computing; a
    cancel of ``s-1`` locks its customer (serialized per customer), then waits for the
    subscription. The invoice's insert checks its customer (a foreign key): that check
    must not wait for the cancel's customer lock — else each waits for the other and the
    database kills one (a deadlock)."""
    catalog_service.apply_document(base_catalog(), NOW)
    subscribe("s-1", "c-1", "pro", "2026-01-01", datetime(2025, 12, 20, tzinfo=UTC))
    computing = threading.Event()
    compute = invoicing.compute_many

    def slow_compute(*args: Any, **kwargs: Any) -> Any:
        computing.set()
        time.sleep(1.5)  # the cancel takes the customer's lock meanwhile
        return compute(*args, **kwargs)

    monkeypatch.setattr(invoicing, "compute_many", slow_compute)
    errors: list[BaseException] = []

    def issue() -> None:
        try:
            invoicing.issue_chunk([("s-1", date(2026, 1, 1))],
                                  datetime(2026, 1, 1, 7, 15, tzinfo=UTC), NOW)
        except BaseException as exc:  # reported below
            errors.append(exc)

    issuing = threading.Thread(target=issue)
    issuing.start()
    assert computing.wait(30)
    try:
        cancel = run_command("cancel", lambda s, t: subscriptions.do_cancel(
            s, t, "s-1", datetime(2026, 1, 10, tzinfo=UTC)), message_id="cancel-1").status
    except BaseException as exc:  # reported below
        errors.append(exc)
        cancel = "error"
    issuing.join(timeout=60)
    assert errors == [], errors
    assert cancel == "applied"
    with unit_of_work() as session:
        assert list(session.scalars(select(InvoiceRow.boundary))) == [date(2026, 1, 1)]
