"""Reading untrusted input (YAML, JSON, actor messages) into typed values.

Every error names the field it is about with a path such as
``plans[0].charges[2].tiers[1].up_to`` so that a bad catalog, scenario or message
can be fixed from one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NoReturn


class Invalid(ValueError):
    """Input that breaks a rule. ``field`` is the path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def describe(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 3000:  # repr() refuses > 4,300 digits
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value) if not isinstance(value, Decimal) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Every number the engine reads (quantities, prices, amounts, tiers, discounts) is bounded
# before it is converted or computed with: fewer than MAX_DIGITS digits before the point and
# at most MAX_DECIMALS after it. Within these bounds every sum, product and rounding is
# exact and fast; beyond them an input is refused with that reason (docs/decisions.md).
MAX_DIGITS = 100
MAX_DECIMALS = 100
MAX_NUMBER_TEXT = 1000  # characters of a number's text, checked before converting it
# The text of a plain decimal: digits, an optional point with decimals, an optional
# exponent. No spaces, underscores, signs other than a leading minus, NaN or Infinity.
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# Text that cannot be stored (NUL) or encoded (a lone surrogate); identifiers also refuse
# other control characters (they are printed in tables, logs and documents).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
NOT_AN_IDENTIFIER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Instants and dates the engine accepts: wide enough for any bill, narrow enough that
# every period and bill-run instant computed from them exists.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"[T ][0-9:]+[.,]([0-9]+)")


def check_number(value: Decimal, field: str) -> Decimal:
    """``value`` if it is finite and within MAX_DIGITS / MAX_DECIMALS, else ``Invalid``.
    Cheap on any input: the size is looked at before anything is computed with it."""
    if not value.is_finite():
        raise Invalid(field, f"must be a finite number, got {describe(value)}")
    if value.is_zero():
        return value
    if value.adjusted() >= MAX_DIGITS:
        raise Invalid(field, f"must be less than 1E+{MAX_DIGITS}, got {describe(value)}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
        exponent = value.normalize().as_tuple().exponent  # 1.50 has one decimal place
        if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
            raise Invalid(field, f"has more than {MAX_DECIMALS} decimal places")
    return value


def parse_decimal(value: Any, field: str) -> Decimal:
    """An exact decimal from a plain decimal string, an int or a Decimal (never a bool),
    within the engine's bounds; a float is read through its shortest round-tripping text,
    which is the text a JSON producer wrote."""
    if isinstance(value, bool) or value is None:
        raise Invalid(field, f"must be a decimal number, got {describe(value)}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        if value.bit_length() > 4 * MAX_DIGITS:  # cheap: no conversion of a huge int
            raise Invalid(field, f"must be less than 1E+{MAX_DIGITS}")
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT:
            raise Invalid(field, f"must be a decimal number of at most {MAX_NUMBER_TEXT} "
                                 f"characters, got {len(value)}")
        if not PLAIN_DECIMAL.fullmatch(value):
            raise Invalid(field, f"must be a plain decimal number such as 12 or 0.5, got "
                                 f"{describe(value)}")
        result = Decimal(value)
    else:
        raise Invalid(field, f"must be a decimal number, got {describe(value)}")
    result = check_number(result, field)
    return Decimal(0) if result.is_zero() else result  # no "-0", no "0E-500"


def parse_non_negative(value: Any, field: str) -> Decimal:
    result = parse_decimal(value, field)
    if result < 0:
        raise Invalid(field, f"must be ≥ 0, got {result}")
    return result


def check_text(value: str, field: str, *, identifier: bool = True) -> str:
    """``value`` unless it holds a character that cannot be stored (NUL), encoded (a lone
    surrogate) or, for an identifier, printed (a control character)."""
    found = (NOT_AN_IDENTIFIER if identifier else UNSTORABLE).search(value)
    if found:
        raise Invalid(field, f"must not contain the character {found.group()!r} "
                             f"(at position {found.start()})")
    return value


def parse_instant(value: Any, field: str) -> datetime:
    """An ISO 8601 instant that carries an offset, returned in UTC. More than six
    fractional digits are refused unless they are zeros: a microsecond is the finest time
    the store keeps, and an instant is never silently cut."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            raise Invalid(field, "must be an ISO 8601 instant with an offset (too long)")
        fraction = _FRACTION.search(text)
        if fraction and len(fraction.group(1)) > 6 and fraction.group(1)[6:].strip("0"):
            raise Invalid(field, f"has more than microsecond precision, got {describe(value)} "
                                 "(send at most 6 fractional digits)")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise Invalid(
                field, f"must be an ISO 8601 instant with an offset, got {describe(value)}"
            ) from None
    else:
        raise Invalid(field, f"must be an ISO 8601 instant with an offset, got {describe(value)}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Invalid(
            field, f"must include a UTC offset (e.g. 'Z' or '+01:00'), got {describe(value)}"
        )
    try:
        instant = parsed.astimezone(UTC)
    except OverflowError:
        raise Invalid(field, f"is out of range as a UTC instant, got {describe(value)}") from None
    if not EARLIEST <= instant < LATEST:
        raise Invalid(field, f"must be in the years {EARLIEST.year} to {LATEST.year - 1}, "
                             f"got {describe(value)}")
    return instant


def parse_date(value: Any, field: str) -> date:
    parsed: date | None = None
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= 32:
        with suppress(ValueError):
            parsed = date.fromisoformat(value.strip())
    if parsed is None:
        raise Invalid(field, f"must be a date YYYY-MM-DD, got {describe(value)}")
    if not EARLIEST.date() <= parsed < LATEST.date():
        raise Invalid(field, f"must be in the years {EARLIEST.year} to {LATEST.year - 1}, "
                             f"got {describe(value)}")
    return parsed


_ignored: ContextVar[list[str] | None] = ContextVar("ignored_unknown_fields", default=None)


@contextmanager
def ignoring_unknown_fields() -> Iterator[list[str]]:
    """Within the block, unknown fields are collected (to warn about) instead of refused."""
    ignored: list[str] = []
    token = _ignored.set(ignored)
    try:
        yield ignored
    finally:
        _ignored.reset(token)


class Fields:
    """A mapping read field by field; unknown fields are an error when ``check_unknown``."""

    def __init__(self, data: Any, path: str, what: str = "an object") -> None:
        if not isinstance(data, Mapping):
            raise Invalid(path, f"must be {what}, got {describe(data)}")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def at(self, name: str) -> str:
        return join(self.path, name)

    def fail(self, name: str, message: str) -> NoReturn:
        raise Invalid(self.at(name), message)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name)

    def required(self, name: str) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            raise Invalid(self.at(name), "is required")
        return self.data[name]

    def text(self, name: str, *, default: str | None = None, max_length: int = 255) -> str:
        if default is not None and self.data.get(name) is None:
            self.used.add(name)
            return default
        value = self.required(name)
        if not isinstance(value, str) or not value.strip():
            raise Invalid(self.at(name), f"must be a non-empty string, got {describe(value)}")
        if len(value) > max_length:
            raise Invalid(self.at(name), f"must be at most {max_length} characters")
        return check_text(value, self.at(name))

    def optional_text(self, name: str) -> str | None:
        """The text of ``name``; None when it is absent or null (a known field either
        way)."""
        self.used.add(name)
        return None if self.data.get(name) is None else self.text(name)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise Invalid(self.at(name), f"must be true or false, got {describe(value)}")
        return value

    def decimal(self, name: str) -> Decimal:
        return parse_non_negative(self.required(name), self.at(name))

    def optional_decimal(self, name: str) -> Decimal | None:
        return None if self.data.get(name) is None else self.decimal(name)

    def choice(self, name: str, options: Sequence[str]) -> str:
        value = self.required(name)
        if value not in options:
            raise Invalid(
                self.at(name), f"must be one of {', '.join(options)}; got {describe(value)}"
            )
        return str(value)

    def items(self, name: str, *, required: bool = True) -> Iterator[tuple[str, Any]]:
        """The elements of a list field with their paths."""
        value = self.required(name) if required else (self.raw(name) or [])
        if not isinstance(value, list):
            raise Invalid(self.at(name), f"must be a list, got {describe(value)}")
        for index, item in enumerate(value):
            yield join(self.at(name), index), item

    def check_unknown(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.used)
        if not unknown:
            return
        ignored = _ignored.get()
        if ignored is None:
            raise Invalid(self.at(unknown[0]), "is not a known field")
        ignored.extend(self.at(name) for name in unknown)
