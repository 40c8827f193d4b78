"""SPEC §13 from the rollups: for random filters, events and folds, the estimate's answer
per (customer, group) from the hourly rollups equals the answer from the events — and the
plain Python rule — for every aggregation, in zones whose midnights split hours, with
re-sent keys, events folded before the filters were known (a re-fold), events late for
hours already folded and batches not folded yet. On SQLite (where nothing folds and the
estimate reads the events) and on PostgreSQL when it answers. A catalog change that adds a
filter re-folds the meter's rollups."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from domain.aggregation import aggregate
from domain.catalog import Aggregation, Meter
from domain.filters import DEFAULT_GROUP, Filter, group_of
from domain.periods import midnight
from domain.usage import UsageEvent
from persistence import db, rollups
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.sql import is_postgres
from persistence.tables import UsageEventRow, UsageRollupKeysRow, UsageRollupRow
from persistence.usage import Period
from services import catalog as catalog_service
from services import rollups as rollups_service
from services import subscriptions
from tests.conftest import PG_URL, require_services
from tests.integration.test_filter_groups import filter_sets, property_values

START = datetime(2026, 3, 1, tzinfo=UTC)
NAMES = ["model", "mode", "region"]
ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        db.configure(f"sqlite:///{tmp_path / 'rollup-groups.db'}")
    else:
        require_services()
        db.configure(PG_URL, schema=f"test_rgrp_{uuid.uuid4().hex[:10]}")
    db.create_schema()
    yield request.param
    db.drop_private_schema()
    db.engine().dispose()


def _reset() -> None:
    """Empty tables, both customers' usage wanted rolled up from before any event (as their
    subscriptions would ask)."""
    with unit_of_work() as session:
        for table in ("usage_rollups", "usage_rollup_keys", "usage_fold_state", "usage_events",
                      "usage_rollup_horizons"):
            session.execute(text(f"DELETE FROM {table}"))
        for customer in ("c1", "c2"):
            rollups.want_horizon(session, customer, START - timedelta(days=2))


def _by_the_rule(meter: Meter, filters: tuple[Filter, ...], customers: list[str],
                 period: Period) -> dict[tuple[str, str], Decimal]:
    """Every stored event (the first of each key), grouped and aggregated in Python."""
    with unit_of_work() as session:
        rows = session.execute(select(UsageEventRow)).scalars().all()
    members: dict[tuple[str, str], list[UsageEvent]] = {}
    for row in rows:
        if period.start_at <= row.timestamp < period.end_at:
            event = UsageEvent(row.key, row.customer_id, row.meter_id, row.quantity,
                               row.timestamp, row.properties or {})
            members.setdefault((row.customer_id, group_of(event.properties, filters)),
                               []).append(event)
    groups = [DEFAULT_GROUP, *(f.id for f in filters)]
    return {(c, g): aggregate(meter, members.get((c, g), [])) for c in customers
            for g in groups}


event = st.tuples(
    st.integers(0, 40),  # the key: a small space, so that keys are re-sent
    st.dictionaries(st.sampled_from(NAMES), property_values, max_size=3),
    st.decimals(min_value=0, max_value=1000, places=2),
    st.integers(-24 * 60, 5 * 24 * 60),  # minutes from START: some outside the period
    st.sampled_from(["c1", "c2"]))
# batches of events; after each: fold or not, and whether the filters are known by then
steps = st.lists(st.tuples(st.lists(event, max_size=10), st.booleans(), st.booleans()),
                 min_size=1, max_size=5)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters=filter_sets(), steps=steps, aggregation=st.sampled_from(list(Aggregation)),
       zone=st.sampled_from(ZONES), first_day=st.integers(0, 2), days=st.integers(1, 3),
       fold_last=st.booleans())
def test_the_rollups_per_group_give_what_the_events_give(
        store: str, filters: tuple[Filter, ...], steps: list[Any], aggregation: Aggregation,
        zone: str, first_day: int, days: int, fold_last: bool) -> None:
    _reset()
    meter = Meter("m", aggregation, "model" if aggregation is Aggregation.UNIQUE_COUNT else None)
    customers = ["c1", "c2"]
    known = False
    for batch, then_fold, now_known in steps:
        with unit_of_work() as session:
            usage_repo.insert_events(session, [
                UsageEvent(f"k{key}", customer, "m", quantity,
                           START + timedelta(minutes=minutes), props)
                for key, props, quantity, minutes, customer in batch], START)
            if now_known and not known:  # a plan version with these filters is stored
                rollups.want_keys(session, {"m": rollups.filter_keys(filters)})
                known = True
        if then_fold:
            rollups_service.fold()
    if not known:
        with unit_of_work() as session:
            rollups.want_keys(session, {"m": rollups.filter_keys(filters)})
    if fold_last:
        rollups_service.fold()
    first = date(2026, 3, 1) + timedelta(days=first_day)
    period = Period(midnight(first, zone), midnight(first + timedelta(days=days), zone))
    with unit_of_work() as session:
        rolled = usage_repo.aggregate_groups(session, period, customers, meter, filters,
                                             rolled_up=True)
        read = usage_repo.aggregate_groups(session, period, customers, meter, filters)
        if fold_last and is_postgres(session):  # the rollups answered, not the events
            assert rollups.group_windows(session, customers, "m", filters,
                                         [period.start_at, period.end_at]) is not None
    assert rolled == read == _by_the_rule(meter, filters, customers, period)


def _catalog(filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "entities": [{"id": "e", "timezone": "UTC"}],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [{"id": "llm", "currency": "EUR", "interval": "month", "charges": [
            {"id": "t", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "1", **({"filters": filters} if filters else {})}]}],
        "customers": [{"id": "c1", "entity": "e"}],
    }


def _unit(f_id: str, *models: str) -> dict[str, Any]:
    return {"id": f_id, "match": {"model": list(models)}, "model": "unit", "unit_price": "2"}


def test_a_catalog_change_adding_a_filter_refolds_the_meter(store: str) -> None:
    catalog_service.apply_document(_catalog([]), START)
    with unit_of_work() as session:
        outcome = subscriptions.do_subscribe(session, START, {
            "id": "s1", "customer": "c1", "plan": "llm", "start": "2026-03-01"})
        assert outcome.status == "applied", outcome
    meter = Meter("tokens", Aggregation.SUM)
    events = [UsageEvent(f"e{i}", "c1", "tokens", Decimal(i + 1),
                         START + timedelta(minutes=37 * i),
                         {"model": ["large", "small", 4, "huge"][i % 4]} if i % 5 else {})
              for i in range(60)]
    with unit_of_work() as session:
        usage_repo.insert_events(session, events, START)
    rollups_service.fold()
    period = Period(START, START + timedelta(days=3))
    postgres = store == "postgres"

    def answer(filters: tuple[Filter, ...]) -> tuple[dict[tuple[str, str], Decimal], bool]:
        with unit_of_work() as session:
            rolled = usage_repo.aggregate_groups(session, period, ["c1"], meter, filters,
                                                 rolled_up=True)
            from_rollups = postgres and rollups.group_windows(
                session, ["c1"], "tokens", filters, [START, period.end_at]) is not None
            assert rolled == usage_repo.aggregate_groups(session, period, ["c1"], meter,
                                                         filters)
        assert rolled == _by_the_rule(meter, filters, ["c1"], period)
        return rolled, from_rollups

    def stored_filters() -> tuple[Filter, ...]:
        with unit_of_work() as session:
            from persistence import catalog as catalog_repo

            found = catalog_repo.latest_plan(session, "llm")
            assert found is not None
            return found[1].usage_charges[0].filters

    def rows() -> tuple[int, int]:
        with unit_of_work() as session:
            return (int(session.scalar(select(func.count()).select_from(UsageRollupRow))),
                    int(session.scalar(select(func.sum(UsageRollupRow.events))) or 0))

    # a filter added by a catalog change: the meter's rollups must be keyed by `model`
    catalog_service.apply_document(_catalog([_unit("large", "large")]), START)
    filters = stored_filters()
    with unit_of_work() as session:
        keys = session.get(UsageRollupKeysRow, "tokens")
        assert keys is not None and keys.wanted == '{"model":["large"]}' and keys.keyed is None
    found, from_rollups = answer(filters)  # not folded again yet: the events answer
    assert not from_rollups
    before = rows()
    rollups_service.fold()  # nothing new, but the keys changed: a re-fold
    found_after, from_rollups = answer(filters)
    assert found_after == found and from_rollups == postgres
    if postgres:
        after = rows()
        assert after[1] == before[1] == 60  # the same events, keyed by one more thing
        assert after[0] > before[0]
        with unit_of_work() as session:  # the meter's totals are what they were
            assert rollups.windows(session, ["c1"], ["tokens"], [START, period.end_at]) == {
                ("c1", "tokens"): [rollups.Totals(Decimal(sum(range(1, 61))), 60, Decimal(60),
                                                  Decimal(1))]}
    # another value, and a second filter: keyed by more again; new events meanwhile
    catalog_service.apply_document(
        _catalog([_unit("large", "large", "huge"), _unit("small", "small")]), START)
    filters = stored_filters()
    with unit_of_work() as session:
        usage_repo.insert_events(session, [
            UsageEvent("late", "c1", "tokens", Decimal(1000), START + timedelta(minutes=5),
                       {"model": "huge"})], START)
    assert not answer(filters)[1]
    rollups_service.fold()
    found, from_rollups = answer(filters)
    assert from_rollups == postgres
    assert found[("c1", "large")] == sum(Decimal(i + 1) for i in range(60)
                                         if i % 5 and i % 4 in (0, 3)) + 1000
    # an older plan version's filters still key the rollups: keys only grow
    catalog_service.apply_document(_catalog([_unit("small", "small")]), START)
    with unit_of_work() as session:
        keys = session.get(UsageRollupKeysRow, "tokens")
        assert keys is not None and keys.wanted == '{"model":["huge","large","small"]}'
    rollups_service.fold()
    assert answer(stored_filters())[1] == postgres
