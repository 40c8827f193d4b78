"""Pricing one usage charge for one period (SPEC §5)."""

from __future__ import annotations

from decimal import Decimal, localcontext

from domain.catalog import Model, Tier, UsageCharge
from domain.money import EXACT, round_money

ZERO = Decimal(0)


def _graduated(tiers: tuple[Tier, ...], q: Decimal) -> Decimal:
    """Each unit at the price of the tier it falls in; a tier's flat price once any
    quantity (even a fraction of a unit) falls in it."""
    amount = ZERO
    lower = ZERO
    for tier in tiers:
        upper = q if tier.up_to is None else min(q, tier.up_to)
        in_tier = upper - lower
        if in_tier > 0:
            amount += in_tier * tier.unit_price + tier.flat_price
        if tier.up_to is None or q <= tier.up_to:
            break
        lower = tier.up_to
    return amount


def _tier_for(tiers: tuple[Tier, ...], q: Decimal) -> Tier:
    """The single tier with ``up_to_(i−1) < q ≤ up_to_i`` (q = 0 → the first)."""
    for tier in tiers:
        if tier.up_to is None or q <= tier.up_to:
            return tier
    raise AssertionError("the last tier is unbounded")


def model_amount(charge: UsageCharge, q: Decimal) -> Decimal:
    """The amount of the pricing model alone for billable quantity ``q`` ≥ 0, unrounded."""
    with localcontext(EXACT):
        if charge.model is Model.UNIT:
            return q * charge.unit_price
        if charge.model is Model.PACKAGE:
            whole, rest = divmod(q, charge.package_size)
            packages = whole + (1 if rest else 0)
            return packages * charge.package_price
        if charge.model is Model.GRADUATED:
            return _graduated(charge.tiers, q)
        if charge.model is Model.VOLUME:
            tier = _tier_for(charge.tiers, q)
            return q * tier.unit_price + (tier.flat_price if q > 0 else ZERO)
        # bands
        return _tier_for(charge.tiers, q).flat_price if q > 0 else ZERO


def price_usage(charge: UsageCharge, quantity: Decimal, currency: str) -> Decimal:
    """The line amount: model on ``max(0, q − included)``, then minimum, then cap, then
    rounding half-up to the currency's minor units."""
    with localcontext(EXACT):
        billable = max(ZERO, quantity - charge.included)
    amount = model_amount(charge, billable)
    if charge.minimum is not None:
        amount = max(amount, charge.minimum)
    if charge.cap is not None:
        amount = min(amount, charge.cap)
    return round_money(amount, currency)
