"""Meter display units (issue #13): how quantities and prices are written, exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.catalog import Model, Tier, UsageCharge, parse_meter
from domain.units import SUFFIXES, Unit, price_per, scaled_quantity
from domain.validation import Invalid
from services.delivery.render import format_in_unit, format_price_in_unit
from services.portal import parse_ttl, pricing_lines

M = Unit("tokens", Decimal(1000000))


def test_quantities_and_prices_are_written_in_the_unit() -> None:
    assert format_in_unit(Decimal(12500000), M) == "12.5M tokens"
    assert format_in_unit(Decimal(1), M) == "0.000001M tokens"
    assert format_in_unit(Decimal(0), M) == "0M tokens"
    assert format_in_unit(Decimal(1250), Unit("requests", Decimal(100))) == "1,250 requests"
    assert format_in_unit(Decimal(1250), None) == "1,250"
    assert format_price_in_unit(Decimal("0.000002"), "USD", M) == "$2.00 / 1M tokens"
    assert format_price_in_unit(Decimal("0.0000015"), "USD", M) == "$1.50 / 1M tokens"
    assert format_price_in_unit(Decimal("0.05"), "EUR", Unit("seats")) == "€0.05 / seats"
    assert format_price_in_unit(Decimal("0.02"), "USD", Unit("calls", Decimal(100))) == \
        "$2.00 / 100 calls"
    assert Unit("x", Decimal(1000) ** 3).per_label == "1B x"


@given(st.decimals(min_value=0, max_value=Decimal(10) ** 20, places=6),
       st.sampled_from(sorted(SUFFIXES)))
def test_scaling_is_exact(quantity: Decimal, per: Decimal) -> None:
    unit = Unit("u", per)
    number, _ = scaled_quantity(quantity, unit)
    assert number * per == quantity
    assert price_per(quantity, unit) / per == quantity


def test_the_catalog_validates_the_unit() -> None:
    meter = parse_meter({"id": "t", "aggregation": "sum",
                         "unit": {"name": "tokens", "per": 1000000}}, "meters[0]")
    assert meter.unit == M
    assert parse_meter({"id": "t", "aggregation": "sum", "unit": {"name": "seats"}},
                       "meters[0]").unit == Unit("seats")
    for bad, message in (({"name": "x", "per": "1.5"}, "meters[0].unit.per: must be a whole"),
                         ({"name": "x", "per": 0}, "meters[0].unit.per: must be a whole"),
                         ({"name": "x", "per": 10 ** 13}, "meters[0].unit.per: must be a whole"),
                         ({"per": 10}, "meters[0].unit.name: is required"),
                         ({"name": "x" * 41}, "meters[0].unit.name: must be at most 40"),
                         ({"name": "x", "pre": 3}, "meters[0].unit.pre: is not a known field"),
                         ("tokens", "meters[0].unit: must be an object")):
        with pytest.raises(Invalid) as caught:
            parse_meter({"id": "t", "aggregation": "sum", "unit": bad}, "meters[0]")
        assert str(caught.value).startswith(message), caught.value


def test_pricing_in_words() -> None:
    graduated = UsageCharge("tokens", "tokens", Model.GRADUATED, tiers=(
        Tier(Decimal(1000000)), Tier(None, Decimal("0.000002"), Decimal("5"))),
        included=Decimal(500000), minimum=Decimal(1), cap=Decimal(100))
    assert pricing_lines(graduated, "USD", M) == (
        "graduated: each tier prices the units that fall in it",
        "up to 1M tokens: $0.00 / 1M tokens",
        "above 1M tokens: $2.00 / 1M tokens + $5.00 flat",
        "the first 0.5M tokens included", "at least $1.00", "at most $100.00")
    package = UsageCharge("calls", "calls", Model.PACKAGE, package_size=Decimal(1000),
                          package_price=Decimal(3))
    assert pricing_lines(package, "EUR", None) == (
        "€3.00 per package of 1,000 (a started package counts)",)
    bands = UsageCharge("seats", "seats", Model.BANDS, tiers=(
        Tier(Decimal(10), flat_price=Decimal(50)), Tier(None, flat_price=Decimal(90))))
    assert pricing_lines(bands, "USD", Unit("seats"))[1:] == (
        "up to 10 seats: $50.00", "above 10 seats: $90.00")


def test_link_lifetimes() -> None:
    assert parse_ttl("12h").total_seconds() == 12 * 3600
    assert parse_ttl("90d").days == 90 and parse_ttl("1m").total_seconds() == 60
    for bad in ("", "12", "0m", "59s", "91d", "1y", "-1h", "1.5h", "9999999h"):
        with pytest.raises(Invalid) as caught:
            parse_ttl(bad)
        assert caught.value.field == "ttl"
