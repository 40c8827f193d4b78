"""SPEC §5: pricing a usage charge (the five models, included, minimum, cap, rounding)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from domain.catalog import Model, Tier, UsageCharge, parse_catalog
from domain.money import format_money
from domain.pricing import model_amount, price_usage
from tests.conftest import SHARED_MISSING, SHARED_SCENARIOS

pytestmark = pytest.mark.unit

D = Decimal
SCENARIOS = SHARED_SCENARIOS


def unit(price: str, **kw: object) -> UsageCharge:
    return UsageCharge("c", "m", Model.UNIT, unit_price=D(price), **kw)  # type: ignore[arg-type]


def tiers(*spec: tuple[str | None, str, str]) -> tuple[Tier, ...]:
    return tuple(
        Tier(None if up is None else D(up), unit_price=D(price), flat_price=D(flat))
        for up, price, flat in spec
    )


def bands(*spec: tuple[str | None, str]) -> tuple[Tier, ...]:
    return tuple(Tier(None if up is None else D(up), flat_price=D(price)) for up, price in spec)


def price(charge: UsageCharge, q: str | int, currency: str = "USD") -> str:
    return format_money(price_usage(charge, D(q), currency), currency)


# --- the numbers of scenario 02 (q = 7500.5) -----------------------------------------------

GRADUATED = UsageCharge(
    "c-graduated", "api-calls", Model.GRADUATED,
    tiers=tiers(("1000", "0", "0"), ("5000", "0.002", "5.00"), (None, "0.001", "0")),
)
VOLUME = UsageCharge(
    "d-volume", "api-calls", Model.VOLUME,
    tiers=tiers(("1000", "0.003", "0"), ("10000", "0.002", "1.00"), (None, "0.001", "0")),
)
BANDS = UsageCharge(
    "e-bands", "api-calls", Model.BANDS,
    tiers=bands(("1000", "10.00"), ("10000", "50.00"), (None, "200.00")),
)
PACKAGE = UsageCharge(
    "b-package", "api-calls", Model.PACKAGE, package_size=D(1000), package_price=D("2.50")
)
SCENARIO_02 = {
    "a-unit": (unit("0.0015"), "11.25"),
    "b-package": (PACKAGE, "20.00"),
    "c-graduated": (GRADUATED, "15.50"),
    "d-volume": (VOLUME, "16.00"),
    "e-bands": (BANDS, "50.00"),
    "f-included": (unit("0.01", included=D(7000)), "5.01"),
    "g-minimum": (unit("0.0001", minimum=D("25.00")), "25.00"),
    "h-cap": (unit("0.05", cap=D("100.00")), "100.00"),
}


@pytest.mark.parametrize("charge_id", sorted(SCENARIO_02))
def test_scenario_02_line_amounts(charge_id: str) -> None:
    charge, expected = SCENARIO_02[charge_id]
    assert price(charge, "7500.5") == expected


def test_scenario_02_unrounded_model_amounts() -> None:
    q = D("7500.5")
    assert model_amount(SCENARIO_02["a-unit"][0], q) == D("11.25075")
    assert model_amount(PACKAGE, q) == D("20.00")
    assert model_amount(GRADUATED, q) == D("15.5005")  # 0 + (8 + 5) + 2.5005
    assert model_amount(VOLUME, q) == D("16.001")  # 15.001 + 1
    assert model_amount(BANDS, q) == D("50.00")
    assert model_amount(SCENARIO_02["f-included"][0], q - 7000) == D("5.005")


def test_scenario_02_subtotal() -> None:
    total = sum((price_usage(c, D("7500.5"), "USD") for c, _ in SCENARIO_02.values()), D(0))
    assert format_money(total, "USD") == "242.76"


@pytest.mark.skipif(not (SCENARIOS / "02-pricing-models.yaml").exists(),
                    reason=SHARED_MISSING)
def test_scenario_02_from_the_files() -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((SCENARIOS / "02-pricing-models.yaml").read_text())
    expected = json.loads((SCENARIOS / "02-pricing-models.expected.json").read_text())
    catalog = parse_catalog(data)
    plan = catalog.plans["all-models"]
    q = sum((D(repr(e["quantity"])) for step in data["timeline"] for e in step.get("usage", [])),
            D(0))
    assert q == D("7500.5")
    (invoice,) = expected["invoices"]
    by_charge = {line["charge"]: line for line in invoice["lines"]}
    assert set(by_charge) == {c.id for c in plan.usage_charges}
    for charge in plan.usage_charges:
        line = by_charge[charge.id]
        assert line["quantity"] == "7500.5"
        assert format_money(price_usage(charge, q, plan.currency), plan.currency) == line["amount"]


# --- unit ------------------------------------------------------------------------------------


def test_unit_basic_and_zero() -> None:
    assert price(unit("0.25"), 10) == "2.50"
    assert price(unit("0.25"), 0) == "0.00"


def test_unit_fractional_quantity() -> None:
    assert price(unit("2"), "0.125") == "0.25"
    assert price(unit("1"), "0.005") == "0.01"  # half-up


def test_unit_price_with_more_decimals_than_the_currency() -> None:
    assert model_amount(unit("0.000002"), D(1234567)) == D("2.469134")
    assert price(unit("0.000002"), 1234567) == "2.47"
    assert price(unit("0.000002"), 2500) == "0.01"  # 0.005 → up
    assert price(unit("0.000002"), 2499) == "0.00"  # 0.004998
    assert price(unit("0.0015"), 1000, "JPY") == "2"  # 1.5 → 2
    assert price(unit("0.0001"), 5, "KWD") == "0.001"  # 0.0005 → 0.001


def test_unit_exact_arithmetic_with_long_decimals() -> None:
    q = D("123456789.123456789")
    assert model_amount(unit("0.000000001"), q) == D("0.123456789123456789")


# --- package ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [("0", "0.00"), ("0.001", "2.50"), ("1", "2.50"), ("999.999", "2.50"), ("1000", "2.50"),
     ("1000.0001", "5.00"), ("2000", "5.00"), ("2001", "7.50"), ("7500.5", "20.00")],
)
def test_package_rounds_up_to_whole_packages(q: str, expected: str) -> None:
    assert price(PACKAGE, q) == expected


def test_package_of_fractional_size() -> None:
    charge = UsageCharge("p", "m", Model.PACKAGE, package_size=D("0.5"), package_price=D("1"))
    assert price(charge, "1.25") == "3.00"
    assert price(charge, "1.5") == "3.00"


# --- graduated ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("0", "0"),
        ("0.5", "0"),  # in the free first tier
        ("1000", "0"),  # exactly at up_to: still the first tier, no flat price of tier 2
        ("1000.5", "5.001"),  # half a unit in tier 2: its flat price is added
        ("1001", "5.002"),
        ("5000", "13.000"),  # 4000 × 0.002 + 5
        ("5001", "13.001"),
        ("7500.5", "15.5005"),
    ],
)
def test_graduated_tiers(q: str, expected: str) -> None:
    assert model_amount(GRADUATED, D(q)) == D(expected)


def test_graduated_flat_price_only_when_a_unit_falls_in_the_tier() -> None:
    charge = UsageCharge(
        "g", "m", Model.GRADUATED,
        tiers=tiers(("10", "1", "100"), ("20", "2", "1000"), (None, "3", "10000")),
    )
    assert model_amount(charge, D(0)) == D(0)  # not even the first tier's flat price
    assert model_amount(charge, D(1)) == D(101)
    assert model_amount(charge, D(10)) == D(110)
    assert model_amount(charge, D(11)) == D(110 + 2 + 1000)
    assert model_amount(charge, D(20)) == D(110 + 20 + 1000)
    assert model_amount(charge, D(21)) == D(110 + 1020 + 3 + 10000)


def test_graduated_single_unbounded_tier() -> None:
    charge = UsageCharge("g", "m", Model.GRADUATED, tiers=tiers((None, "0.1", "2")))
    assert price(charge, 0) == "0.00"
    assert price(charge, 10) == "3.00"


# --- volume ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("0", "0"),  # q' = 0 → first tier, no flat price
        ("1", "0.003"),
        ("1000", "3.000"),  # exactly at up_to → first tier prices all units
        ("1000.5", "3.001"),  # second tier: 1000.5 × 0.002 + 1
        ("10000", "21.000"),
        ("10001", "10.001"),  # third tier prices all units (volume can drop)
        ("7500.5", "16.001"),
    ],
)
def test_volume_tiers(q: str, expected: str) -> None:
    assert model_amount(VOLUME, D(q)) == D(expected)


def test_volume_flat_price_of_first_tier_not_charged_at_zero() -> None:
    charge = UsageCharge("v", "m", Model.VOLUME,
                         tiers=tiers(("10", "1", "7"), (None, "0.5", "9")))
    assert model_amount(charge, D(0)) == D(0)
    assert model_amount(charge, D("0.1")) == D("7.1")
    assert model_amount(charge, D(10)) == D(17)
    assert model_amount(charge, D(11)) == D("14.5")


# --- bands ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [("0", "0.00"), ("0.001", "10.00"), ("1000", "10.00"), ("1000.001", "50.00"),
     ("10000", "50.00"), ("10001", "200.00"), ("99999999", "200.00")],
)
def test_bands(q: str, expected: str) -> None:
    assert price(BANDS, q) == expected


# --- included, minimum, cap -----------------------------------------------------------------


def test_included_is_subtracted_before_the_model() -> None:
    charge = unit("0.01", included=D(7000))
    assert price(charge, 0) == "0.00"
    assert price(charge, 6999) == "0.00"
    assert price(charge, 7000) == "0.00"
    assert price(charge, 7001) == "0.01"
    assert price(charge, "7500.5") == "5.01"


def test_included_applies_to_tiered_models_too() -> None:
    grad = UsageCharge("g", "m", Model.GRADUATED, included=D(1000),
                       tiers=tiers(("1000", "0", "0"), ("5000", "0.002", "5.00"),
                                   (None, "0.001", "0")))
    assert model_amount(grad, D(1)) == D(0)
    assert price(grad, 1001) == "0.00"  # q' = 1 → first tier
    assert price(grad, 2001) == "5.00"  # q' = 1001 → 0.002 + 5
    vol = UsageCharge("v", "m", Model.VOLUME, included=D(5), tiers=VOLUME.tiers)
    assert price(vol, 5) == "0.00"  # q' = 0: first tier, no flat
    band = UsageCharge("b", "m", Model.BANDS, included=D(5), tiers=BANDS.tiers)
    assert price(band, 5) == "0.00"
    assert price(band, "5.1") == "10.00"
    pkg = UsageCharge("p", "m", Model.PACKAGE, included=D(100), package_size=D(10),
                      package_price=D(1))
    assert price(pkg, 100) == "0.00"
    assert price(pkg, 101) == "1.00"


def test_minimum_is_charged_even_without_usage() -> None:
    charge = unit("0.0001", minimum=D("25.00"))
    assert price(charge, 0) == "25.00"
    assert price(charge, 250000) == "25.00"
    assert price(charge, 250001) == "25.00"  # 25.0001 rounds to 25.00
    assert price(charge, 260000) == "26.00"


def test_minimum_with_included_and_zero_usage() -> None:
    charge = UsageCharge("c", "m", Model.BANDS, included=D(100), minimum=D("3.333"),
                         tiers=BANDS.tiers)
    assert price(charge, 0) == "3.33"


def test_cap() -> None:
    charge = unit("0.05", cap=D("100.00"))
    assert price(charge, 0) == "0.00"
    assert price(charge, 1999) == "99.95"
    assert price(charge, 2000) == "100.00"
    assert price(charge, 2001) == "100.00"
    assert price(charge, "7500.5") == "100.00"


def test_minimum_then_cap_order() -> None:
    # minimum 25 then cap 10: min(max(0, 25), 10) = 10 (the cap wins, being applied last)
    charge = unit("1", minimum=D(25), cap=D(10))
    assert price(charge, 0) == "10.00"
    assert price(charge, 5) == "10.00"
    assert price(charge, 50) == "10.00"


def test_minimum_and_cap_band() -> None:
    charge = unit("1", minimum=D(5), cap=D(20))
    assert [price(charge, q) for q in (0, 4, 5, 12, 20, 21)] == [
        "5.00", "5.00", "5.00", "12.00", "20.00", "20.00"
    ]


def test_rounding_happens_after_minimum_and_cap() -> None:
    # cap 0.005 is rounded half-up only at the end → 0.01
    assert price(unit("1", cap=D("0.005")), 1) == "0.01"
    # minimum 0.004 with no usage → 0.00 after rounding
    assert price(unit("1", minimum=D("0.004")), 0) == "0.00"


def test_price_in_jpy_and_kwd() -> None:
    assert price(unit("0.5"), 110, "JPY") == "55"
    assert price(unit("0.5"), 111, "JPY") == "56"  # 55.5 → 56
    assert price(unit("0.0005"), 1, "KWD") == "0.001"
    assert price(GRADUATED, "7500.5", "KWD") == "15.501"
