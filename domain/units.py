"""Display units of a meter (billing-rules.md §4): how a quantity and a price per unit are
*written*, never what they are. ``unit: {name: tokens, per: 1000000}`` shows 12,500,000 as
"12.5M tokens" and a unit price of 0.000002 as "2 / 1M tokens". Amounts never change.

Pure functions; the numbers stay exact decimals (the caller formats them for a locale).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from domain.money import EXACT
from domain.validation import Fields, Invalid

# A ``per`` that is one of these is written with its suffix ("1M tokens"); any other is
# written out ("100 requests").
SUFFIXES = {
    Decimal(1000): "K",
    Decimal(1000) ** 2: "M",
    Decimal(1000) ** 3: "B",
    Decimal(1000) ** 4: "T",
}


@dataclass(frozen=True)
class Unit:
    """``name``: what one unit is called ("tokens"); ``per``: how many units a price is
    quoted for (1,000,000 for "per 1M tokens"), an integer ≥ 1."""

    name: str
    per: Decimal = Decimal(1)

    @property
    def suffix(self) -> str | None:
        """"M" for a ``per`` of a million (then quantities are written in millions)."""
        return SUFFIXES.get(self.per)

    @property
    def per_label(self) -> str:
        """What a price is quoted for: "1M tokens", "100 requests", "token" — for a
        ``per`` of 1 the name as given."""
        if self.per == 1:
            return self.name
        if self.suffix is not None:
            return f"1{self.suffix} {self.name}"
        return f"{_plain(self.per)} {self.name}"


def scaled_quantity(quantity: Decimal, unit: Unit) -> tuple[Decimal, str]:
    """A quantity as written in ``unit``: (number, suffix and name). With a suffixed ``per``
    the number is divided by it, exactly (12,500,000 → (12.5, "M tokens")); otherwise it
    is the quantity itself with the name (250 → (250, "requests"))."""
    if unit.suffix is None:
        return quantity, unit.name
    with localcontext(EXACT):
        return _normal(quantity / unit.per), f"{unit.suffix} {unit.name}"


def price_per(price: Decimal, unit: Unit) -> Decimal:
    """A price per single unit quoted per ``unit.per`` units: 0.000002 per token → 2 per
    1M tokens. Exact (a product of two exact decimals)."""
    with localcontext(EXACT):
        return _normal(price * unit.per)


def _normal(value: Decimal) -> Decimal:
    """Without trailing zeros and never in exponent form when it is whole."""
    if value.is_zero():
        return Decimal(0)
    value = value.normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        value = value.quantize(Decimal(1))
    return value


def _plain(value: Decimal) -> str:
    return format(_normal(value), "f")


def parse_unit(data: object, path: str) -> Unit:
    """``unit: {name, per}`` of a meter: ``name`` a non-empty text of at most 40 characters,
    ``per`` a whole number from 1 to 10^12 (default 1)."""
    f = Fields(data, path, "an object with name and per")
    name = f.text("name", max_length=40)
    per = Decimal(1) if f.raw("per") is None else f.decimal("per")
    if per != per.to_integral_value() or not 1 <= per <= Decimal(10) ** 12:
        raise Invalid(f.at("per"), f"must be a whole number from 1 to 1000000000000, got {per}")
    f.check_unknown()
    return Unit(name, _normal(per))
