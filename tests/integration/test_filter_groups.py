"""SPEC §13 in SQL: for random filters and events, the groups partition the events (each
billable event in exactly one group) and the aggregation per group in SQL equals the plain
Python rule (``domain.filters.group_of`` + ``domain.aggregation.aggregate``), for every
aggregation — on SQLite, and on PostgreSQL when it answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.aggregation import aggregate
from domain.catalog import Aggregation, Meter, Model, UsageCharge
from domain.filters import DEFAULT_GROUP, Filter, group_of
from domain.usage import UsageEvent
from persistence import db
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.usage import Period
from tests.conftest import PG_URL, require_services

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NAMES = ["model", "mode", "region"]
VALUES = ["a", "b"]
PRICE = UsageCharge("p", "m", Model.UNIT, unit_price=Decimal(1))

# mostly strings, so that events match several filters; sometimes what never matches
property_values = st.one_of(st.sampled_from(VALUES), st.sampled_from(VALUES),
                            st.sampled_from(VALUES), st.sampled_from(VALUES),
                            st.integers(0, 2), st.none(), st.booleans(), st.just(["a"]))
events = st.lists(st.tuples(
    st.dictionaries(st.sampled_from(NAMES), property_values, max_size=3),
    st.decimals(min_value=0, max_value=1000, places=2),
    st.integers(0, 5 * 24 * 60),
    st.sampled_from(["c1", "c2"])), max_size=40)


@st.composite
def filter_sets(draw: st.DrawFn) -> tuple[Filter, ...]:
    filters: list[Filter] = []
    seen: set[Any] = set()
    for i in range(draw(st.integers(0, 6))):
        names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
        match = tuple(sorted((n, tuple(sorted(draw(st.lists(st.sampled_from(VALUES),
                                                             min_size=1, max_size=3,
                                                             unique=True)))))
                             for n in names))
        if match not in seen:
            seen.add(match)
            filters.append(Filter(f"f{i}", match, PRICE))
    return tuple(filters)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        db.configure(f"sqlite:///{tmp_path / 'groups.db'}")
    else:
        require_services()
        db.configure(PG_URL, schema=f"test_grp_{uuid.uuid4().hex[:10]}")
    db.create_schema()
    yield request.param
    db.drop_private_schema()
    db.engine().dispose()


TIE = (Filter("one", (("model", ("a",)),), PRICE),
       Filter("two", (("mode", ("b",)), ("model", ("a",))), PRICE),
       Filter("three", (("region", ("a",)),), PRICE))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters=filter_sets(), rows=events,
       aggregation=st.sampled_from(list(Aggregation)))
@example(filters=TIE, aggregation=Aggregation.SUM,  # two names beat one; then the first listed
         rows=[({"model": "a", "mode": "b"}, Decimal(5), 0, "c1"),
               ({"model": "a", "region": "a"}, Decimal(7), 1, "c1"),
               ({"model": 1, "region": "b"}, Decimal(11), 2, "c1")])
def test_sql_groups_equal_the_rule(store: str, filters: tuple[Filter, ...],
                                   rows: list[tuple[dict[str, Any], Decimal, int, str]],
                                   aggregation: Aggregation) -> None:
    meter = Meter("m", aggregation, "model" if aggregation is Aggregation.UNIQUE_COUNT else None)
    run = uuid.uuid4().hex[:8]  # the store is shared by the examples: customers of their own
    customers = {"c1": f"c1-{run}", "c2": f"c2-{run}"}
    stored = [UsageEvent(f"k-{run}-{i}", customers[customer], "m", quantity,
                         T0 + timedelta(minutes=minutes), props)
              for i, (props, quantity, minutes, customer) in enumerate(rows)]
    with unit_of_work() as session:
        usage_repo.insert_events(session, stored, T0)
        found = usage_repo.aggregate_groups(
            session, Period(T0, T0 + timedelta(days=6)), list(customers.values()), meter,
            filters)
    groups = [DEFAULT_GROUP, *(f.id for f in filters)]
    members: dict[tuple[str, str], list[UsageEvent]] = {}
    for event in stored:  # each event in exactly one group: the rule's
        in_groups = [g for g in groups if group_of(event.properties, filters) == g]
        assert len(in_groups) == 1
        members.setdefault((event.customer, in_groups[0]), []).append(event)
    assert set(found) == {(c, g) for c in customers.values() for g in groups}
    for (customer, group), quantity in found.items():
        expected = aggregate(meter, members.get((customer, group), []))
        assert quantity == expected, (customer, group, aggregation)
