"""Reading and writing the catalog: entities, meters, versioned plans, customers, and the
customers' draft settings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, func, select, union, update
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
from domain.parties import Party
from domain.taxes import TaxPolicy, TaxRate
from domain.units import Unit
from domain.validation import UNSTORABLE
from persistence import db, rollups
from persistence.billruns import bump_catalog_revision
from persistence.sql import insert_ignore, is_postgres
from persistence.tables import (
    CatalogRevisionRow,
    CustomerRow,
    DraftSettingRow,
    EntityRow,
    InvoiceRow,
    MeterRow,
    PlanChangeRow,
    PlanMeterRow,
    PlanRow,
    PlanVersionRow,
    SubscriptionRow,
    TaxRateRow,
)

PlanKey = tuple[str, int]  # (plan id, version)


# ---------------------------------------------------------------------------- entities


def _entity(row: EntityRow) -> Entity:
    delivery = parse_delivery(row.delivery, "delivery") if row.delivery else None
    return Entity(row.id, row.timezone, row.invoice_prefix, delivery, tuple(row.taxes or ()),
                  Party.from_dict(row.profile))


def entity(session: Session, entity_id: str, *, share: bool = False) -> Entity | None:
    """The entity; ``share``: share-locked until the commit, so that its time zone cannot
    change under what is computed from it (a subscribe, a bill run's plan)."""
    row = session.get(EntityRow, entity_id, with_for_update={"read": True} if share else None,
                      populate_existing=share)
    return None if row is None else _entity(row)


def entities(session: Session) -> list[Entity]:
    rows = session.scalars(select(EntityRow).order_by(col(EntityRow.id)))
    return [_entity(r) for r in rows]


def save_entity(session: Session, e: Entity) -> None:
    """Create or update an entity; schedulers see the change (the catalog's revision)."""
    stored = session.get(EntityRow, e.id)
    if stored is None or stored.timezone != e.timezone:
        bump_catalog_revision(session)
    session.merge(EntityRow(id=e.id, timezone=e.timezone, invoice_prefix=e.invoice_prefix,
                            delivery=e.delivery.to_dict() if e.delivery else None,
                            taxes=list(e.taxes) or None, profile=e.profile.to_dict() or None))


def entity_invoice_count(session: Session, entity_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(InvoiceRow).where(
        col(InvoiceRow.entity_id) == entity_id)) or 0)


def entity_subscriptions_moved_on(session: Session, entity_id: str) -> int:
    """Subscriptions of the entity that a bill run has moved past a boundary — with an
    invoice, or without one (the opening boundary of a usage-only plan, a period with
    nothing to invoice)."""
    S = SubscriptionRow
    return int(session.scalar(select(func.count()).select_from(S).where(
        col(S.entity_id) == entity_id, col(S.next_k) > 0)) or 0)


# ---------------------------------------------------------------------------- meters


def meters(session: Session) -> dict[str, Meter]:
    return {
        r.id: Meter(r.id, Aggregation(r.aggregation), r.property,
                    None if r.unit_name is None else Unit(r.unit_name, r.unit_per or Decimal(1)))
        for r in session.scalars(select(MeterRow))
    }


def save_meter(session: Session, m: Meter) -> None:
    session.merge(MeterRow(id=m.id, aggregation=m.aggregation.value, property=m.property,
                           unit_name=m.unit.name if m.unit else None,
                           unit_per=m.unit.per if m.unit else None))


def meter_subscription_count(session: Session, meter_id: str) -> int:
    """Subscriptions charged for ``meter_id``: by the plan version they were sold on, or
    by one a plan change moves them to (SPEC §14) — counted once each."""
    S, PM, PC = SubscriptionRow, PlanMeterRow, PlanChangeRow
    sold: Select[tuple[str]] = select(col(S.id).label("id")).join(
        PM, (col(PM.plan_id) == col(S.plan_id)) & (col(PM.version) == col(S.plan_version))
    ).where(col(PM.meter_id) == meter_id)
    changed: Select[tuple[str]] = select(col(PC.subscription_id).label("id")).join(
        PM, (col(PM.plan_id) == col(PC.plan_id)) & (col(PM.version) == col(PC.plan_version))
    ).where(col(PM.meter_id) == meter_id)
    charged = union(sold, changed).subquery()
    return int(session.scalar(select(func.count()).select_from(charged)) or 0)


# ---------------------------------------------------------------------------- plans


def _plan(row: PlanVersionRow) -> Plan:
    return parse_plan(row.definition, f"plans[{row.plan_id}] version {row.version}")


def latest_plans(session: Session, ids: Collection[str] | None = None
                 ) -> dict[str, tuple[int, Plan]]:
    """The latest version of each plan (of ``ids``, or all): id -> (version, plan)."""
    P, V = PlanRow, PlanVersionRow
    stmt = select(V).join(P, (col(P.id) == col(V.plan_id))
                          & (col(P.latest_version) == col(V.version)))
    if ids is not None:
        stmt = stmt.where(col(P.id).in_(sorted(ids)))
    return {r.plan_id: (r.version, _plan(r)) for r in session.scalars(stmt)}


def latest_plan(session: Session, plan_id: str) -> tuple[int, Plan] | None:
    return latest_plans(session, [plan_id]).get(plan_id)


def plan(session: Session, plan_id: str, version: int) -> Plan | None:
    row = session.get(PlanVersionRow, (plan_id, version))
    return None if row is None else _plan(row)


def plans(session: Session, keys: Collection[PlanKey]) -> dict[PlanKey, Plan]:
    """Plan versions by (id, version)."""
    result: dict[PlanKey, Plan] = {}
    for plan_id, version in sorted(set(keys)):
        found = plan(session, plan_id, version)
        if found is not None:
            result[(plan_id, version)] = found
    return result


def plan_versions(session: Session) -> list[PlanVersionRow]:
    stmt = select(PlanVersionRow).order_by(col(PlanVersionRow.plan_id),
                                           col(PlanVersionRow.version))
    return list(session.scalars(stmt))


def add_plan_version(session: Session, p: Plan, now: datetime) -> int:
    """Store ``p`` as the next version of its plan (1 for a new plan); that version."""
    row = session.get(PlanRow, p.id, with_for_update=True)
    version = 1 if row is None else row.latest_version + 1
    if row is None:
        session.add(PlanRow(id=p.id, latest_version=version))
    else:
        row.latest_version = version
    session.flush()
    session.add(PlanVersionRow(plan_id=p.id, version=version, currency=p.currency,
                               interval=p.interval.value, definition=plan_to_dict(p),
                               created_at=now))
    session.flush()
    session.add_all(PlanMeterRow(plan_id=p.id, version=version, meter_id=m)
                    for m in sorted(p.meters))
    session.flush()
    keys: dict[str, dict[str, set[str]]] = {}  # SPEC §13: what the rollups must be keyed by
    for charge in p.usage_charges:
        for name, values in rollups.filter_keys(charge.filters).items():
            keys.setdefault(charge.meter, {}).setdefault(name, set()).update(values)
    rollups.want_keys(session, keys)
    return version


def subscriptions_per_version(session: Session) -> dict[PlanKey, int]:
    S = SubscriptionRow
    stmt = select(col(S.plan_id), col(S.plan_version), func.count()).group_by(
        col(S.plan_id), col(S.plan_version))
    return {(p, v): int(n) for p, v, n in session.execute(stmt)}


# ---------------------------------------------------------------------------- customers


def _customer(row: CustomerRow) -> Customer:
    return Customer(row.id, row.entity_id, row.draft_invoices, row.email,
                    None if row.taxes is None else tuple(row.taxes), row.tax_exempt,
                    Party.from_dict(row.details))


def customers(session: Session, ids: Collection[str] | None = None) -> dict[str, Customer]:
    if ids is None:
        stmt = select(CustomerRow).order_by(col(CustomerRow.id))
        return {r.id: _customer(r) for r in session.scalars(stmt)}
    result: dict[str, Customer] = {}
    wanted = sorted(ids)
    for start in range(0, len(wanted), 500):
        stmt = select(CustomerRow).where(col(CustomerRow.id).in_(wanted[start:start + 500]))
        result.update((r.id, _customer(r)) for r in session.scalars(stmt))
    return result


def customer(session: Session, customer_id: str, *, lock: bool = False) -> Customer | None:
    """The customer; ``lock``: locked until the commit (commands for one customer one at a
    time) — for no-key update, so that a foreign key's check (an invoice inserted for the
    customer by a bill run holding its subscription) never waits for it: a cancel holding
    the customer and waiting for the subscription cannot deadlock with that run."""
    row = session.get(CustomerRow, customer_id,
                      with_for_update={"key_share": True} if lock else None,
                      populate_existing=lock)
    return None if row is None else _customer(row)


def save_customer(session: Session, c: Customer) -> None:
    """Create or update a customer; its draft setting is not touched here (see
    ``add_draft_setting``)."""
    row = session.get(CustomerRow, c.id)
    taxes = None if c.taxes is None else list(c.taxes)
    if row is None:
        session.add(CustomerRow(id=c.id, entity_id=c.entity, email=c.email,
                                draft_invoices=bool(c.draft_invoices), taxes=taxes,
                                tax_exempt=c.tax_exempt, details=c.details.to_dict() or None))
    else:
        row.entity_id, row.email = c.entity, c.email
        row.taxes, row.tax_exempt = taxes, c.tax_exempt
        row.details = c.details.to_dict() or None
    session.flush()


def customer_subscription_count(session: Session, customer_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(SubscriptionRow).where(
        col(SubscriptionRow.customer_id) == customer_id)) or 0)


def add_draft_setting(session: Session, customer_id: str, value: bool,
                      sent_at: datetime) -> None:
    """Record a draft setting sent at ``sent_at``; the customer's current setting becomes
    the latest one sent (ties: the one processed last)."""
    session.add(DraftSettingRow(customer_id=customer_id, sent_at=sent_at, value=value))
    session.flush()
    D = DraftSettingRow
    latest = session.scalars(select(col(D.value)).where(col(D.customer_id) == customer_id)
                             .order_by(col(D.sent_at).desc(), col(D.id).desc()).limit(1)).one()
    session.execute(update(CustomerRow).where(col(CustomerRow.id) == customer_id)
                    .values(draft_invoices=latest))


def drafts_at(session: Session, customer_ids: Collection[str], at: datetime) -> dict[str, bool]:
    """Each customer's draft setting in force at ``at``: the latest sent by then (before
    its first setting, the first one). A customer without settings has False."""
    D = DraftSettingRow
    result: dict[str, bool] = {c: False for c in customer_ids}
    wanted = sorted(customer_ids)
    for start in range(0, len(wanted), 500):
        stmt = select(col(D.customer_id), col(D.sent_at), col(D.value)).where(
            col(D.customer_id).in_(wanted[start:start + 500])).order_by(
            col(D.customer_id), col(D.sent_at), col(D.id))
        first: set[str] = set()
        for customer_id, sent_at, value in session.execute(stmt):
            if customer_id not in first or sent_at <= at:
                result[customer_id] = value
                first.add(customer_id)
    return result


# ---------------------------------------------------------------------------- locks

# What a catalog change checks before it changes something ("has invoices", "has
# subscriptions", "is charged") is checked under a lock of the rows it changes that the
# command it guards against takes too — in one order everywhere: the catalog's revision
# row (catalog changes one at a time), customers, entities, meters, subscriptions, each in
# id order (then a plan whose version is added). A subscribe takes its customer, entity
# and meters in that order; a plan change its customer, entity, the new plan's meters and
# then its subscription; a bill run its subscriptions. See docs/decisions.md, "Check,
# then act".


def lock_catalog(session: Session) -> None:
    """Catalog changes one at a time (two that create one customer, entity or plan would
    otherwise both find it missing): the catalog's revision row, locked until the commit
    (PostgreSQL; SQLite has one writer)."""
    if not is_postgres(session):
        return
    R = CatalogRevisionRow
    session.execute(insert_ignore(session, R, "id").values(id=1, revision=0))
    session.execute(select(col(R.id)).where(col(R.id) == 1).with_for_update())


def _lock(session: Session, model: type[CustomerRow] | type[EntityRow] | type[MeterRow],
          ids: Iterable[str], *, share: bool = False) -> None:
    """Lock these rows (those that exist) in id order until the commit: for no-key update
    (what changing them takes; a foreign key's check still passes), or shared."""
    if not is_postgres(session):
        return
    wanted = sorted(set(ids))
    column = col(model.id)
    for start in range(0, len(wanted), 500):
        stmt = select(column).where(column.in_(wanted[start:start + 500])).order_by(column)
        session.execute(stmt.with_for_update(read=True) if share
                        else stmt.with_for_update(key_share=True))


def lock_customers(session: Session, ids: Iterable[str]) -> None:
    _lock(session, CustomerRow, ids)


def lock_entities(session: Session, ids: Iterable[str]) -> None:
    _lock(session, EntityRow, ids)


def lock_meters(session: Session, ids: Iterable[str], *, share: bool = False) -> None:
    _lock(session, MeterRow, ids, share=share)


# ---------------------------------------------------------------------------- any


def stored(session: Session) -> Catalog:
    """The stored entities, meters and tax rates (what a catalog file may refer to)."""
    return Catalog(entities={e.id: e for e in entities(session)}, meters=meters(session),
                   taxes=tax_rates(session))


# ---------------------------------------------------------------------------- taxes


def tax_rates(session: Session) -> dict[str, TaxRate]:
    rows = session.scalars(select(TaxRateRow).order_by(col(TaxRateRow.id)))
    return {r.id: TaxRate(r.id, r.rate) for r in rows}


def save_tax_rate(session: Session, rate: TaxRate, now: datetime) -> None:
    session.merge(TaxRateRow(id=rate.id, rate=rate.rate, updated_at=now))


def tax_policies(session: Session, customer_ids: Collection[str]) -> dict[str, TaxPolicy]:
    """What decides the tax rates of these customers' invoices (SPEC §15)."""
    rates = {r.id: r.rate for r in tax_rates(session).values()}
    found = customers(session, customer_ids)
    entity_taxes = {e.id: e.taxes for e in entities(session)
                    if e.id in {c.entity for c in found.values()}}
    return {c.id: TaxPolicy(rates, entity_taxes.get(c.entity, ()), c.taxes, c.tax_exempt)
            for c in found.values()}


def known_ids(session: Session, model: type[CustomerRow] | type[MeterRow],
              ids: Iterable[object]) -> set[str]:
    """Which of ``ids`` exist (anything not a string does not). Ids found once are
    remembered for the process (catalog items are never deleted)."""
    remembered = db.known().setdefault(model.__name__, set())
    given = {i for i in ids if isinstance(i, str)}
    found = given & remembered  # the common case: all of them, without a look at each
    # an id that could not be stored (too long, NUL, a lone surrogate) exists nowhere
    chunk = sorted(i for i in given - remembered
                   if 0 < len(i) <= 255 and UNSTORABLE.search(i) is None)
    for start in range(0, len(chunk), 500):
        part = chunk[start:start + 500]
        column = col(model.id)
        new = set(session.scalars(select(column).where(column.in_(part))))
        remembered.update(new)
        found.update(new)
    return found


def customer_counts(session: Session, ids: Collection[str] | None = None
                    ) -> dict[str, tuple[int, int]]:
    """(subscriptions, invoices) of each customer, counted in the database."""
    subs = select(col(SubscriptionRow.customer_id), func.count()).group_by(
        col(SubscriptionRow.customer_id))
    invs = select(col(InvoiceRow.customer_id), func.count()).group_by(
        col(InvoiceRow.customer_id))
    if ids is not None:
        subs = subs.where(col(SubscriptionRow.customer_id).in_(sorted(ids)))
        invs = invs.where(col(InvoiceRow.customer_id).in_(sorted(ids)))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for customer_id, n in session.execute(subs):
        counts[customer_id][0] = n
    for customer_id, n in session.execute(invs):
        counts[customer_id][1] = n
    return {c: (v[0], v[1]) for c, v in counts.items()}
