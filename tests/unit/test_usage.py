"""SPEC §3: validating usage events and telling duplicates from conflicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from domain.usage import Rejection, UsageEvent, validate_event
from tests.conftest import SHARED_MISSING, SHARED_SCENARIOS

pytestmark = pytest.mark.unit

D = Decimal
SCENARIOS = SHARED_SCENARIOS
NOW = datetime(2026, 9, 3, tzinfo=UTC)
CUSTOMERS = {"app", "no-plan"}
METERS = {"bytes"}


def event(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "key": "k-1", "customer": "app", "meter": "bytes", "quantity": 1,
        "timestamp": "2026-09-02T00:00:00Z",
    }
    for name, value in overrides.items():
        if value is ...:
            raw.pop(name, None)
        else:
            raw[name] = value
    return raw


def check(raw: Any, now: datetime = NOW) -> UsageEvent | Rejection:
    return validate_event(raw, now, CUSTOMERS, METERS)


def accepted(raw: Any, now: datetime = NOW) -> UsageEvent:
    result = check(raw, now)
    assert isinstance(result, UsageEvent), result
    return result


def rejected(raw: Any, now: datetime = NOW) -> Rejection:
    result = check(raw, now)
    assert isinstance(result, Rejection), result
    return result


# --- accepted ------------------------------------------------------------------------------


def test_valid_event_is_accepted_with_exact_values() -> None:
    ev = accepted(event(quantity=101, properties={"region": "eu"}))
    assert ev == UsageEvent("k-1", "app", "bytes", D(101), datetime(2026, 9, 2, tzinfo=UTC),
                            {"region": "eu"})
    assert ev.timestamp.tzinfo == UTC


def test_timestamp_is_normalised_to_utc() -> None:
    ev = accepted(event(timestamp="2026-09-02T01:00:00+02:00"))
    assert ev.timestamp == datetime(2026, 9, 1, 23, tzinfo=UTC)
    assert ev.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [(0, D(0)), ("0", D(0)), ("-0", D(0)), (3, D(3)), (3.0, D(3)), ("3.0", D(3)),
     (3500.5, D("3500.5")), ("0.000002", D("0.000002")), ("1e3", D(1000)), (D("7.25"), D("7.25"))],
)
def test_quantity_forms(quantity: Any, expected: Decimal) -> None:
    ev = accepted(event(quantity=quantity))
    assert ev.quantity == expected
    assert ev.quantity.is_finite() and not ev.quantity.is_signed()


def test_float_quantity_is_read_through_its_shortest_text() -> None:
    assert accepted(event(quantity=0.1)).quantity == D("0.1")


def test_properties_default_to_empty() -> None:
    assert accepted(event()).properties == {}
    assert accepted(event(properties=None)).properties == {}


def test_timestamp_exactly_five_minutes_ahead_is_accepted() -> None:
    accepted(event(timestamp="2026-09-03T00:05:00Z"))
    accepted(event(timestamp="2026-09-03T02:05:00+02:00"))  # same instant, other offset


def test_timestamp_in_the_past_is_accepted() -> None:
    accepted(event(timestamp="2020-01-01T00:00:00Z"))


def test_aware_datetime_timestamp_is_accepted() -> None:
    ev = accepted(event(timestamp=datetime(2026, 9, 2, 3, tzinfo=timezone(timedelta(hours=3)))))
    assert ev.timestamp == datetime(2026, 9, 2, tzinfo=UTC)


@pytest.mark.parametrize("length", [1, 255])
def test_key_length_bounds_accepted(length: int) -> None:
    assert accepted(event(key="k" * length)).key == "k" * length


# --- rejected: every reason of scenario 07, each naming its field --------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity": -5}, "quantity"),
        ({"quantity": "-0.0001"}, "quantity"),
        ({"quantity": "NaN"}, "quantity"),
        ({"quantity": float("nan")}, "quantity"),
        ({"quantity": "Infinity"}, "quantity"),
        ({"quantity": "-Infinity"}, "quantity"),
        ({"quantity": float("inf")}, "quantity"),
        ({"quantity": "lots"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": None}, "quantity"),
        ({"quantity": ...}, "quantity"),
        ({"quantity": [1]}, "quantity"),
        ({"timestamp": "2026-09-02T00:00:00"}, "timestamp"),  # naive
        ({"timestamp": datetime(2026, 9, 2)}, "timestamp"),  # naive datetime
        ({"timestamp": "2026-09-02"}, "timestamp"),  # a date is naive
        ({"timestamp": "2026-09-03T00:05:01Z"}, "timestamp"),  # > 5 minutes ahead
        ({"timestamp": "2026-09-03T00:05:00.000001Z"}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": ""}, "timestamp"),
        ({"timestamp": 1788307200}, "timestamp"),
        ({"timestamp": ...}, "timestamp"),
        ({"meter": "nope"}, "meter"),
        ({"meter": ...}, "meter"),
        ({"meter": ""}, "meter"),
        ({"customer": "ghost"}, "customer"),
        ({"customer": ...}, "customer"),
        ({"customer": "   "}, "customer"),
        ({"customer": 7}, "customer"),
        ({"key": ""}, "key"),
        ({"key": ...}, "key"),
        ({"key": None}, "key"),
        ({"key": "k" * 256}, "key"),
        ({"key": 42}, "key"),
        ({"properties": ["a"]}, "properties"),
        ({"properties": "region=eu"}, "properties"),
        ({"properties": {"x": float("nan")}}, "properties.x"),
    ],
)
def test_rejection_names_the_field(overrides: dict[str, Any], field: str) -> None:
    rejection = rejected(event(**overrides))
    assert rejection.reason.startswith(f"{field}:"), rejection.reason


def test_negative_reason_text() -> None:
    assert "quantity" in rejected(event(quantity=-5)).reason
    assert "-5" in rejected(event(quantity=-5)).reason


def test_future_reason_mentions_the_five_minutes() -> None:
    reason = rejected(event(timestamp="2026-09-03T00:05:01Z")).reason
    assert "timestamp" in reason and "5 minutes" in reason


def test_future_is_measured_from_the_ingestion_instant() -> None:
    raw = event(timestamp="2026-09-03T00:05:01Z")
    rejected(raw, NOW)
    accepted(raw, NOW + timedelta(seconds=1))


def test_every_problem_is_listed() -> None:
    reason = rejected(event(key="", quantity=-1, meter="nope", customer="ghost",
                            timestamp="2026-09-02T00:00:00")).reason
    parts = reason.split("; ")
    assert [p.split(":")[0] for p in parts] == ["key", "quantity", "timestamp", "customer",
                                                "meter"]


def test_rejection_keeps_the_key_and_a_json_safe_raw_payload() -> None:
    raw = event(key="bad-nan", quantity=float("nan"), properties={"n": D("1.5")})
    rejection = rejected(raw)
    assert rejection.key == "bad-nan"
    json.dumps(rejection.payload, allow_nan=False)  # storable as strict JSON
    assert rejection.payload["key"] == "bad-nan"
    assert rejection.payload["customer"] == "app"
    assert rejection.payload["timestamp"] == "2026-09-02T00:00:00Z"


def test_rejection_payload_is_the_raw_event() -> None:
    raw = event(key="bad-text", quantity="lots")
    assert rejected(raw).payload == raw


def test_rejection_without_key() -> None:
    rejection = rejected(event(key=...))
    assert rejection.key is None
    assert rejection.reason == "key: is required"


def test_non_object_event_is_rejected() -> None:
    for raw in (None, [1, 2], "event", 3):
        rejection = rejected(raw)
        assert rejection.key is None
        assert rejection.reason.startswith("event:")
        json.dumps(rejection.payload)


# --- same payload: duplicate vs conflict -----------------------------------------------------


def test_same_payload_quantity_by_value() -> None:
    a = accepted(event(quantity=3))
    assert a.same_payload(accepted(event(quantity=3.0)))
    assert a.same_payload(accepted(event(quantity="3.000")))
    assert not a.same_payload(accepted(event(quantity=4)))


def test_same_payload_timestamp_as_an_instant() -> None:
    a = accepted(event(timestamp="2026-09-02T01:00:00+02:00"))
    b = accepted(event(timestamp="2026-09-01T23:00:00Z"))
    c = accepted(event(timestamp="2026-09-01T23:00:00+00:00"))
    assert a.same_payload(b) and b.same_payload(c) and a.same_payload(c)
    assert not a.same_payload(accepted(event(timestamp="2026-09-01T23:00:01Z")))


def test_same_payload_properties() -> None:
    a = accepted(event(properties={"region": "eu", "n": 1}))
    assert a.same_payload(accepted(event(properties={"n": 1.0, "region": "eu"})))
    assert not a.same_payload(accepted(event(properties={"region": "us", "n": 1})))
    assert not a.same_payload(accepted(event(properties={"region": "eu"})))
    assert not a.same_payload(accepted(event()))
    assert not a.same_payload(accepted(event(properties={"region": "eu", "n": "1"})))


def test_same_payload_customer_and_meter() -> None:
    a = accepted(event())
    assert not a.same_payload(accepted(event(customer="no-plan")))
    other = validate_event(event(meter="other"), NOW, CUSTOMERS, {"bytes", "other"})
    assert isinstance(other, UsageEvent)
    assert not a.same_payload(other)


def test_same_payload_is_symmetric_and_reflexive() -> None:
    a = accepted(event(quantity="2.50", properties={"a": [1, 2.0]}))
    b = accepted(event(quantity="2.5", properties={"a": [1.0, 2]}))
    assert a.same_payload(a)
    assert a.same_payload(b) and b.same_payload(a)


def test_payload_is_json() -> None:
    ev = accepted(event(quantity="3.50", timestamp="2026-09-02T01:00:00+02:00",
                        properties={"r": "eu"}))
    payload = ev.payload()
    assert payload == {"key": "k-1", "customer": "app", "meter": "bytes", "quantity": "3.50",
                       "timestamp": "2026-09-01T23:00:00Z", "properties": {"r": "eu"}}
    json.dumps(payload)


# --- scenario 07 replayed through the domain rules ---------------------------------------------


@pytest.mark.skipif(not (SCENARIOS / "07-ingest-dedupe-and-bad-input.yaml").exists(),
                    reason=SHARED_MISSING)
def test_scenario_07_outcomes() -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((SCENARIOS / "07-ingest-dedupe-and-bad-input.yaml").read_text())
    expected = json.loads(
        (SCENARIOS / "07-ingest-dedupe-and-bad-input.expected.json").read_text()
    )
    customers = {c["id"] for c in data["customers"]}
    meters = {m["id"] for m in data["meters"]}
    seen: dict[str, UsageEvent] = {}
    counts = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    reasons: dict[str | None, str] = {}
    for step in data["timeline"]:
        now = datetime.fromisoformat(step["at"])
        for raw in step.get("usage", []):
            result = validate_event(raw, now, customers, meters)
            if isinstance(result, Rejection):
                counts["rejected"] += 1
                reasons[result.key] = result.reason
            elif result.key not in seen:
                counts["accepted"] += 1
                seen[result.key] = result
            elif seen[result.key].same_payload(result):
                counts["duplicate"] += 1
            else:
                counts["conflict"] += 1
    assert counts == {k: expected["usage"][k] for k in counts}
    assert reasons["bad-neg"].startswith("quantity:")
    assert reasons["bad-nan"].startswith("quantity:")
    assert reasons["bad-inf"].startswith("quantity:")
    assert reasons["bad-text"].startswith("quantity:")
    assert reasons["bad-naive"].startswith("timestamp:")
    assert reasons["bad-future"].startswith("timestamp:")
    assert reasons["bad-meter"].startswith("meter:")
    assert reasons["bad-customer"].startswith("customer:")
    assert reasons[""].startswith("key:")
    assert reasons[None].startswith("key:")
    assert reasons["bad-ts"].startswith("timestamp:")
    # the first payload of a conflicting key stays
    assert seen["ok-1"].quantity == 101
    # the billed quantity of the September period: ok-1, ok-2, ok-future and the fixed bad-neg
    start, end = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
    billed = sum((e.quantity for e in seen.values()
                  if e.customer == "app" and start <= e.timestamp < end), D(0))
    (invoice,) = expected["invoices"]
    assert str(billed) == invoice["lines"][0]["quantity"] == "110"


# --- suspected bugs ----------------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_out_of_range_instant_is_a_rejection_not_a_crash(timestamp: str) -> None:
    try:
        result = check(event(timestamp=timestamp))
    except OverflowError as exc:
        raise AssertionError(f"validate_event crashed: {exc!r}") from exc
    assert isinstance(result, Rejection)
    assert result.reason.startswith("timestamp:")


@pytest.mark.parametrize("quantity", ["0." + "1" * 250, "1E+1000000"])
def test_an_accepted_quantity_can_always_be_aggregated(quantity: str) -> None:
    from decimal import Inexact

    from domain.aggregation import aggregate
    from domain.catalog import Aggregation, Meter

    result = check(event(quantity=quantity))
    if isinstance(result, Rejection):
        assert result.reason.startswith("quantity:")
        return
    try:
        aggregate(Meter("bytes", Aggregation.SUM), [result, result])
    except Inexact as exc:
        raise AssertionError("an accepted event cannot be summed") from exc
