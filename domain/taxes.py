"""Taxes (SPEC §15): exclusive taxes added to an invoice, rate by rate, on what the
customer pays after the discount.

- ``TaxPolicy.rates_of`` decides the rates of a line: none for a tax-exempt customer; else
  its charge's when the charge names them; else the customer's when it names them; else
  the entity's. This is the seam where a tax provider would plug in (a function from a
  line and its parties to its rates).
- ``invoice_taxes`` computes, per rate, ``base_r = B_r × (subtotal − discount) / subtotal``
  as an exact fraction and ``tax_r`` = that times the rate, rounded half away from zero to
  the currency's minor units — once, at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from domain.money import minor_units
from domain.validation import Fields, Invalid, describe, parse_decimal


@dataclass(frozen=True)
class TaxRate:
    id: str
    rate: Decimal  # a percent, 0 ≤ rate ≤ 100


@dataclass(frozen=True)
class TaxAmount:
    """One rate of an invoice: its base (rounded for display) and its amount."""

    tax: str
    rate: Decimal
    base: Decimal
    amount: Decimal


@dataclass(frozen=True)
class TaxPolicy:
    """What decides the rates of an invoice's lines: the rates known, the entity's
    default, the customer's own (None: not named), its exemption."""

    rates: Mapping[str, Decimal] = field(default_factory=dict)
    entity: tuple[str, ...] = ()
    customer: tuple[str, ...] | None = None
    exempt: bool = False

    def rates_of(self, charge_taxes: tuple[str, ...] | None) -> tuple[str, ...]:
        """The rate ids of a line of a charge that names ``charge_taxes`` (None: names
        none)."""
        if self.exempt:
            return ()
        if charge_taxes is not None:
            return charge_taxes
        if self.customer is not None:
            return self.customer
        return self.entity


NO_TAX = TaxPolicy()


def round_half_away(value: Fraction, currency: str) -> Decimal:
    """An exact fraction rounded half away from zero to the currency's minor units
    (0.125 → 0.13, −0.125 → −0.13)."""
    digits = minor_units(currency)
    scaled = abs(value) * 10 ** digits
    units = int(scaled + Fraction(1, 2))  # floor: scaled is not negative
    if value < 0:
        units = -units
    result = Decimal(units).scaleb(-digits)
    return abs(result) if result.is_zero() else result


def invoice_taxes(lines: Iterable[tuple[Decimal, tuple[str, ...]]], subtotal: Decimal,
                  discount: Decimal, rates: Mapping[str, Decimal],
                  currency: str) -> tuple[TaxAmount, ...]:
    """SPEC §15: for each rate carried by at least one line (``(amount, rate ids)``), its
    base — the amounts of its lines, reduced in the proportion the discount reduces the
    subtotal — and its tax, rounded once; sorted by rate id."""
    carried: dict[str, Fraction] = {}
    for amount, taxes in lines:
        for tax in taxes:
            carried[tax] = carried.get(tax, Fraction(0)) + Fraction(amount)
    share = Fraction(1)
    if subtotal > 0 and discount > 0:
        share = (Fraction(subtotal) - Fraction(discount)) / Fraction(subtotal)
    result = []
    for tax in sorted(carried):
        base = carried[tax] * share
        rate = rates[tax]
        result.append(TaxAmount(tax, rate, round_half_away(base, currency),
                                round_half_away(base * Fraction(rate) / 100, currency)))
    return tuple(result)


# ---------------------------------------------------------------------------- catalog


def parse_tax_rates(items: Iterable[tuple[str, Any]]) -> dict[str, TaxRate]:
    """The catalog's ``taxes: [{id, rate}]``: ids unique, rates percents in [0, 100]."""
    rates: dict[str, TaxRate] = {}
    for path, item in items:
        f = Fields(item, path)
        tax_id = f.text("id")
        rate = parse_decimal(f.required("rate"), f.at("rate"))
        if not 0 <= rate <= 100:
            f.fail("rate", f"must be a percent from 0 to 100, got {rate}")
        f.check_unknown()
        if tax_id in rates:
            raise Invalid(f.at("id"), f"duplicate tax id {tax_id!r}")
        rates[tax_id] = TaxRate(tax_id, rate)
    return rates


def parse_tax_ids(value: Any, path: str, known: Mapping[str, object] | None) -> tuple[str, ...]:
    """A ``taxes: [ids]`` list of an entity, a customer or a charge: known rate ids, each
    once (``[]``: none)."""
    if not isinstance(value, list):
        raise Invalid(path, f"must be a list of tax rate ids, got {describe(value)}")
    ids: list[str] = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, str) or not item:
            raise Invalid(where, f"must be a tax rate id, got {describe(item)}")
        if known is not None and item not in known:
            raise Invalid(where, f"{item!r} is not a known tax rate")
        if item in ids:
            raise Invalid(where, f"{item!r} is listed twice")
        ids.append(item)
    return tuple(ids)


def optional_tax_ids(f: Fields, known: Mapping[str, object] | None) -> tuple[str, ...] | None:
    """The ``taxes`` field of a catalog item, or None when it names none."""
    raw = f.raw("taxes")
    return None if raw is None else parse_tax_ids(raw, f.at("taxes"), known)
