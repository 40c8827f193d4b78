"""The seven aggregations of SPEC §4, as the reference the SQL in ``persistence`` must match.

Bill runs aggregate in the database; this module states the rule on plain events (for
tests, previews of small data and the hypothesis invariants) and finishes what SQL
returns (``average`` = exact sum / count in the 28-digit default context).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, localcontext

from domain.catalog import Aggregation, Meter
from domain.money import AVERAGE_CONTEXT, EXACT
from domain.usage import UsageEvent, canonical_json

ZERO = Decimal(0)


def average(total: Decimal, count: int) -> Decimal:
    if count == 0:
        return ZERO
    return AVERAGE_CONTEXT.divide(total, Decimal(count))


def unique_value(event: UsageEvent, prop: str) -> str | None:
    """The distinct-able value of ``properties[prop]``; absent or null is not counted."""
    value = event.properties.get(prop)
    return None if value is None else canonical_json(value)


def aggregate(meter: Meter, events: Iterable[UsageEvent]) -> Decimal:
    """Aggregate one period's billable events of one customer and meter."""
    items = list(events)
    if not items:
        return ZERO
    quantities = [e.quantity for e in items]
    agg = meter.aggregation
    with localcontext(EXACT):
        if agg is Aggregation.SUM:
            return sum(quantities, ZERO)
        if agg is Aggregation.COUNT:
            return Decimal(len(items))
        if agg is Aggregation.MAX:
            return max(quantities)
        if agg is Aggregation.MIN:
            return min(quantities)
        if agg is Aggregation.LAST:
            return max(items, key=lambda e: (e.timestamp, e.key)).quantity
        if agg is Aggregation.AVERAGE:
            return average(sum(quantities, ZERO), len(items))
    assert meter.property is not None
    values = {unique_value(e, meter.property) for e in items} - {None}
    return Decimal(len(values))
