"""Every kind of message, delivered twice (the same message id), changes nothing the second
time — on the in-process broker, on dramatiq's Redis broker over fakeredis, and on real
Redis + PostgreSQL in that tier."""

from __future__ import annotations

from decimal import Decimal

from scheduler.tick import tick
from tests.conftest import Runtime
from tests.integration.helpers import apply_catalog, invoices, snapshot
from workers import actors

EVENTS = [
    {"key": "e-1", "customer": "c-1", "meter": "tokens", "quantity": "1500",
     "timestamp": "2026-01-05T10:00:00Z"},
    {"key": "e-2", "customer": "c-1", "meter": "tokens", "quantity": 500,
     "timestamp": "2026-01-06T10:00:00+01:00"},
    {"key": "bad", "customer": "c-1", "meter": "tokens", "quantity": -1,
     "timestamp": "2026-01-06T10:00:00Z"},
]


def twice(rt: Runtime, message: object) -> None:
    """Deliver, snapshot, deliver the very same message again, compare."""
    rt.deliver(message)
    before = snapshot()
    rt.deliver(message)
    assert snapshot() == before


def test_subscribe_twice(runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-01T09:00:00Z")
    twice(runtime, actors.subscribe.message("s-1", "c-1", "pro", "2026-01-01"))
    assert len(snapshot()["subscriptions"]) == 1


def test_record_usage_twice(runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-07T00:00:00Z")
    twice(runtime, actors.record_usage.message(EVENTS))
    state = snapshot()
    assert [r[0] for r in state["usage"]] == ["e-1", "e-2"]
    assert [r[0] for r in state["rejected"]] == ["bad"]
    from persistence import usage as usage_repo
    from persistence.db import unit_of_work

    with unit_of_work() as session:
        assert usage_repo.outcome_counts(session) == {
            "accepted": 2, "duplicate": 0, "conflict": 0, "rejected": 1}


def test_cancel_redelivered_after_uncancel_stays_uncancelled(runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-01T09:00:00Z")
    runtime.deliver(actors.subscribe.message("s-1", "c-1", "pro", "2026-01-01"))
    runtime.at("2026-01-10T09:00:00Z")
    cancel = actors.cancel.message("s-1")
    twice(runtime, cancel)
    assert snapshot()["subscriptions"][0][4].isoformat() == "2026-02-01"
    uncancel = actors.uncancel.message("s-1")
    twice(runtime, uncancel)
    runtime.deliver(cancel)  # a late redelivery of the first cancel
    assert snapshot()["subscriptions"][0][4] is None


def test_set_draft_invoices_redelivered_late_does_not_flip_back(runtime: Runtime) -> None:
    apply_catalog()
    on = actors.set_draft_invoices.message("c-1", True)
    twice(runtime, on)
    twice(runtime, actors.set_draft_invoices.message("c-1", False))
    runtime.deliver(on)
    assert ("c-1", False) in snapshot()["customers"]


def test_bill_run_and_issue_invoice_twice(runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-01T06:00:00Z")
    runtime.deliver(actors.subscribe.message("s-1", "c-1", "pro", "2026-01-01"))
    runtime.at("2026-01-07T00:00:00Z")
    runtime.deliver(actors.record_usage.message(EVENTS))
    runtime.at("2026-02-01T07:15:00Z")
    twice(runtime, actors.bill_run.message("acme", "2026-02-01"))
    twice(runtime, actors.issue_invoice.message("s-1", "2026-02-01", "2026-02-01T07:15:00Z"))
    issued = invoices()
    assert [(i.boundary.isoformat(), i.number) for i in issued] == [
        ("2026-01-01", "AC-000001"), ("2026-02-01", "AC-000002")]
    assert issued[1].total == Decimal("51.00")  # 49 + 2000 × 0.001


def test_release_and_regenerate_twice(runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-01T06:00:00Z")
    runtime.deliver(actors.subscribe.message("s-2", "c-2", "pro", "2026-01-01"))
    runtime.at("2026-01-01T07:15:00Z")
    tick(runtime.clock.now())
    runtime.drain()
    assert [(i.status, i.number) for i in invoices()] == [("draft", None)]
    runtime.at("2026-01-02T07:15:00Z")
    twice(runtime, actors.regenerate_invoice.message("s-2", "2026-01-01"))
    release = actors.release_invoice.message("s-2", "2026-01-01")
    twice(runtime, release)
    assert [(i.status, i.number) for i in invoices()] == [("sent", "AC-000001")]
    runtime.deliver(actors.regenerate_invoice.message("s-2", "2026-01-01"))  # refused: sent
    assert [(i.status, i.number) for i in invoices()] == [("sent", "AC-000001")]


def test_tick_twice_claims_once(runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-01T06:00:00Z")
    runtime.deliver(actors.subscribe.message("s-1", "c-1", "pro", "2026-01-01"))
    runtime.at("2026-01-01T08:00:00Z")
    assert tick(runtime.clock.now()) == [("acme", __import__("datetime").date(2026, 1, 1))]
    assert tick(runtime.clock.now()) == []  # a second scheduler, or a restart
    runtime.drain()
    assert len(invoices()) == 1
