"""A catalog applied over plans and entities in use never re-prices or re-periods a live
subscription (issue #8, finding 3): a changed plan becomes a new version that existing
subscriptions do not see, and a change that would move an issued period or re-bill usage
is refused. Every existing subscription's invoices stay identical to a run without the
change."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.documents import invoice_document
from domain.periods import bill_run_instant
from persistence import db
from persistence import invoices as invoices_repo
from persistence.db import unit_of_work
from scheduler.tick import tick
from services import catalog as catalog_service
from tests.conftest import PG_URL, Runtime
from workers import actors

pytestmark = pytest.mark.xdist_group("catalog_changes")  # one process: one control per kind

BASE: dict[str, Any] = {
    "entities": [{"id": "oslo", "timezone": "Europe/Oslo", "invoice_prefix": "OS"}],
    "meters": [{"id": "tokens", "aggregation": "sum"}, {"id": "seats", "aggregation": "max"}],
    "plans": [
        {"id": "metered", "currency": "EUR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "10.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.01"}]},
        {"id": "seats", "currency": "EUR", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "5.00"},
            {"id": "seats", "type": "usage", "meter": "seats", "model": "unit",
             "unit_price": "1.00"}]},
    ],
    "customers": [{"id": "c-1", "entity": "oslo"}],
}


def changed(change: str) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if change == "another plan charges the meter":
        data["plans"][1]["charges"].append({"id": "tokens", "type": "usage", "meter": "tokens",
                                            "model": "unit", "unit_price": "0.01"})
    elif change == "interval month to week":
        data["plans"][0]["interval"] = "week"
    elif change == "time zone Oslo to Tokyo":
        data["entities"][0]["timezone"] = "Asia/Tokyo"
    elif change == "aggregation sum to max":
        data["meters"][0]["aggregation"] = "max"
    return data


USAGE = [
    # 100 tokens in September, and 100 at 2026-10-31T20:00Z: October in Oslo (21:00) but
    # November in Tokyo (05:00 on 1 November).
    ("2026-09-20T10:00:00Z", "2026-09-15T10:00:00Z", 100),
    ("2026-10-31T21:00:00Z", "2026-10-31T20:00:00Z", 100),
    ("2026-11-20T10:00:00Z", "2026-11-15T10:00:00Z", 100),
]


def run(rt: Runtime, change: str | None) -> list[dict[str, Any]]:
    """Subscriptions from September, usage, daily bill runs to January; ``change`` is
    applied on 10 November, after the November run."""
    catalog_service.apply_document(BASE)
    rt.at("2026-08-30T10:00:00Z")
    rt.deliver(actors.subscribe.message("s-metered", "c-1", "metered", "2026-09-01"))
    rt.deliver(actors.subscribe.message("s-seats", "c-1", "seats", "2026-09-01"))
    rt.deliver(actors.record_usage.message([
        {"key": "seat-1", "customer": "c-1", "meter": "seats", "quantity": 3,
         "timestamp": "2026-08-30T10:00:00Z"}]))
    pending = list(USAGE)
    day = date(2026, 9, 1)
    refusal = None
    while day <= date(2027, 1, 2):
        run_at = bill_run_instant(day, "Europe/Oslo")
        while pending and pending[0][0] <= run_at.isoformat().replace("+00:00", "Z"):
            at, ts, q = pending.pop(0)
            rt.at(at)
            rt.deliver(actors.record_usage.message([
                {"key": f"t-{ts}", "customer": "c-1", "meter": "tokens", "quantity": q,
                 "timestamp": ts}]))
        if change and day == date(2026, 11, 10):
            try:
                catalog_service.apply_document(changed(change))
            except catalog_service.CatalogRefused as exc:
                refusal = str(exc)
        rt.clock.set(run_at)
        tick(run_at)
        rt.drain()
        day += timedelta(days=1)
    if change in ("time zone Oslo to Tokyo", "aggregation sum to max"):
        assert refusal is not None, "the change should have been refused"
    with unit_of_work() as session:
        return [invoice_document(i) for i in invoices_repo.records(session)]


@contextlib.contextmanager
def other_store(runtime: Runtime, tmp_path: Path) -> Iterator[None]:
    """A fresh store of the same kind for the duration; the runtime's store afterwards."""
    url, schema = db.engine().url.render_as_string(hide_password=False), db.current_schema()
    if runtime.name.startswith("postgres"):
        db.configure(PG_URL, schema=f"test_{uuid.uuid4().hex[:12]}")
    else:
        db.configure(f"sqlite:///{tmp_path / 'control.db'}")
    db.create_schema()
    try:
        yield
    finally:
        db.drop_private_schema()
        db.configure(url, schema=schema)


# The invoices of a run without any change, by kind of runtime: the same for every change,
# so made once per kind in each test process (the tests of this module run in one).
_CONTROLS: dict[str, list[dict[str, Any]]] = {}


def control(runtime: Runtime, tmp_path: Path) -> list[dict[str, Any]]:
    if runtime.name not in _CONTROLS:
        with other_store(runtime, tmp_path):
            _CONTROLS[runtime.name] = run(runtime, None)
    return _CONTROLS[runtime.name]


@pytest.mark.parametrize("change", ["another plan charges the meter", "interval month to week",
                                    "time zone Oslo to Tokyo", "aggregation sum to max"])
def test_a_catalog_change_leaves_existing_invoices_identical(
        runtime: Runtime, change: str, tmp_path: Path) -> None:
    expected = control(runtime, tmp_path)
    runtime.clock.set(datetime(2026, 1, 1, tzinfo=UTC))
    assert run(runtime, change) == expected
