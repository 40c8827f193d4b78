"""Reading untrusted input (YAML, JSON, actor messages) into typed values.

Every error names the field it is about with a path such as
``plans[0].charges[2].tiers[1].up_to`` so that a bad catalog, scenario or message
can be fixed from one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
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
    text = repr(value) if not isinstance(value, Decimal) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_decimal(value: Any, field: str) -> Decimal:
    """An exact decimal from a string, an int or a Decimal (never a float or a bool)."""
    if isinstance(value, bool) or value is None:
        raise Invalid(field, f"must be a decimal number, got {describe(value)}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # JSON producers that only have binary floats: read them through their shortest
        # round-tripping text, which is the text the producer wrote.
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise Invalid(field, f"must be a decimal number, got {describe(value)}") from None
    else:
        raise Invalid(field, f"must be a decimal number, got {describe(value)}")
    if not result.is_finite():
        raise Invalid(field, f"must be a finite number, got {describe(value)}")
    if result.is_zero():
        result = abs(result)  # no "-0"
    return result


def parse_non_negative(value: Any, field: str) -> Decimal:
    result = parse_decimal(value, field)
    if result < 0:
        raise Invalid(field, f"must be ≥ 0, got {result}")
    return result


def parse_instant(value: Any, field: str) -> datetime:
    """An ISO 8601 instant that carries an offset, returned in UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
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
        return parsed.astimezone(UTC)
    except OverflowError:
        raise Invalid(field, f"is out of range as a UTC instant, got {describe(value)}") from None


def parse_date(value: Any, field: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise Invalid(field, f"must be a date YYYY-MM-DD, got {describe(value)}")


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
        return value

    def optional_text(self, name: str) -> str | None:
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
