"""Reading and writing the catalog: entities, meters, plans, customers."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.catalog import (
    Aggregation,
    Catalog,
    Customer,
    Entity,
    Meter,
    Plan,
    parse_delivery,
    parse_plan,
    plan_to_dict,
)
from persistence import db
from persistence.sql import rowcount
from persistence.tables import CustomerRow, EntityRow, MeterRow, PlanMeterRow, PlanRow


def apply_catalog(session: Session, catalog: Catalog) -> None:
    """Create or update every item of the catalog (an item not named is left alone)."""
    for e in catalog.entities.values():
        session.merge(EntityRow(id=e.id, timezone=e.timezone, invoice_prefix=e.invoice_prefix,
                                delivery=e.delivery.to_dict() if e.delivery else None))
    for m in catalog.meters.values():
        session.merge(MeterRow(id=m.id, aggregation=m.aggregation.value, property=m.property))
    session.flush()
    for p in catalog.plans.values():
        session.merge(PlanRow(id=p.id, currency=p.currency, interval=p.interval.value,
                              definition=plan_to_dict(p)))
        session.flush()
        session.execute(delete(PlanMeterRow).where(col(PlanMeterRow.plan_id) == p.id))
        for meter_id in sorted(p.meters):
            session.add(PlanMeterRow(plan_id=p.id, meter_id=meter_id))
    for c in catalog.customers.values():
        session.merge(CustomerRow(id=c.id, entity_id=c.entity, draft_invoices=c.draft_invoices,
                                  email=c.email))
    session.flush()


def stored(session: Session) -> Catalog:
    """The stored entities and meters (what a catalog file may refer to)."""
    return Catalog(entities={e.id: e for e in entities(session)}, meters=meters(session))


def _entity(row: EntityRow) -> Entity:
    delivery = parse_delivery(row.delivery, "delivery") if row.delivery else None
    return Entity(row.id, row.timezone, row.invoice_prefix, delivery)


def entity(session: Session, entity_id: str) -> Entity | None:
    row = session.get(EntityRow, entity_id)
    return None if row is None else _entity(row)


def entities(session: Session) -> list[Entity]:
    rows = session.scalars(select(EntityRow).order_by(col(EntityRow.id)))
    return [_entity(r) for r in rows]


def meters(session: Session) -> dict[str, Meter]:
    return {
        r.id: Meter(r.id, Aggregation(r.aggregation), r.property)
        for r in session.scalars(select(MeterRow))
    }


def plan(session: Session, plan_id: str) -> Plan | None:
    row = session.get(PlanRow, plan_id)
    return None if row is None else parse_plan(row.definition, f"plans[{plan_id}]")


def plans(session: Session, ids: Collection[str]) -> dict[str, Plan]:
    rows = session.scalars(select(PlanRow).where(col(PlanRow.id).in_(sorted(ids))))
    return {r.id: parse_plan(r.definition, f"plans[{r.id}]") for r in rows}


def customers(session: Session, ids: Collection[str]) -> dict[str, Customer]:
    result: dict[str, Customer] = {}
    wanted = sorted(ids)
    for start in range(0, len(wanted), 500):
        stmt = select(CustomerRow).where(col(CustomerRow.id).in_(wanted[start:start + 500]))
        result.update((r.id, Customer(r.id, r.entity_id, r.draft_invoices, r.email))
                      for r in session.scalars(stmt))
    return result


def customer(session: Session, customer_id: str, *, lock: bool = False) -> Customer | None:
    row = session.get(CustomerRow, customer_id, with_for_update=lock)
    return None if row is None else Customer(row.id, row.entity_id, row.draft_invoices,
                                             row.email)


def known_ids(session: Session, model: type[CustomerRow] | type[MeterRow],
              ids: Iterable[object]) -> set[str]:
    """Which of ``ids`` exist (anything not a string does not). Ids found once are
    remembered for the process (catalog items are never deleted)."""
    wanted = {i for i in ids if isinstance(i, str)}
    remembered = db.known().setdefault(model.__name__, set())
    found = wanted & remembered
    chunk = sorted(wanted - remembered)
    for start in range(0, len(chunk), 500):
        part = chunk[start:start + 500]
        column = col(model.id)
        new = set(session.scalars(select(column).where(column.in_(part))))
        remembered.update(new)
        found.update(new)
    return found


def set_draft_invoices(session: Session, customer_id: str, value: bool) -> bool:
    """Whether the customer exists (and now has the setting)."""
    result = session.execute(
        update(CustomerRow).where(col(CustomerRow.id) == customer_id)
        .values(draft_invoices=value)
    )
    return rowcount(result) > 0
