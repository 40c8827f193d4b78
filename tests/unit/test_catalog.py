"""SPEC §1 and §5: reading the catalog, refusing a broken one with the field's path."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from domain.catalog import (
    Aggregation,
    Entity,
    Meter,
    Model,
    Plan,
    RecurringCharge,
    Tier,
    UsageCharge,
    parse_catalog,
    parse_plan,
    plan_to_dict,
)
from domain.periods import Interval
from domain.validation import Invalid

pytestmark = pytest.mark.unit

D = Decimal


def catalog_data() -> dict[str, Any]:
    return {
        "entities": [
            {"id": "acme-us", "timezone": "America/New_York"},
            {"id": "nordic", "timezone": "Europe/Oslo", "invoice_prefix": "NO"},
        ],
        "meters": [
            {"id": "api-calls", "aggregation": "sum"},
            {"id": "seats", "aggregation": "unique_count", "property": "user"},
        ],
        "plans": [
            {
                "id": "pro",
                "currency": "usd",
                "interval": "month",
                "charges": [
                    {"id": "base", "type": "recurring", "amount": "20.00"},
                    {
                        "id": "calls",
                        "type": "usage",
                        "meter": "api-calls",
                        "model": "graduated",
                        "tiers": [
                            {"up_to": 1000, "unit_price": "0"},
                            {"up_to": 5000, "unit_price": "0.002", "flat_price": "5.00"},
                            {"up_to": None, "unit_price": "0.001"},
                        ],
                    },
                    {
                        "id": "seats",
                        "type": "usage",
                        "meter": "seats",
                        "model": "bands",
                        "bands": [{"up_to": 5, "price": "10"}, {"up_to": None, "price": "50"}],
                    },
                ],
            }
        ],
        "customers": [
            {"id": "buyer", "entity": "acme-us"},
            {"id": "nordbuyer", "entity": "nordic", "draft_invoices": True},
        ],
        "timeline": [{"anything": "left alone"}],
        "until": "2026-04-02T00:00:00Z",
    }


def refused(data: Any) -> Invalid:
    with pytest.raises(Invalid) as err:
        parse_catalog(data)
    return err.value


def test_valid_catalog() -> None:
    cat = parse_catalog(catalog_data())
    assert cat.entities["acme-us"] == Entity("acme-us", "America/New_York", "ACME-US")
    assert cat.entities["nordic"].invoice_prefix == "NO"
    assert cat.meters["seats"] == Meter("seats", Aggregation.UNIQUE_COUNT, "user")
    plan = cat.plans["pro"]
    assert plan.currency == "USD"
    assert plan.interval is Interval.MONTH
    assert plan.recurring_charges == (RecurringCharge("base", D("20.00")),)
    calls = plan.usage_charges[0]
    assert calls.model is Model.GRADUATED
    assert calls.tiers == (
        Tier(D(1000), D(0), D(0)), Tier(D(5000), D("0.002"), D(5)), Tier(None, D("0.001"), D(0)),
    )
    assert plan.usage_charges[1].tiers == (Tier(D(5), flat_price=D(10)),
                                           Tier(None, flat_price=D(50)))
    assert plan.meters == frozenset({"api-calls", "seats"})
    assert cat.customers["buyer"].draft_invoices is None  # not given: a new customer gets False
    assert cat.customers["nordbuyer"].draft_invoices is True


def test_empty_catalog() -> None:
    cat = parse_catalog({})
    assert (cat.entities, cat.meters, cat.plans, cat.customers) == ({}, {}, {}, {})


def test_default_invoice_prefix_is_the_id_upper_cased() -> None:
    cat = parse_catalog({"entities": [{"id": "ingest", "timezone": "UTC"}]})
    assert cat.entities["ingest"].invoice_prefix == "INGEST"


def test_decimals_are_exact() -> None:
    data = catalog_data()
    data["plans"][0]["charges"][0]["amount"] = 19.99  # a float from JSON
    data["plans"][0]["charges"][1]["tiers"][1]["unit_price"] = "0.000002"
    plan = parse_catalog(data).plans["pro"]
    assert plan.recurring_charges[0].amount == D("19.99")
    assert plan.usage_charges[0].tiers[1].unit_price == D("0.000002")


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    data = catalog_data()
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        # tiers: non-increasing, null not last, last not null, missing up_to
        (["plans", 0, "charges", 1, "tiers", 1, "up_to"], 1000,
         "plans[0].charges[1].tiers[1].up_to"),
        (["plans", 0, "charges", 1, "tiers", 1, "up_to"], 999,
         "plans[0].charges[1].tiers[1].up_to"),
        (["plans", 0, "charges", 1, "tiers", 1, "up_to"], None,
         "plans[0].charges[1].tiers[1].up_to"),
        (["plans", 0, "charges", 1, "tiers", 2, "up_to"], 9000,
         "plans[0].charges[1].tiers[2].up_to"),
        (["plans", 0, "charges", 1, "tiers", 0, "up_to"], ...,
         "plans[0].charges[1].tiers[0].up_to"),
        (["plans", 0, "charges", 1, "tiers", 0, "up_to"], "-1",
         "plans[0].charges[1].tiers[0].up_to"),
        (["plans", 0, "charges", 1, "tiers", 1, "unit_price"], "-0.002",
         "plans[0].charges[1].tiers[1].unit_price"),
        (["plans", 0, "charges", 1, "tiers", 1, "unit_price"], "NaN",
         "plans[0].charges[1].tiers[1].unit_price"),
        (["plans", 0, "charges", 1, "tiers", 1, "unit_price"], ...,
         "plans[0].charges[1].tiers[1].unit_price"),
        (["plans", 0, "charges", 1, "tiers", 1, "colour"], "red",
         "plans[0].charges[1].tiers[1].colour"),
        (["plans", 0, "charges", 1, "tiers"], [], "plans[0].charges[1].tiers"),
        (["plans", 0, "charges", 1, "tiers"], "lots", "plans[0].charges[1].tiers"),
        # bands
        (["plans", 0, "charges", 2, "bands", 0, "up_to"], None,
         "plans[0].charges[2].bands[0].up_to"),
        (["plans", 0, "charges", 2, "bands", 0, "price"], ...,
         "plans[0].charges[2].bands[0].price"),
        (["plans", 0, "charges", 2, "bands", 0, "unit_price"], "1",
         "plans[0].charges[2].bands[0].unit_price"),
        # charges
        (["plans", 0, "charges", 1, "meter"], "tokens", "plans[0].charges[1].meter"),
        (["plans", 0, "charges", 1, "model"], "tiered", "plans[0].charges[1].model"),
        (["plans", 0, "charges", 1, "type"], "one-off", "plans[0].charges[1].type"),
        (["plans", 0, "charges", 1, "included"], "-1", "plans[0].charges[1].included"),
        (["plans", 0, "charges", 1, "minimum"], "lots", "plans[0].charges[1].minimum"),
        (["plans", 0, "charges", 1, "cap"], "-5", "plans[0].charges[1].cap"),
        (["plans", 0, "charges", 1, "discount"], "5", "plans[0].charges[1].discount"),
        (["plans", 0, "charges", 0, "amount"], "-20", "plans[0].charges[0].amount"),
        (["plans", 0, "charges", 0, "amount"], ..., "plans[0].charges[0].amount"),
        (["plans", 0, "charges", 0, "meter"], "api-calls", "plans[0].charges[0].meter"),
        (["plans", 0, "charges", 2, "id"], "calls", "plans[0].charges[2].id"),
        (["plans", 0, "charges", 0, "id"], "", "plans[0].charges[0].id"),
        # plans
        (["plans", 0, "currency"], "ZZZ", "plans[0].currency"),
        (["plans", 0, "currency"], "XAU", "plans[0].currency"),
        (["plans", 0, "currency"], "dollars", "plans[0].currency"),
        (["plans", 0, "interval"], "day", "plans[0].interval"),
        (["plans", 0, "interval"], ..., "plans[0].interval"),
        (["plans", 0, "charges"], ..., "plans[0].charges"),
        (["plans", 0, "trial"], 14, "plans[0].trial"),
        (["plans", 0], "pro", "plans[0]"),
        # entities
        (["entities", 0, "timezone"], "Mars/Olympus_Mons", "entities[0].timezone"),
        (["entities", 0, "timezone"], "america/new_york", "entities[0].timezone"),
        (["entities", 0, "timezone"], "", "entities[0].timezone"),
        (["entities", 0, "timezone"], ..., "entities[0].timezone"),
        (["entities", 1, "invoice_prefix"], "", "entities[1].invoice_prefix"),
        (["entities", 1, "currency"], "NOK", "entities[1].currency"),
        (["entities", 1, "id"], "acme-us", "entities[1].id"),
        # meters
        (["meters", 0, "aggregation"], "median", "meters[0].aggregation"),
        (["meters", 0, "property"], "user", "meters[0].property"),
        (["meters", 1, "property"], ..., "meters[1].property"),
        (["meters", 1, "id"], "api-calls", "meters[1].id"),
        (["meters", 0, "unit"], "tokens", "meters[0].unit"),
        # customers
        (["customers", 0, "entity"], "ghost", "customers[0].entity"),
        (["customers", 0, "draft_invoices"], "yes", "customers[0].draft_invoices"),
        (["customers", 0, "email"], "not an address", "customers[0].email"),
        (["customers", 0, "unknown"], "a@b.c", "customers[0].unknown"),
        (["customers", 1, "id"], "buyer", "customers[1].id"),
        # top level
        (["plans"], {"id": "pro"}, "plans"),
    ],
)
def test_errors_name_the_path(path: list[Any], value: Any, field: str) -> None:
    err = refused(mutate(path, value))
    assert err.field == field
    assert str(err).startswith(f"{field}: ")


def test_non_increasing_message_names_the_previous_bound() -> None:
    err = refused(mutate(["plans", 0, "charges", 1, "tiers", 1, "up_to"], 1000))
    assert "1000" in err.message


def test_catalog_must_be_a_mapping() -> None:
    with pytest.raises(Invalid):
        parse_catalog(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_charge_on_an_unknown_meter() -> None:
    data = catalog_data()
    data["meters"] = [{"id": "seats", "aggregation": "unique_count", "property": "user"}]
    err = refused(data)
    assert err.field == "plans[0].charges[1].meter"
    assert "api-calls" in err.message


def test_package_size_must_be_positive() -> None:
    data = catalog_data()
    data["plans"][0]["charges"].append(
        {"id": "pkg", "type": "usage", "meter": "api-calls", "model": "package",
         "package_size": 0, "package_price": "1"}
    )
    assert refused(data).field == "plans[0].charges[3].package_size"


def test_unit_model_requires_unit_price_and_refuses_tiers() -> None:
    charge: dict[str, Any] = {"id": "u", "type": "usage", "meter": "api-calls", "model": "unit"}
    data = catalog_data()
    data["plans"][0]["charges"].append(charge)
    assert refused(data).field == "plans[0].charges[3].unit_price"
    charge["unit_price"] = "1"
    charge["tiers"] = [{"up_to": None, "unit_price": "1"}]
    assert refused(data).field == "plans[0].charges[3].tiers"


def test_single_unbounded_tier_is_fine() -> None:
    data = mutate(["plans", 0, "charges", 1, "tiers"], [{"up_to": None, "unit_price": "1"}])
    assert parse_catalog(data).plans["pro"].usage_charges[0].tiers == (Tier(None, D(1)),)


def test_parse_plan_without_a_meter_list_does_not_check_meters() -> None:
    data = catalog_data()["plans"][0]
    data["charges"][1]["meter"] = "anything"
    assert parse_plan(data, "plan").usage_charges[0].meter == "anything"
    with pytest.raises(Invalid) as err:
        parse_plan(data, "plan", {})
    assert err.value.field == "plan.charges[1].meter"


def test_directory_timezone_is_refused_with_the_path() -> None:
    err = refused(mutate(["entities", 0, "timezone"], "America"))
    assert err.field == "entities[0].timezone"


# --- plan_to_dict round trip -------------------------------------------------------------------


def every_model_plan() -> Plan:
    return Plan(
        "all", "JPY", Interval.QUARTER,
        (
            RecurringCharge("base", D("1500")),
            UsageCharge("a", "m", Model.UNIT, unit_price=D("0.000002"), included=D("10.5"),
                        minimum=D(0), cap=D("1E+3")),
            UsageCharge("b", "m", Model.PACKAGE, package_size=D("0.5"), package_price=D("2.50")),
            UsageCharge("c", "m", Model.GRADUATED, tiers=(
                Tier(D(10), D(0)), Tier(D("20.5"), D("0.1"), D(3)), Tier(None, D("0.01")),
            )),
            UsageCharge("d", "m", Model.VOLUME, tiers=(Tier(D(1), D(2), D(1)), Tier(None, D(1))),
                        minimum=D(100)),
            UsageCharge("e", "m", Model.BANDS, tiers=(Tier(D(5), flat_price=D(10)),
                                                      Tier(None, flat_price=D(50)))),
        ),
    )


def test_plan_to_dict_round_trips() -> None:
    plan = every_model_plan()
    assert parse_plan(plan_to_dict(plan), "plan") == plan
    assert parse_plan(plan_to_dict(plan), "plan", {"m": Meter("m", Aggregation.SUM)}) == plan


def test_plan_to_dict_round_trips_a_parsed_plan() -> None:
    data = catalog_data()
    cat = parse_catalog(data)
    plan = cat.plans["pro"]
    again = parse_plan(copy.deepcopy(plan_to_dict(plan)), "p", cat.meters)
    assert again == plan
    assert plan_to_dict(again) == plan_to_dict(plan)


def test_plan_to_dict_is_json_with_decimals_as_strings() -> None:
    import json

    d = plan_to_dict(every_model_plan())
    text = json.dumps(d)
    assert '"0.000002"' in text
    assert d["interval"] == "quarter" and d["currency"] == "JPY"
