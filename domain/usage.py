"""Usage events: validation and the four outcomes of ingestion (SPEC §3)."""

from __future__ import annotations

import json
import math
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.money import ROUNDING
from domain.validation import Fields, Invalid, describe, parse_instant, parse_non_negative

MAX_FUTURE = timedelta(minutes=5)
# SPEC §3 accepts any finite decimal ≥ 0; these are the bounds of what the store keeps
# exactly (PostgreSQL NUMERIC: 131,072 digits before the point, 16,383 after). Beyond them
# an event is rejected with that reason rather than stored rounded.
MAX_INTEGER_DIGITS = 131_072
MAX_FRACTION_DIGITS = 16_383


@dataclass(frozen=True)
class UsageEvent:
    key: str
    customer: str
    meter: str
    quantity: Decimal
    timestamp: datetime  # UTC
    properties: Mapping[str, Any]

    def same_payload(self, other: UsageEvent) -> bool:
        """Duplicate, not conflict: same customer, meter, quantity by value, timestamp as an
        instant and properties."""
        return (
            self.customer == other.customer
            and self.meter == other.meter
            and self.quantity == other.quantity
            and self.timestamp == other.timestamp
            and canonical_json(self.properties) == canonical_json(other.properties)
        )

    def payload(self) -> dict[str, Any]:
        """The event as JSON-safe data (what conflicts and rejections record)."""
        return {
            "key": self.key,
            "customer": self.customer,
            "meter": self.meter,
            "quantity": str(self.quantity),
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "properties": dict(self.properties),
        }


@dataclass(frozen=True)
class Rejection:
    key: str | None
    reason: str
    payload: Any


def canonical_property(value: Any, field: str) -> Any:
    """Properties are kept as JSON values with one spelling per number: an integral number
    is an int (``1.0`` → ``1``), others a float. Non-finite numbers are not JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        if not number.is_finite():
            raise Invalid(field, f"must be a finite number, got {describe(value)}")
        if number == number.to_integral_value():
            return int(number)
        return float(number)
    if isinstance(value, list):
        return [canonical_property(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): canonical_property(v, f"{field}.{k}") for k, v in value.items()}
    raise Invalid(field, f"must be a JSON value, got {describe(value)}")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def json_safe(value: Any) -> Any:
    """Raw input made storable as JSON: exact decimals as strings, NaN/inf as text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


MAX_QUANTITY = Decimal(10) ** MAX_INTEGER_DIGITS


def validate_event(
    raw: Any,
    now: datetime,
    customers: Container[str],
    meters: Container[str],
) -> UsageEvent | Rejection:
    """An accepted-shape event, or a rejection that says which field is wrong and why.

    ``now`` is the ingestion instant ``t``: a timestamp later than ``t + 5 minutes`` is
    rejected. Every problem found is listed, separated by "; ".
    """
    if type(raw) is dict:
        event = _plainly_valid(raw, now, customers, meters)
        if event is not None:
            return event
    return validate_fully(raw, now, customers, meters)


def _plainly_valid(raw: dict[str, Any], now: datetime, customers: Container[str],
                   meters: Container[str]) -> UsageEvent | None:
    """The common case, checked in one pass (ingest speed). None sends the event to
    ``validate_fully``, which decides the same and explains what is wrong; a property test
    checks that the two always agree."""
    key, customer, meter = raw.get("key"), raw.get("customer"), raw.get("meter")
    quantity, timestamp, properties = raw.get("quantity"), raw.get("timestamp"), \
        raw.get("properties")
    if not (type(key) is str and 0 < len(key) <= 255 and type(customer) is str
            and customer in customers and type(meter) is str and meter in meters
            and type(timestamp) is str):
        return None
    if properties is not None and not (
        type(properties) is dict
        and all(type(k) is str and type(v) is str for k, v in properties.items())
    ):
        return None
    if type(quantity) is str:
        try:
            q = Decimal(quantity)
        except InvalidOperation:
            return None
    elif type(quantity) is int:
        q = Decimal(quantity)
    else:
        return None
    exponent = q.as_tuple().exponent
    if not (q.is_finite() and 0 <= q < MAX_QUANTITY and isinstance(exponent, int)
            and exponent >= -MAX_FRACTION_DIGITS):
        return None
    try:
        at = datetime.fromisoformat(timestamp)
        if at.tzinfo is None or at.utcoffset() is None:
            return None
        at = at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if at > now + MAX_FUTURE:
        return None
    return UsageEvent(key, customer, meter, abs(q) if q.is_zero() else q, at,
                      dict(properties) if properties else {})


def validate_fully(
    raw: Any,
    now: datetime,
    customers: Container[str],
    meters: Container[str],
) -> UsageEvent | Rejection:
    """``validate_event`` for any input, listing every problem."""
    if not isinstance(raw, Mapping):
        return Rejection(None, f"event: must be an object, got {describe(raw)}", json_safe(raw))
    key = raw.get("key")
    key_text = key if isinstance(key, str) else None
    problems: list[str] = []
    f = Fields(raw, "")

    def read(name: str, parse: Any) -> Any:
        try:
            return parse()
        except Invalid as exc:
            problems.append(str(exc))
            return None

    if key is None:
        problems.append("key: is required")
    elif not isinstance(key, str) or not 1 <= len(key) <= 255:
        problems.append(f"key: must be a string of 1 to 255 characters, got {describe(key)}")
    customer = read("customer", lambda: f.text("customer"))
    meter = read("meter", lambda: f.text("meter"))
    quantity = read("quantity", lambda: _quantity(f.required("quantity")))
    timestamp = read("timestamp", lambda: parse_instant(f.required("timestamp"), "timestamp"))
    properties = read("properties", lambda: _properties(raw.get("properties")))
    if customer is not None and customer not in customers:
        problems.append(f"customer: {customer!r} is not a known customer")
    if meter is not None and meter not in meters:
        problems.append(f"meter: {meter!r} is not a known meter")
    if timestamp is not None and timestamp > now + MAX_FUTURE:
        problems.append(
            f"timestamp: {timestamp.isoformat()} is more than 5 minutes after ingestion "
            f"({now.isoformat()})"
        )
    if problems:
        return Rejection(key_text, "; ".join(problems), json_safe(raw))
    assert key_text is not None and quantity is not None and timestamp is not None
    return UsageEvent(key_text, customer, meter, quantity, timestamp, properties or {})


def _quantity(value: Any) -> Decimal:
    quantity = parse_non_negative(value, "quantity")
    if quantity >= Decimal(10) ** MAX_INTEGER_DIGITS:
        raise Invalid("quantity", f"must be less than 1E+{MAX_INTEGER_DIGITS}")
    exponent = quantity.normalize(ROUNDING).as_tuple().exponent  # 1.50 has 1 decimal place
    if isinstance(exponent, int) and -exponent > MAX_FRACTION_DIGITS:
        raise Invalid("quantity", f"has more than {MAX_FRACTION_DIGITS} decimal places")
    return quantity


def _properties(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid("properties", f"must be a JSON object, got {describe(value)}")
    result = canonical_property(value, "properties")
    assert isinstance(result, dict)
    return result
