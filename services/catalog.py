"""Applying a catalog file over the stored catalog, safely (issue #8).

The terms a subscription was sold on never change under it:

- a **plan** that differs from its latest version becomes a new version; new subscriptions
  take it, existing ones keep the version they were created with;
- a change that would move an issued period or re-bill usage is **refused**, with a
  one-line reason: an entity's time zone once it has invoices or a bill run has moved one
  of its subscriptions past a boundary (with no invoice), a meter's aggregation or
  property once a subscription's plan (or a plan it changes to) charges it, a customer's
  entity once it has subscriptions;
- everything else (an invoice prefix, a delivery channel, an email, a draft setting named
  in the file, new items) is applied.

``diff`` says what ``apply`` would do, item by item; ``apply`` does it atomically, or
refuses the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from domain.catalog import Catalog, Customer, Entity, Meter, Plan, parse_catalog, plan_to_dict
from domain.periods import midnight
from domain.taxes import TaxRate
from domain.units import Unit
from domain.validation import Invalid
from persistence import catalog as catalog_repo
from persistence import plan_changes as plan_changes_repo
from persistence import subscriptions as subs_repo
from persistence.db import unit_of_work
from services import clock

NEW, CHANGED, UNCHANGED, REFUSED = "new", "changed", "unchanged", "refused"


@dataclass(frozen=True)
class Change:
    kind: str  # tax | entity | meter | plan | customer
    id: str
    action: str  # new | changed | unchanged | refused
    detail: str = ""
    path: str = ""  # where in the file (for a refusal)

    def line(self) -> str:
        text = f"{self.kind} {self.id}: {self.action}"
        return f"{text} — {self.detail}" if self.detail else text

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "action": self.action,
                "detail": self.detail, "path": self.path}


@dataclass(frozen=True)
class CatalogDiff:
    changes: list[Change] = field(default_factory=list)

    @property
    def refused(self) -> list[Change]:
        return [c for c in self.changes if c.action == REFUSED]

    def count(self, action: str) -> int:
        return sum(c.action == action for c in self.changes)


class CatalogRefused(Exception):
    """The file changes something that would re-price or re-period issued invoices."""

    def __init__(self, diff: CatalogDiff) -> None:
        first = diff.refused[0]
        where = f"{first.path}: " if first.path else ""
        more = f" (and {len(diff.refused) - 1} more)" if len(diff.refused) > 1 else ""
        super().__init__(f"{where}{first.detail}{more}")
        self.diff = diff


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Readable differences between two plan definitions (charges matched by id)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *[k for k in new if k not in old]]:
            if key == "id" and path:
                continue
            here = f"{path}.{key}" if path else str(key)
            if key == "charges" and isinstance(old.get(key), list):
                out += _charge_differences(old[key], new.get(key) or [], here)
            elif key not in new:
                out.append(f"{here}: removed")
            elif key not in old:
                out.append(f"{here}: added ({new[key]})")
            else:
                out += _differences(old[key], new[key], here)
        return out
    if old != new:
        return [f"{path}: {old} → {new}"]
    return []


def _charge_differences(old: list[Any], new: list[Any], path: str) -> list[str]:
    before = {c["id"]: c for c in old}
    after = {c["id"]: c for c in new}
    out: list[str] = []
    for charge_id in [*before, *[c for c in after if c not in before]]:
        here = f"{path}[{charge_id}]"
        if charge_id not in after:
            out.append(f"{here}: removed")
        elif charge_id not in before:
            out.append(f"{here}: added")
        else:
            out += _differences(before[charge_id], after[charge_id], here)
    return out


def _index(mapping: dict[str, Any] | Any, key: str) -> int:
    return list(mapping).index(key)


def _entity(session: Session, e: Entity, path: str) -> Change:
    stored = catalog_repo.entity(session, e.id)
    if stored is None:
        return Change("entity", e.id, NEW)
    if stored == e:
        return Change("entity", e.id, UNCHANGED)
    if stored.timezone != e.timezone:
        change = f"cannot change the time zone {stored.timezone} → {e.timezone}"
        issued = catalog_repo.entity_invoice_count(session, e.id)
        if issued:
            return Change("entity", e.id, REFUSED,
                          f"{change}: entity {e.id!r} has {issued} invoices, whose periods "
                          "would move", f"{path}.timezone")
        # a run that passed a boundary without an invoice (the opening one of a usage-only
        # plan) dealt with it at the old zone's instant: the period it opened, and which
        # ingests count as closing it, would move under usage already arriving
        moved_on = catalog_repo.entity_subscriptions_moved_on(session, e.id)
        if moved_on:
            return Change("entity", e.id, REFUSED,
                          f"{change}: a bill run has moved {moved_on} subscriptions of entity "
                          f"{e.id!r} past a boundary in {stored.timezone}, whose periods "
                          "would move", f"{path}.timezone")
    parts = [f"{name}: {getattr(stored, name)} → {getattr(e, name)}"
             for name in ("timezone", "invoice_prefix")
             if getattr(stored, name) != getattr(e, name)]
    if stored.delivery != e.delivery:
        parts.append("delivery changed")
    if stored.taxes != e.taxes:
        parts.append(f"taxes: {_rates(stored.taxes)} → {_rates(e.taxes)} (invoices computed "
                     "from now on)")
    if stored.profile != e.profile:
        parts.append("legal profile changed (invoices sent from now on)")
    return Change("entity", e.id, CHANGED, "; ".join(parts))


def _meter(session: Session, m: Meter, stored: Meter | None, path: str) -> Change:
    if stored is None:
        return Change("meter", m.id, NEW)
    if stored == m:
        return Change("meter", m.id, UNCHANGED)
    if (stored.aggregation, stored.property) == (m.aggregation, m.property):
        # a display unit changes how quantities are written, never what is billed
        def shown(u: Unit | None) -> str:
            return "none" if u is None else u.per_label
        return Change("meter", m.id, CHANGED, f"unit {shown(stored.unit)} → {shown(m.unit)}")
    what = (f"aggregation {stored.aggregation} → {m.aggregation}"
            if stored.aggregation != m.aggregation
            else f"property {stored.property} → {m.property}")
    charged = catalog_repo.meter_subscription_count(session, m.id)
    if charged:
        name = "aggregation" if stored.aggregation != m.aggregation else "property"
        return Change("meter", m.id, REFUSED,
                      f"cannot change the {what}: {charged} subscriptions are charged for "
                      f"meter {m.id!r}, whose usage would be billed differently",
                      f"{path}.{name}")
    return Change("meter", m.id, CHANGED, what)


def _plan(p: Plan, latest: tuple[int, Plan] | None, on_version: dict[tuple[str, int], int]
          ) -> Change:
    if latest is None:
        return Change("plan", p.id, NEW, "version 1")
    version, stored = latest
    if stored == p:
        return Change("plan", p.id, UNCHANGED, f"version {version}")
    staying = on_version.get((p.id, version), 0)
    what = "; ".join(_differences(plan_to_dict(stored), plan_to_dict(p))) or "changed"
    stay = f"; {staying} subscriptions stay on version {version}" if staying else ""
    return Change("plan", p.id, CHANGED, f"version {version} → {version + 1} ({what}){stay}")


def _customer(session: Session, c: Customer, path: str) -> Change:
    stored = catalog_repo.customer(session, c.id)
    if stored is None:
        return Change("customer", c.id, NEW)
    parts = []
    if stored.entity != c.entity:
        count = catalog_repo.customer_subscription_count(session, c.id)
        if count:
            return Change("customer", c.id, REFUSED,
                          f"cannot move customer {c.id!r} from entity {stored.entity!r} to "
                          f"{c.entity!r}: it has {count} subscriptions",
                          f"{path}.entity")
        parts.append(f"entity: {stored.entity} → {c.entity}")
    if stored.email != c.email:
        parts.append(f"email: {stored.email} → {c.email}")
    if c.draft_invoices is not None and c.draft_invoices != stored.draft_invoices:
        parts.append(f"draft_invoices: {stored.draft_invoices} → {c.draft_invoices}")
    if stored.details != c.details:
        parts.append("billing details changed (invoices sent from now on)")
    if (stored.taxes, stored.tax_exempt) != (c.taxes, c.tax_exempt):
        before = "exempt" if stored.tax_exempt else _rates(stored.taxes)
        after = "exempt" if c.tax_exempt else _rates(c.taxes)
        parts.append(f"taxes: {before} → {after} (invoices computed from now on)")
    return Change("customer", c.id, CHANGED if parts else UNCHANGED, "; ".join(parts))


def _rates(ids: tuple[str, ...] | None) -> str:
    return "the entity's" if ids is None else ", ".join(ids) or "none"


def _tax(rate: TaxRate, stored: TaxRate | None) -> Change:
    if stored is None:
        return Change("tax", rate.id, NEW, f"{rate.rate} %")
    if stored.rate == rate.rate:
        return Change("tax", rate.id, UNCHANGED)
    return Change("tax", rate.id, CHANGED, f"rate {stored.rate} % → {rate.rate} % (invoices "
                                          "computed from now on; issued ones keep theirs)")


def diff(session: Session, catalog: Catalog) -> CatalogDiff:
    """What applying ``catalog`` would change, item by item (nothing is written)."""
    stored_meters = catalog_repo.meters(session)
    latest = catalog_repo.latest_plans(session, list(catalog.plans))
    on_version = catalog_repo.subscriptions_per_version(session)
    stored_rates = catalog_repo.tax_rates(session)
    changes: list[Change] = [_tax(t, stored_rates.get(t.id)) for t in catalog.taxes.values()]
    changes += [_entity(session, e, f"entities[{_index(catalog.entities, e.id)}]")
                for e in catalog.entities.values()]
    changes += [_meter(session, m, stored_meters.get(m.id),
                       f"meters[{_index(catalog.meters, m.id)}]")
                for m in catalog.meters.values()]
    changes += [_plan(p, latest.get(p.id), on_version) for p in catalog.plans.values()]
    changes += [_customer(session, c, f"customers[{_index(catalog.customers, c.id)}]")
                for c in catalog.customers.values()]
    return CatalogDiff(changes)


def _lock_what_it_changes(session: Session, catalog: Catalog) -> None:
    """Take, before anything is checked, the locks that make each guard and its change one
    step against the commands they guard against (issue #20): the catalog (one change at
    a time), then the stored customers the file names (a subscribe locks its customer:
    "has subscriptions" cannot miss one), the stored entities and meters it changes (a
    subscribe share-locks its entity and its plan's meters: a new subscription cannot
    take the old zone or the old aggregation), and the subscriptions of an entity whose
    zone changes (a bill run locks the subscriptions it issues for: "has invoices" cannot
    miss one, and their instants are moved on rows read afresh); a plan it changes is
    locked when its version is added, after all of these. Always in that order, each in
    id order, as every other writer takes them (persistence/catalog.py, "locks"): nothing
    waits in a circle."""
    catalog_repo.lock_catalog(session)
    stored_customers = catalog_repo.customers(session, list(catalog.customers))
    catalog_repo.lock_customers(session, stored_customers)
    stored_entities = {e.id: e for e in catalog_repo.entities(session)}
    changed = [e for e in catalog.entities.values()
               if e.id in stored_entities and stored_entities[e.id] != e]
    catalog_repo.lock_entities(session, [e.id for e in changed])
    stored_meters = catalog_repo.meters(session)
    catalog_repo.lock_meters(session, [m.id for m in catalog.meters.values()
                                       if m.id in stored_meters and stored_meters[m.id] != m])
    for e in sorted(changed, key=lambda e: e.id):
        if stored_entities[e.id].timezone != e.timezone:
            subs_repo.of_entity(session, e.id, lock=True)


def apply(session: Session, catalog: Catalog, now: datetime) -> CatalogDiff:
    """Apply ``catalog`` in the session's transaction; ``CatalogRefused`` (and nothing
    written) when any change is refused. Every refusal is decided under the locks of
    ``_lock_what_it_changes``, so what it checks holds until the commit."""
    _lock_what_it_changes(session, catalog)
    result = diff(session, catalog)
    if result.refused:
        raise CatalogRefused(result)
    actions = {(c.kind, c.id): c.action for c in result.changes}
    for t in catalog.taxes.values():
        if actions[("tax", t.id)] != UNCHANGED:
            catalog_repo.save_tax_rate(session, t, now)
    for e in catalog.entities.values():
        if actions[("entity", e.id)] == UNCHANGED:
            continue
        previous = catalog_repo.entity(session, e.id)
        catalog_repo.save_entity(session, e)
        if previous is not None and previous.timezone != e.timezone:
            _move_subscriptions_to_zone(session, e)
    for m in catalog.meters.values():
        if actions[("meter", m.id)] != UNCHANGED:
            catalog_repo.save_meter(session, m)
    session.flush()
    for p in catalog.plans.values():
        if actions[("plan", p.id)] != UNCHANGED:
            catalog_repo.add_plan_version(session, p, now)
    for c in catalog.customers.values():
        if actions[("customer", c.id)] == UNCHANGED:
            continue
        new = actions[("customer", c.id)] == NEW
        catalog_repo.save_customer(session, c)
        if new or c.draft_invoices is not None:
            catalog_repo.add_draft_setting(session, c.id, bool(c.draft_invoices), now)
    session.flush()
    return result


def _move_subscriptions_to_zone(session: Session, e: Entity) -> None:
    """An entity moved to another zone before any bill run dealt with its subscriptions:
    their instants (all derived from local dates) follow — their plan changes' too. The
    changes are read after the subscriptions' locks, which a plan change takes before it
    stores one."""
    rows = subs_repo.of_entity(session, e.id, lock=True)  # locked already: afresh
    for row in rows:
        row.start_at = midnight(row.start, e.timezone)
        row.end_at = None if row.end is None else midnight(row.end, e.timezone)
        row.next_boundary_at = midnight(row.next_boundary, e.timezone)
        subs_repo.want_usage_rolled_up(session, row)
    for changes in plan_changes_repo.changes(session, [r.id for r in rows]).values():
        for change in changes:
            change.since_at = midnight(change.since, e.timezone)


def apply_document(data: Any, now: datetime | None = None) -> CatalogDiff:
    """Parse and apply a catalog document (a mapping) in a transaction of its own."""
    with unit_of_work() as session:
        catalog = parse_catalog(data, known=catalog_repo.stored(session))
        return apply(session, catalog, now or clock.now())


def customer(customer_id: str) -> Customer | None:
    """One customer as stored, or None."""
    with unit_of_work() as session:
        return catalog_repo.customer(session, customer_id)


def put_customer(customer_id: str, fields: dict[str, Any], now: datetime
                 ) -> tuple[Customer, bool]:
    """Create or update one customer (what ``PUT /v1/customers/{id}`` does), with the
    catalog's checks: ``fields`` are the catalog's customer fields (``entity``, ``email``,
    ``draft_invoices``, the billing details, ``taxes``, ``tax_exempt``); one that is
    omitted is cleared, except ``draft_invoices`` (unchanged). The customer, and whether it
    is new. ``Invalid`` or ``CatalogRefused`` when refused."""
    data: dict[str, Any] = {**fields, "id": customer_id}
    with unit_of_work() as session:
        catalog = parse_catalog({"customers": [data]}, known=catalog_repo.stored(session))
        result = apply(session, catalog, now)
        stored = catalog_repo.customer(session, customer_id)
        assert stored is not None
    return stored, result.count(NEW) == 1


CUSTOMER_FIELDS = ("entity", "email", "draft_invoices", "taxes", "tax_exempt", "legal_name",
                   "address", "tax_id", "net_terms", "locale")


def write_customer(customer_id: str, changes: dict[str, Any], now: datetime, *,
                   create: bool) -> Customer:
    """Create a customer (``create``) or change the fields of ``changes`` of a stored one,
    keeping every other field as it is (what ``billing customers create | update`` do),
    with the catalog's checks. ``Invalid`` or ``CatalogRefused`` when refused; ``LookupError``
    for a customer that exists (create) or does not (update)."""
    unknown = set(changes) - set(CUSTOMER_FIELDS)
    if unknown:
        raise Invalid(sorted(unknown)[0], "is not a field of a customer")
    with unit_of_work() as session:
        stored = catalog_repo.customer(session, customer_id)
        if create and stored is not None:
            raise LookupError(f"customer {customer_id!r} exists already (change it with "
                              "`billing customers update`)")
        if not create and stored is None:
            raise LookupError(f"{customer_id!r} is not a known customer (see `billing "
                              "customers list`)")
        data: dict[str, Any] = {"id": customer_id}
        if stored is not None:
            data.update({"entity": stored.entity, "tax_exempt": stored.tax_exempt,
                         **stored.details.to_dict()})
            if stored.email is not None:
                data["email"] = stored.email
            if stored.draft_invoices is not None:
                data["draft_invoices"] = stored.draft_invoices
            if stored.taxes is not None:
                data["taxes"] = list(stored.taxes)
        for name, value in changes.items():
            if value is None or value == []:
                data.pop(name, None)  # cleared (taxes: the entity's rates again)
            else:
                data[name] = value
        catalog = parse_catalog({"customers": [data]}, known=catalog_repo.stored(session))
        apply(session, catalog, now)
        written = catalog_repo.customer(session, customer_id)
        assert written is not None
    return written
