"""SPEC §3 on a real store: each event gets exactly one outcome, nothing is lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import RejectedUsageRow, UsageConflictRow, UsageEventRow
from services.usage import ingest
from tests.integration.helpers import apply_catalog

NOW = datetime(2026, 9, 3, tzinfo=UTC)


def ev(key: object, quantity: object = 1, ts: str = "2026-09-02T00:00:00Z", **kw: object) -> dict:
    return {"key": key, "customer": "c-1", "meter": "tokens", "quantity": quantity,
            "timestamp": ts, **kw}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    apply_catalog()


def run(events: list) -> dict[str, int]:
    with unit_of_work() as session:
        return ingest(session, events, NOW, "m-1")


def test_each_outcome(store: None) -> None:
    counts = run([ev("a"), ev("a"), ev("b", "3", "2026-09-01T23:00:00Z")])
    assert counts == {"accepted": 2, "duplicate": 1, "conflict": 0, "rejected": 0}
    counts = run([
        ev("b", "3.0", "2026-09-02T01:00:00+02:00"),  # same instant and value: duplicate
        ev("a", 100000),  # same key, other payload: conflict, the first stays
        ev("neg", -5), ev("nan", "NaN"), ev("inf", "Infinity"), ev("txt", "lots"),
        ev("naive", 1, "2026-09-02T00:00:00"), ev("future", 1, "2026-09-03T00:05:01Z"),
        ev("edge", 1, "2026-09-03T00:05:00Z"),
        {"key": "m", "customer": "c-1", "meter": "nope", "quantity": 1,
         "timestamp": "2026-09-02T00:00:00Z"},
        {"key": "c", "customer": "ghost", "meter": "tokens", "quantity": 1,
         "timestamp": "2026-09-02T00:00:00Z"},
        ev(""), {"customer": "c-1", "meter": "tokens", "quantity": 1,
                 "timestamp": "2026-09-02T00:00:00Z"},
        ev("ts", 1, "yesterday"), "not an object",
    ])
    assert counts == {"accepted": 1, "duplicate": 1, "conflict": 1, "rejected": 12}
    with unit_of_work() as session:
        kept = session.get(UsageEventRow, "a")
        assert kept is not None and kept.quantity == Decimal(1)
        conflict = session.scalars(select(UsageConflictRow)).one()
        assert conflict.stored_payload["quantity"] == "1"
        assert conflict.received_payload["quantity"] == "100000"
        reasons = {r.key: r.reason for r in session.scalars(select(RejectedUsageRow))}
        assert reasons["neg"].startswith("quantity:") and "≥ 0" in reasons["neg"]
        assert reasons["naive"].startswith("timestamp:") and "offset" in reasons["naive"]
        assert reasons["future"].startswith("timestamp:")
        assert reasons["m"].startswith("meter:")
        assert reasons["c"].startswith("customer:")
        assert reasons[None].startswith("event:") or "key" in reasons[None]
        payloads = {r.key: json.loads(r.payload) for r in session.scalars(select(RejectedUsageRow))}
        assert payloads["nan"]["quantity"] == "NaN"  # the raw payload is kept


def test_rejected_event_can_be_resent_fixed(store: None) -> None:
    assert run([ev("x", -5)])["rejected"] == 1
    assert run([ev("x", 5)])["accepted"] == 1


def test_quantities_are_exact_in_storage(store: None) -> None:
    run([ev("p", "0.1"), ev("q", "0.2"), ev("big", "12345678901234567890.123456789")])
    with unit_of_work() as session:
        assert session.get(UsageEventRow, "big").quantity == Decimal(  # type: ignore[union-attr]
            "12345678901234567890.123456789")
        from domain.catalog import Aggregation, Meter

        period = usage_repo.Period(datetime(2026, 9, 1, tzinfo=UTC),
                                   datetime(2026, 10, 1, tzinfo=UTC), NOW)
        total = usage_repo.aggregate_many(
            session, period, ["c-1"], [Meter("tokens", Aggregation.SUM)])[("c-1", "tokens")]
    assert total == Decimal("12345678901234567890.423456789")
