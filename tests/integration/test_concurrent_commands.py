"""Subscription commands under real concurrency (two workers × eight threads, PostgreSQL +
Redis) and out-of-order delivery: never two live subscriptions of a customer on one
meter, and the outcome of a sequence of commands depends only on the order the
application sent them (issue #8, findings 1 and 2)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from persistence import db
from persistence.db import unit_of_work
from persistence.tables import CustomerRow, SubscriptionRow
from services import catalog as catalog_service
from services import subscriptions
from services.commands import run_command
from tests.conftest import Pool
from workers import actors

pytestmark = pytest.mark.postgres

N_CUSTOMERS = 400


def catalog(customers: int) -> dict[str, Any]:
    return {
        "entities": [{"id": "acme", "timezone": "UTC", "invoice_prefix": "AC"}],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [
            {"id": "pro", "currency": "EUR", "interval": "month", "charges": [
                {"id": "base", "type": "recurring", "amount": "49.00"},
                {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
                 "unit_price": "0.001"}]},
            {"id": "tokens-too", "currency": "EUR", "interval": "month", "charges": [
                {"id": "t", "type": "usage", "meter": "tokens", "model": "unit",
                 "unit_price": "1"}]},
        ],
        "customers": [{"id": f"c-{i}", "entity": "acme"} for i in range(customers)],
    }


def apply(data: dict[str, Any]) -> None:
    catalog_service.apply_document(data, datetime(2000, 1, 1, tzinfo=UTC))


def subscriptions_by_id() -> dict[str, SubscriptionRow]:
    with unit_of_work() as session:
        return {r.id: r for r in session.scalars(select(SubscriptionRow))}


def sent(at: datetime) -> dict[str, Any]:
    """The message options of a command sent at ``at`` (what the broker stamps)."""
    return {"sent_at": at.isoformat()}


def cancelled_subscriptions(pool: Pool, n: int) -> None:
    """Customer i holds ``a-i`` on plan pro from 2026-11-01, cancelled: ends 2027-01-01."""
    apply(catalog(n))
    pool.at("2026-10-20T10:00:00Z")
    for i in range(n):
        actors.subscribe.send(f"a-{i}", f"c-{i}", "pro", "2026-11-01")
    pool.drain()
    pool.at("2026-12-10T10:00:00Z")
    for i in range(n):
        actors.cancel.send(f"a-{i}")
    pool.drain()
    assert {r.end.isoformat() for r in subscriptions_by_id().values() if r.end} == {"2027-01-01"}


def test_subscribe_racing_uncancel_never_leaves_two_live_subscriptions(pool: Pool) -> None:
    cancelled_subscriptions(pool, N_CUSTOMERS)
    pool.at("2026-12-15T10:00:00Z")
    for i in range(N_CUSTOMERS):
        pair = [actors.subscribe.message(f"b-{i}", f"c-{i}", "tokens-too", "2027-01-01"),
                actors.uncancel.message(f"a-{i}")]
        for message in pair if i % 2 else reversed(pair):
            pool.broker.enqueue(message)
    pool.drain()
    subs = subscriptions_by_id()
    both_live = [i for i in range(N_CUSTOMERS)
                 if subs[f"a-{i}"].end is None and f"b-{i}" in subs]
    neither = [i for i in range(N_CUSTOMERS)
               if subs[f"a-{i}"].end is not None and f"b-{i}" not in subs]
    assert both_live == [], f"{len(both_live)} of {N_CUSTOMERS} customers billed twice"
    assert neither == []  # one of the two commands always wins


def test_uncancel_waits_for_a_subscribe_that_passed_its_overlap_check(pool: Pool) -> None:
    """The deterministic version: another session holds an uncommitted insert of ``b-0``,
    so ``subscribe(b-0)`` passes its overlap check and waits on that insert; meanwhile
    ``uncancel(a-0)`` runs; then the other session rolls back and ``subscribe`` commits."""
    cancelled_subscriptions(pool, 1)
    pool.at("2026-12-15T10:00:00Z")
    now = datetime(2026, 12, 15, 10, tzinfo=UTC)
    holder = db.engine().connect()
    holder_tx = holder.begin()
    holder.execute(text(
        "INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, plan_version, start, "
        "start_at, sent_at, created_at, next_k, next_boundary, next_boundary_at) VALUES "
        "('b-0', 'c-0', 'acme', 'tokens-too', 1, '2027-01-01', :at, :at, :at, 0, "
        "'2027-01-01', :at)"), {"at": now})
    outcomes: dict[str, str] = {}

    def command(name: str, handler: Any) -> None:
        outcomes[name] = run_command(name, handler, message_id=f"{name}-0").status

    request = {"id": "b-0", "customer": "c-0", "plan": "tokens-too", "start": "2027-01-01"}
    subscribe = threading.Thread(target=command, args=(
        "subscribe", lambda s, t: subscriptions.do_subscribe(s, t, request)))
    uncancel = threading.Thread(target=command, args=(
        "uncancel", lambda s, t: subscriptions.do_uncancel(s, t, "a-0")))
    subscribe.start()
    time.sleep(1.0)  # subscribe has checked for overlaps and waits on the insert
    uncancel.start()
    uncancel.join(timeout=2.0)
    holder_tx.rollback()
    holder.close()
    subscribe.join(timeout=30)
    uncancel.join(timeout=30)
    subs = subscriptions_by_id()
    assert outcomes["subscribe"] == "applied"
    assert outcomes["uncancel"] == "refused"
    assert "b-0" in subs and subs["a-0"].end is not None


# The application sends these in this order, at these instants; dramatiq may deliver
# them in any order (threads, retries), and twice.
T0 = datetime(2026, 12, 12, 9, tzinfo=UTC)
SEQUENCES: dict[str, tuple[list[tuple[str, datetime]], str | None]] = {
    # (commands in sent order, the end the subscription must have afterwards)
    "cancel-cancel-uncancel": ([("cancel", T0), ("cancel", T0 + timedelta(seconds=1)),
                                ("uncancel", T0 + timedelta(seconds=2))], None),
    "uncancel-cancel": ([("uncancel", T0), ("cancel", T0 + timedelta(seconds=1))],
                        "2027-01-01"),
    "cancel-uncancel-cancel": ([("cancel", T0), ("uncancel", T0 + timedelta(seconds=1)),
                                ("cancel", T0 + timedelta(days=10))], "2027-01-01"),
}


def test_commands_apply_in_the_order_they_were_sent(pool: Pool) -> None:
    apply(catalog(300))
    pool.at("2026-10-20T10:00:00Z")
    for i in range(300):
        actors.subscribe.send(f"a-{i}", f"c-{i}", "pro", "2026-11-01")
    pool.drain()
    pool.at("2026-12-31T10:00:00Z")  # every command is processed after it was sent
    expected: dict[str, str | None] = {}
    deliveries = 0
    names = sorted(SEQUENCES)
    for i in range(300):
        commands, end = SEQUENCES[names[i % len(names)]]
        expected[f"a-{i}"] = end
        messages = [getattr(actors, kind).message_with_options(args=(f"a-{i}",), **sent(at))
                    for kind, at in commands]
        orders = list(itertools.permutations(messages))
        order = orders[(i // len(names)) % len(orders)]
        for message in [*order, *order]:  # every order, and each message twice
            pool.broker.enqueue(message)
            deliveries += 1
    pool.drain()
    got = {s.id: (s.end.isoformat() if s.end else None) for s in subscriptions_by_id().values()}
    wrong = {sub: (got[sub], end) for sub, end in expected.items() if got[sub] != end}
    assert deliveries >= 300
    assert wrong == {}, f"{len(wrong)} of 300 subscriptions wrong, e.g. {list(wrong.items())[:3]}"


def test_set_draft_invoices_applies_in_the_order_sent(pool: Pool) -> None:
    apply(catalog(60))
    pool.at("2026-12-31T10:00:00Z")
    for i in range(60):
        on = actors.set_draft_invoices.message_with_options(args=(f"c-{i}", True), **sent(T0))
        off = actors.set_draft_invoices.message_with_options(
            args=(f"c-{i}", False), **sent(T0 + timedelta(seconds=1)))
        for message in ([off, on, off, on] if i % 2 else [on, off, on, off]):
            pool.broker.enqueue(message)
    pool.drain()
    with unit_of_work() as session:
        drafts = {r.id: r.draft_invoices for r in session.scalars(select(CustomerRow))}
    assert not any(drafts.values()), sorted(c for c, v in drafts.items() if v)
