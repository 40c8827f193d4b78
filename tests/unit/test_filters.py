"""Charge filters (SPEC §13) as pure rules: the group of an event, the catalog's checks
(each refusal names its field), and a plan with filters stored and read back unchanged."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain.catalog import Model, UsageCharge, parse_plan, plan_to_dict
from domain.filters import DEFAULT_GROUP, Filter, group_of
from domain.validation import Invalid

PRICE = UsageCharge("x", "m", Model.UNIT, unit_price=Decimal(1))
LARGE = Filter("large", (("model", ("large", "large-2025")),), PRICE)
BATCH = Filter("large-batch", (("mode", ("batch",)), ("model", ("large",))), PRICE)
EU = Filter("eu", (("region", ("eu",)),), PRICE)


@pytest.mark.parametrize(("properties", "group"), [
    ({"model": "large"}, "large"),
    ({"model": "large-2025", "mode": "batch"}, "large"),  # batch is only for `large`
    ({"model": "large", "mode": "batch"}, "large-batch"),  # two names beat one
    ({"model": "large", "region": "eu"}, "large"),  # a tie: the first listed
    ({"region": "eu"}, "eu"),
    ({"model": 4}, DEFAULT_GROUP),  # only strings match
    ({"model": ["large"]}, DEFAULT_GROUP),
    ({"model": None}, DEFAULT_GROUP),
    ({}, DEFAULT_GROUP),
    (None, DEFAULT_GROUP),
    ({"model": "LARGE"}, DEFAULT_GROUP),  # values compare exactly
])
def test_the_group_of_an_event(properties: dict[str, Any] | None, group: str) -> None:
    assert group_of(properties, [LARGE, BATCH, EU]) == group


def usage_plan(filters: Any) -> dict[str, Any]:
    return {"id": "p", "currency": "USD", "interval": "month", "charges": [
        {"id": "tokens", "type": "usage", "meter": "m", "model": "unit",
         "unit_price": "0.000002", "taxes": ["vat"], "filters": filters}]}


@pytest.mark.parametrize(("filters", "field", "says"), [
    ([{"id": "a", "match": {"model": ["x"]}, "model": "unit", "unit_price": "1"},
      {"id": "a", "match": {"model": ["y"]}, "model": "unit", "unit_price": "1"}],
     "charges[0].filters[1].id", "duplicate filter id"),
    ([{"id": "a b", "match": {"model": ["x"]}, "model": "unit", "unit_price": "1"}],
     "charges[0].filters[0].id", "letters, digits"),
    ([{"id": "a", "match": {}, "model": "unit", "unit_price": "1"}],
     "charges[0].filters[0].match", "non-empty"),
    ([{"id": "a", "match": {"model": []}, "model": "unit", "unit_price": "1"}],
     "charges[0].filters[0].match.model", "non-empty list"),
    ([{"id": "a", "match": {"model": [4]}, "model": "unit", "unit_price": "1"}],
     "charges[0].filters[0].match.model[0]", "must be a string"),
    ([{"id": "a", "match": {"model": ["x", "y"]}, "model": "unit", "unit_price": "1"},
      {"id": "b", "match": {"model": ["y", "x"]}, "model": "unit", "unit_price": "2"}],
     "charges[0].filters[1].match", "the same match as filter 'a'"),
    ([{"id": "a", "match": {"model": ["x"]}, "model": "unit", "unit_price": "1",
       "taxes": []}], "charges[0].filters[0].taxes", "names none"),
    ([{"id": "a", "match": {"model": ["x"]}, "model": "tiered", "unit_price": "1"}],
     "charges[0].filters[0].model", "must be one of"),
    ([{"id": "a", "match": {"model": ["x"]}, "model": "unit"}],
     "charges[0].filters[0].unit_price", "is required"),
    ({"id": "a"}, "charges[0].filters", "must be a list"),
])
def test_a_broken_filter_is_refused_naming_the_field(filters: Any, field: str,
                                                     says: str) -> None:
    with pytest.raises(Invalid, match=says) as refused:
        parse_plan(usage_plan(filters), "", {"m": object()}, {"vat": object()})  # type: ignore[dict-item]
    assert refused.value.field == field


def test_a_plan_with_filters_is_stored_and_read_back_unchanged() -> None:
    plan = parse_plan(usage_plan([
        {"id": "large", "match": {"model": ["large-2025", "large"]}, "model": "graduated",
         "tiers": [{"up_to": 1000000, "unit_price": "0.00001"},
                   {"up_to": None, "unit_price": "0.000008"}], "cap": "500"},
        {"id": "batch", "match": {"mode": ["batch"], "model": ["large"]}, "model": "unit",
         "unit_price": "0.000005", "included": 1000, "minimum": "1"}]), "",
        {"m": object()}, {"vat": object()})  # type: ignore[dict-item]
    assert parse_plan(plan_to_dict(plan), "") == plan
    tokens = plan.usage_charges[0]
    assert [g for g, _ in tokens.groups] == [DEFAULT_GROUP, "large", "batch"]
    assert all(pricing.taxes == ("vat",) for _, pricing in tokens.groups)
