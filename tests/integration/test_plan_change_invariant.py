"""SPEC §14's promises for random plan histories, with late usage and bill runs: the
segments of each period partition it (each invoice's usage lines of a charge cover the
period once, day by day), and — §11 per segment — the amounts of all lines for a
(charge, segment) across the subscription's invoices add up to the segment priced on
everything the latest computation counted, with its prorated minimum."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, localcontext
from itertools import pairwise
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from domain.aggregation import aggregate
from domain.catalog import parse_catalog
from domain.periods import bill_run_instant
from domain.pricing import price_usage
from domain.usage import UsageEvent
from persistence import db
from persistence import plan_changes as plan_changes_repo
from persistence import subscriptions as subs_repo
from persistence.db import unit_of_work
from persistence.tables import InvoiceLineRow, InvoiceRow, UsageEventRow
from services import catalog as catalog_service
from services import invoicing, plan_changes, subscriptions, usage

CATALOG: dict[str, Any] = {
    "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E"}],
    "meters": [{"id": "calls", "aggregation": "sum"}, {"id": "disk", "aggregation": "last"}],
    "plans": [
        {"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "10.00"},
            {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
             "unit_price": "1.00", "minimum": "5.00"},
            {"id": "disk", "type": "usage", "meter": "disk", "model": "unit",
             "unit_price": "0.3"}]},
        {"id": "q", "currency": "USD", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "30.00"},
            {"id": "calls", "type": "usage", "meter": "calls", "model": "volume",
             "included": 3, "tiers": [{"up_to": 10, "unit_price": "0.50"},
                                      {"up_to": None, "unit_price": "0.25"}]},
            {"id": "disk", "type": "usage", "meter": "disk", "model": "unit",
             "unit_price": "0.5", "minimum": "2.00"}]},
    ],
    "customers": [{"id": "c", "entity": "e"}],
}
CATALOG_PLANS = parse_catalog(CATALOG).plans
METERS = parse_catalog(CATALOG).meters

actions = st.lists(st.one_of(
    st.tuples(st.just("days"), st.integers(1, 20)),
    st.tuples(st.just("change"), st.sampled_from(["p", "q"]), st.integers(0, 31)),
    st.tuples(st.just("change"), st.sampled_from(["p", "q"]), st.integers(0, 31)),
    st.tuples(st.just("usage"), st.integers(0, 2), st.sampled_from(["calls", "disk"]),
              st.integers(0, 20), st.integers(0, 27)),
    st.tuples(st.just("usage"), st.integers(0, 2), st.sampled_from(["calls", "disk"]),
              st.integers(0, 20), st.integers(0, 27)),
), min_size=6, max_size=22).map(lambda steps: [("days", 20), *steps, ("days", 40)])


def run(steps: list[tuple[Any, ...]], folder: Path) -> None:
    db.configure(f"sqlite:///{folder / 'plans.db'}")
    db.create_schema()
    now = datetime(2025, 12, 20, tzinfo=UTC)
    catalog_service.apply_document(CATALOG, now)
    with unit_of_work() as session:
        subscriptions.do_subscribe(session, now, {"id": "s", "customer": "c", "plan": "p",
                                                  "start": "2026-01-01"})
    day = date(2025, 12, 31)
    for serial, step in enumerate(steps, 1):
        if step[0] == "days":
            for _ in range(step[1]):
                day += timedelta(days=1)
                invoicing.run_bill_run_now("e", day, bill_run_instant(day, "UTC"))
            now = bill_run_instant(day, "UTC") + timedelta(hours=1)
        elif step[0] == "change":  # from a day of this month or the next one's first
            _, plan, offset = step
            since = min(day.replace(day=1) + timedelta(days=offset),
                        (day.replace(day=28) + timedelta(days=4)).replace(day=1))
            with unit_of_work() as session:
                plan_changes.do_change_plan(session, now, "s", plan, since.isoformat(), now)
        else:  # an event of this month or an earlier one: maybe late
            _, back, meter, quantity, day_of_month = step
            month = (day.month - 1 - back) % 12 + 1
            year = day.year - (1 if day.month - 1 - back < 0 else 0)
            stamp = datetime(year, month, 1 + day_of_month, 12, tzinfo=UTC)
            if datetime(2026, 1, 1, tzinfo=UTC) <= stamp <= now:
                usage.ingest_message([{"key": f"k-{serial}", "customer": "c", "meter": meter,
                                       "quantity": quantity, "timestamp": stamp.isoformat()}],
                                     f"m-{serial}", now)
        now += timedelta(seconds=1)


def check() -> None:
    with unit_of_work() as session:
        invoices = {i.id: i for i in session.scalars(select(InvoiceRow))}
        lines = list(session.scalars(select(InvoiceLineRow)))
        events = [UsageEvent(e.key, e.customer_id, e.meter_id, e.quantity, e.timestamp,
                             e.properties or {}) for e in session.scalars(select(UsageEventRow))]
        ingested = {e.key: e.ingested_at for e in session.scalars(select(UsageEventRow))}
        row = subs_repo.get(session, "s")
        assert row is not None
        history = plan_changes_repo.histories(session, [row])[row.id]
    boundaries = sorted(i.boundary for i in invoices.values())
    # the usage lines of each invoice cover its closing period once per charge
    for invoice in invoices.values():
        previous = [b for b in boundaries if b < invoice.boundary]
        if not previous:
            continue
        for charge in ("calls", "disk"):
            spans = sorted((ln.period_start, ln.period_end) for ln in lines
                           if ln.invoice_id == invoice.id and ln.type == "usage"
                           and ln.charge_id == charge)
            assert spans[0][0] == previous[-1] and spans[-1][1] == invoice.boundary
            assert all(a[1] == b[0] for a, b in pairwise(spans))
    totals: dict[tuple[str, date, date], Decimal] = defaultdict(Decimal)
    for ln in lines:
        if ln.type in ("usage", "adjustment"):
            totals[(ln.charge_id, ln.period_start, ln.period_end)] += ln.amount
    for (charge_id, start, end), billed in totals.items():
        covering = next(i for i in invoices.values() if any(
            ln.invoice_id == i.id and ln.type == "usage" and ln.period_start == start
            and ln.charge_id == charge_id for ln in lines))
        counted = [covering.computed_at]
        if covering.sent_at is not None:
            counted += [i.computed_at for i in invoices.values()
                        if i.boundary > covering.boundary and i.computed_at > covering.sent_at]
        last = max(counted)
        plan = history.in_force(start).plan
        charge = next(c for c in plan.usage_charges if c.id == charge_id)
        period = (max(b for b in boundaries if b <= start), covering.boundary)
        q = aggregate(METERS[charge.meter], [
            e for e in events if e.meter == charge.meter and ingested[e.key] <= last
            and datetime(start.year, start.month, start.day, tzinfo=UTC) <= e.timestamp
            < datetime(end.year, end.month, end.day, tzinfo=UTC)])
        if charge.minimum is not None:  # SPEC §14, in 28 digits, written out here
            with localcontext(Context(prec=28)):
                share = charge.minimum * (end - start).days / (period[1] - period[0]).days
            charge = replace(charge, minimum=share)
        want = price_usage(charge, q, "USD")
        assert billed == want, (charge_id, start, end, billed, want)


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=actions)
@example(steps=[  # an upgrade mid-January, late January usage on both sides of it
    ("days", 20), ("change", "q", 24), ("usage", 0, "calls", 7, 5), ("usage", 0, "calls", 9, 28),
    ("days", 15), ("usage", 1, "calls", 4, 3), ("usage", 1, "disk", 2, 27), ("days", 40)])
def test_segments_partition_periods_and_add_up_to_their_latest_price(
        steps: list[tuple[Any, ...]], tmp_path: Path) -> None:
    folder = tmp_path / f"run-{uuid.uuid4().hex}"
    folder.mkdir()
    try:
        run(steps, folder)
        check()
    finally:
        db.engine().dispose()


def test_the_plans_of_the_catalog() -> None:
    assert set(CATALOG_PLANS) == {"p", "q"}
