"""Usage events: validation and the four outcomes of ingestion (SPEC §3)."""

from __future__ import annotations

import json
import math
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from domain.validation import (
    EARLIEST,
    LATEST,
    MAX_DECIMALS,
    MAX_DIGITS,
    PLAIN_DECIMAL,
    UNSTORABLE,
    Fields,
    Invalid,
    check_text,
    describe,
    parse_decimal,
    parse_instant,
    parse_non_negative,
)

MAX_FUTURE = timedelta(minutes=5)
# Properties are small JSON values: bounded before they are converted or stored.
MAX_PROPERTY_TEXT = 1000  # characters of a string (or a key) in properties
MAX_PROPERTY_NODES = 500  # values in all, nested ones included
MAX_PROPERTY_DEPTH = 10
MAX_REJECTED_KEY = 500


class UsageEvent(NamedTuple):
    """An accepted event. A named tuple, not a frozen dataclass: as immutable, and built
    in less than half the time — ingest builds one per event (issue #21)."""

    key: str
    customer: str
    meter: str
    quantity: Decimal
    timestamp: datetime  # UTC
    properties: Mapping[str, Any]

    def same_payload(self, other: UsageEvent) -> bool:
        """Duplicate, not conflict: same customer, meter, quantity by value, timestamp as an
        instant and properties — a property whose value is ``null`` counting as absent, as
        it does everywhere else (a nested ``null`` is a value)."""
        return (
            self.customer == other.customer
            and self.meter == other.meter
            and self.quantity == other.quantity
            and self.timestamp == other.timestamp
            and canonical_json(present(self.properties))
            == canonical_json(present(other.properties))
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
    is an int (``1.0`` → ``1``), others a float. Numbers, strings, nesting and size are
    bounded first, so that no input can be slow to convert or impossible to store."""
    budget = [MAX_PROPERTY_NODES]
    return _canonical(value, field, budget, 0)


def _canonical(value: Any, field: str, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise Invalid("properties", f"must hold at most {MAX_PROPERTY_NODES} values")
    if depth > MAX_PROPERTY_DEPTH:
        raise Invalid(field, f"nests deeper than {MAX_PROPERTY_DEPTH} levels")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        if len(value) > MAX_PROPERTY_TEXT:
            raise Invalid(field, f"must be at most {MAX_PROPERTY_TEXT} characters")
        return check_text(value, field, identifier=False)
    if isinstance(value, int | float | Decimal):
        try:
            number = parse_decimal(value, field)
        except Invalid as exc:
            raise Invalid(field, exc.message) from None
        if number == number.to_integral_value():
            return int(number)
        return float(number)
    if isinstance(value, list):
        return [_canonical(v, f"{field}[{i}]", budget, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        result = {}
        for k, v in value.items():
            name = str(k)
            if len(name) > MAX_PROPERTY_TEXT:
                raise Invalid(field, f"has a key longer than {MAX_PROPERTY_TEXT} characters")
            check_text(name, f"{field} key", identifier=False)
            result[name] = _canonical(v, f"{field}.{name}", budget, depth + 1)
        return result
    raise Invalid(field, f"must be a JSON value, got {describe(value)}")


def present(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The properties that have a value: a top-level ``null`` reads as absent (``unique_count``
    and duplicate detection alike)."""
    return {k: v for k, v in properties.items() if v is not None}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def json_safe(value: Any) -> Any:
    """Raw input made storable as JSON: exact decimals as strings, NaN/inf as text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int) and value.bit_length() > 3000:  # json cannot write > 4,300 digits
        return str(Decimal(value))
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
    if not (type(key) is str and 0 < len(key) <= 255 and _storable(key)
            and type(customer) is str and customer in customers and type(meter) is str
            and meter in meters and type(timestamp) is str and len(timestamp) <= 32
            and not _sub_microsecond(timestamp)):
        return None
    if properties is not None and not (
        type(properties) is dict and len(properties) <= 50
        and all(type(k) is str and type(v) is str and len(k) <= 255 and len(v) <= 255
                and _storable(k) and _storable(v) for k, v in properties.items())
    ):
        return None
    if type(quantity) is str:
        if len(quantity) > 64 or not PLAIN_DECIMAL.fullmatch(quantity):
            return None
        q = Decimal(quantity)
        # without an exponent, 64 characters are within MAX_DIGITS and MAX_DECIMALS
        if ("e" in quantity or "E" in quantity) and not _within_bounds(q):
            return None
    elif type(quantity) is int and 0 <= quantity < 10**18:
        q = Decimal(quantity)
    else:
        return None
    if q < 0:
        return None
    try:
        at = datetime.fromisoformat(timestamp)
        if at.tzinfo is None or at.utcoffset() is None:
            return None
        at = at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if at > now + MAX_FUTURE or not EARLIEST <= at < LATEST:
        return None
    return UsageEvent(key, customer, meter, Decimal(0) if q.is_zero() else q, at,
                      dict(properties) if properties else {})


def _within_bounds(q: Decimal) -> bool:
    exponent = q.as_tuple().exponent
    return ((q.is_zero() or q.adjusted() < MAX_DIGITS)
            and isinstance(exponent, int) and exponent >= -MAX_DECIMALS)


def _sub_microsecond(timestamp: str) -> bool:
    """More than six fractional digits (the full validation decides what that means)."""
    point = timestamp.find(".")
    if point < 0:
        point = timestamp.find(",")
    if point < 0:
        return False
    digits = 0
    for char in timestamp[point + 1:]:
        if not char.isdigit():
            break
        digits += 1
    return digits > 6


def _storable(text: str) -> bool:
    return (text.isascii() and "\x00" not in text) or UNSTORABLE.search(text) is None


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
    # a key up to 500 characters is kept in the rejection's key column (an index holds at
    # most about 2,700 bytes); the payload keeps any key
    key_text = key if isinstance(key, str) and len(key) <= MAX_REJECTED_KEY else None
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
    else:
        try:
            check_text(key, "key", identifier=False)
        except Invalid as exc:
            problems.append(str(exc))
            key_text = None
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
    return parse_non_negative(value, "quantity")


def _properties(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid("properties", f"must be a JSON object, got {describe(value)}")
    result = canonical_property(value, "properties")
    assert isinstance(result, dict)
    return result
