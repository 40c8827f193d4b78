"""Currencies, exact arithmetic and the formatting of amounts and quantities (SPEC §5, §9)."""

from __future__ import annotations

from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
)
from functools import cache

from iso4217 import Currency

from domain.validation import Invalid

# Sums and products of prices and quantities are computed without rounding. 300,000 digits
# hold any quantity the store keeps exactly (PostgreSQL NUMERIC: 131,072 digits before the
# point, 16,383 after) with room for sums and prices; exact operations cost only the digits
# they have. Inexact is trapped, so a result that would need rounding fails loudly.
EXACT_DIGITS = 300_000
EXACT = Context(prec=EXACT_DIGITS, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_UP,
                traps=[InvalidOperation, Inexact])

# SPEC §4: `average` uses "Python's default decimal context": 28 significant digits,
# rounding half-even.
AVERAGE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN)

# Where rounding is the point (to minor units), without the Inexact trap.
ROUNDING = Context(prec=EXACT_DIGITS, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_UP)


@cache
def minor_units(currency: str) -> int:
    """The number of minor digits of an ISO 4217 currency (USD 2, JPY 0, KWD 3)."""
    try:
        exponent = Currency(currency.upper()).exponent
    except (ValueError, KeyError, AttributeError):
        raise Invalid("currency", f"{currency!r} is not an ISO 4217 currency code") from None
    if exponent is None:
        raise Invalid("currency", f"{currency!r} has no minor units and cannot be invoiced")
    return int(exponent)


def parse_currency(value: object, field: str) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise Invalid(field, f"must be an ISO 4217 code such as EUR, got {value!r}")
    try:
        minor_units(value)
    except Invalid as exc:
        raise Invalid(field, exc.message) from None
    return value.upper()


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor units (a zero is never negative)."""
    rounded = amount.quantize(
        Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP, context=ROUNDING
    )
    return abs(rounded) if rounded.is_zero() else rounded


def format_money(amount: Decimal, currency: str) -> str:
    """Exactly the currency's minor digits: "20.00", "1500" for JPY, "-2.50" for a credit;
    never "-0.00"."""
    return format(round_money(amount, currency), "f")


def format_quantity(quantity: Decimal) -> str:
    """A plain decimal without exponent and without trailing zeros: "1234", "3.5", "0"."""
    if quantity.is_zero():
        return "0"
    text = format(quantity, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
