"""The ingest fast path decides exactly as the full validation does."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.usage import UsageEvent, _plainly_valid, validate_fully

pytestmark = pytest.mark.unit

NOW = datetime(2026, 9, 3, tzinfo=UTC)

quantities = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-10, max_value=10**35),
    st.sampled_from(["1", "3.0", "-0", " 5 ", "1e3", "1E+40", "0.1", "NaN", "lots", "",
                     "1." + "0" * 25, "0." + "1" * 25, "12345678901234567890123456789.5",
                     "1_000", "1e500000", "7" * 400, "+5", ".5", "5."]),
    st.floats(allow_nan=True), st.none(), st.booleans(),
)
timestamps = st.one_of(
    st.sampled_from(["2026-09-02T00:00:00Z", "2026-09-02T01:00:00+02:00",
                     "2026-09-03T00:05:00Z", "2026-09-03T00:05:01Z", "2026-09-02T00:00:00",
                     " 2026-09-02T00:00:00Z", "yesterday", "9999-12-31T23:59:59-01:00",
                     "2026-09-02", "2026-09-02T00:00:00.123456+05:30",
                     "2026-09-02T00:00:00.123456789Z", "2026-09-02T00:00:00.1234560Z",
                     "2026-09-02T00:00:00,5Z", "1899-12-31T23:59:59Z"]),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.integers(),
)
events = st.fixed_dictionaries(
    {
        "key": st.one_of(st.text(max_size=300), st.integers(), st.none()),
        "customer": st.sampled_from(["c-1", "ghost", 5, None]),
        "meter": st.sampled_from(["tokens", "nope", None]),
        "quantity": quantities,
        "timestamp": timestamps,
    },
    optional={"properties": st.one_of(
        st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers() | st.floats() | st.booleans(),
                        max_size=3),
        st.lists(st.integers(), max_size=2), st.text(max_size=3))},
)


@settings(max_examples=2000)
@given(raw=events)
def test_fast_path_agrees_with_full_validation(raw: dict) -> None:
    fast = _plainly_valid(raw, NOW, {"c-1"}, {"tokens"})
    full = validate_fully(raw, NOW, {"c-1"}, {"tokens"})
    if fast is None:
        return  # the full validation decides alone
    assert isinstance(full, UsageEvent), full
    assert fast == full
    assert str(fast.quantity) == str(full.quantity)
    assert dict(fast.properties) == dict(full.properties)


def test_fast_path_takes_the_common_case() -> None:
    raw = {"key": "k", "customer": "c-1", "meter": "tokens", "quantity": "2.5",
           "timestamp": "2026-09-02T00:00:00Z", "properties": {"model": "large"}}
    event = _plainly_valid(raw, NOW, {"c-1"}, {"tokens"})
    assert event is not None and event.quantity == Decimal("2.5")
