"""The SQL aggregation equals the domain's reference rule (SPEC §4) on random events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from domain.aggregation import aggregate as reference
from domain.catalog import Aggregation, Meter
from domain.usage import UsageEvent
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import UsageEventRow
from tests.integration.helpers import apply_catalog

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)

quantities = st.decimals(min_value=0, max_value=Decimal("1e12"), places=6, allow_nan=False)
events = st.lists(
    st.tuples(
        quantities,
        st.integers(min_value=-3, max_value=40),  # days from START: some outside the period
        st.sampled_from(["ada", "bob", 1, 1.5, True, None, "missing"]),
    ),
    max_size=25,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    apply_catalog()


@pytest.mark.parametrize("aggregation", list(Aggregation))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=events)
def test_sql_matches_reference(store: None, aggregation: Aggregation, data: list) -> None:
    prop = "user" if aggregation is Aggregation.UNIQUE_COUNT else None
    meter = Meter("tokens", aggregation, prop)
    evs = []
    for i, (q, day, user) in enumerate(data):
        props = {} if user == "missing" else {"user": user}
        # few distinct timestamps, so that `last` often breaks ties by key
        evs.append(UsageEvent(f"k{i:03d}", "c-1", "tokens", q, START + timedelta(days=day),
                              props))
    with unit_of_work() as session:
        session.execute(delete(UsageEventRow))
        usage_repo.insert_events(session, evs, START)
    with unit_of_work() as session:
        got = usage_repo.aggregate_many(
            session, usage_repo.Period(START, END, END), ["c-1"], [meter])[("c-1", "tokens")]
    in_period = [e for e in evs if START <= e.timestamp < END]
    assert got == reference(meter, in_period)
