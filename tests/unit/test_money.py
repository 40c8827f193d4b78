"""SPEC §5 (rounding to minor units) and §9 (money and quantity formatting)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.money import (
    format_money,
    format_quantity,
    minor_units,
    parse_currency,
    round_money,
)
from domain.validation import Invalid

pytestmark = pytest.mark.unit

D = Decimal


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4), ("usd", 2)],
)
def test_minor_units(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


@pytest.mark.parametrize("currency", ["ZZZ", "XAU", "XXX"])
def test_minor_units_refuses_unknown_or_unit_less(currency: str) -> None:
    with pytest.raises(Invalid) as err:
        minor_units(currency)
    assert err.value.field == "currency"


def test_parse_currency_upper_cases() -> None:
    assert parse_currency("usd", "plans[0].currency") == "USD"
    assert parse_currency("JPY", "x") == "JPY"


@pytest.mark.parametrize("value", ["US", "USDD", "U5D", 840, None, "ZZZ", "XAU", ""])
def test_parse_currency_refuses(value: object) -> None:
    with pytest.raises(Invalid) as err:
        parse_currency(value, "plans[0].currency")
    assert err.value.field == "plans[0].currency"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "USD", "0.01"),  # half-up, not banker's
        ("0.015", "USD", "0.02"),
        ("0.025", "USD", "0.03"),  # half-even would give 0.02
        ("0.125", "USD", "0.13"),
        ("2.675", "USD", "2.68"),
        ("5.005", "USD", "5.01"),
        ("0.0049999", "USD", "0.00"),
        ("1.994999", "USD", "1.99"),
        ("0.5", "JPY", "1"),
        ("2.5", "JPY", "3"),
        ("1499.4999", "JPY", "1499"),
        ("0.0005", "KWD", "0.001"),
        ("1.2345", "KWD", "1.235"),
        ("1.2344999", "KWD", "1.234"),
        ("20", "USD", "20.00"),
        ("1E+3", "USD", "1000.00"),
        ("0.000002", "USD", "0.00"),
        ("12345678901234567890.005", "USD", "12345678901234567890.01"),
    ],
)
def test_round_money_half_up(amount: str, currency: str, expected: str) -> None:
    rounded = round_money(D(amount), currency)
    assert str(rounded) == expected
    assert rounded.as_tuple().exponent == -minor_units(currency)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("20", "USD", "20.00"),
        ("20.5", "USD", "20.50"),
        ("0", "USD", "0.00"),
        ("1500", "JPY", "1500"),
        ("1500.5", "JPY", "1501"),
        ("0", "JPY", "0"),
        ("1.5", "KWD", "1.500"),
        ("1E+3", "USD", "1000.00"),
        ("1E+3", "JPY", "1000"),
        ("242.76", "USD", "242.76"),
        ("0.125", "USD", "0.13"),
    ],
)
def test_format_money(amount: str, currency: str, expected: str) -> None:
    assert format_money(D(amount), currency) == expected


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("1234", "1234"),
        ("3.5", "3.5"),
        ("3.50", "3.5"),
        ("3.000", "3"),
        ("0", "0"),
        ("0.000", "0"),
        ("-0", "0"),
        ("0E+3", "0"),
        ("1E+3", "1000"),
        ("1.5E+3", "1500"),
        ("100", "100"),
        ("1000.0", "1000"),
        ("1E-7", "0.0000001"),
        ("7500.5", "7500.5"),
        ("16.66666666666666666666666667", "16.66666666666666666666666667"),
    ],
)
def test_format_quantity(quantity: str, expected: str) -> None:
    assert format_quantity(D(quantity)) == expected


def test_format_quantity_never_has_an_exponent() -> None:
    for exp in range(-12, 13):
        text = format_quantity(D(7).scaleb(exp))
        assert "E" not in text and "e" not in text
        assert D(text) == D(7).scaleb(exp)
        if "." in text:
            assert not text.endswith("0")
