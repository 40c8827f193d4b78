"""The catalog: entities, meters, plans with their charges, and customers (SPEC §1, §5).

``parse_catalog`` reads the YAML/JSON shape of a scenario or ``catalog apply`` file and
refuses a broken one with an ``Invalid`` that names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from domain.filters import (
    DEFAULT_GROUP,
    FILTER_ID,
    Filter,
    check_filters,
    match_to_dict,
    parse_match,
)
from domain.money import parse_currency
from domain.parties import BUYER, SELLER, Party, parse_party
from domain.periods import Interval, zone
from domain.taxes import TaxRate, optional_tax_ids, parse_tax_rates
from domain.units import Unit, parse_unit
from domain.validation import Fields, Invalid, describe


class Aggregation(StrEnum):
    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    MIN = "min"
    LAST = "last"
    AVERAGE = "average"
    UNIQUE_COUNT = "unique_count"


class Model(StrEnum):
    UNIT = "unit"
    PACKAGE = "package"
    GRADUATED = "graduated"
    VOLUME = "volume"
    BANDS = "bands"


CHANNELS = ("webhook", "email", "outbox", "none")


@dataclass(frozen=True)
class Delivery:
    """How an entity's sent invoices are delivered (None on the entity: the deployment's
    default). ``webhook``: POST to ``url`` signed with ``secret``; ``email``: to the
    customer's address, from ``sender``; ``outbox``: files in ``directory``; ``none``."""

    channel: str
    url: str | None = None
    secret: str | None = None
    sender: str | None = None
    directory: str | None = None

    def to_dict(self) -> dict[str, str]:
        d = {"channel": self.channel, "url": self.url, "secret": self.secret,
             "from": self.sender, "directory": self.directory}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Entity:
    id: str
    timezone: str
    invoice_prefix: str
    delivery: Delivery | None = None
    taxes: tuple[str, ...] = ()  # the tax rates its invoices carry by default (SPEC §15)
    profile: Party = field(default_factory=Party)  # the seller on its invoices (parties.py)


@dataclass(frozen=True)
class Meter:
    id: str
    aggregation: Aggregation
    property: str | None = None
    unit: Unit | None = None  # how quantities and prices are written (domain/units.py)


@dataclass(frozen=True)
class Tier:
    """A tier of a graduated or volume price, or a band (then ``unit_price`` is 0 and
    ``flat_price`` is the band's price). ``up_to`` None means no upper bound."""

    up_to: Decimal | None
    unit_price: Decimal = Decimal(0)
    flat_price: Decimal = Decimal(0)


@dataclass(frozen=True)
class RecurringCharge:
    id: str
    amount: Decimal
    taxes: tuple[str, ...] | None = None  # its own tax rates (SPEC §15); None: names none


@dataclass(frozen=True)
class UsageCharge:
    id: str
    meter: str
    model: Model
    unit_price: Decimal = Decimal(0)
    package_size: Decimal = Decimal(1)
    package_price: Decimal = Decimal(0)
    tiers: tuple[Tier, ...] = ()
    included: Decimal = Decimal(0)
    minimum: Decimal | None = None
    cap: Decimal | None = None
    taxes: tuple[str, ...] | None = None  # its own tax rates (SPEC §15); None: names none
    filters: tuple[Filter, ...] = ()  # prices by dimension (SPEC §13)

    @property
    def groups(self) -> tuple[tuple[str, UsageCharge], ...]:
        """Its groups with their price: the default group (this charge's own price, id
        DEFAULT_GROUP), then each filter. A charge without filters has none."""
        if not self.filters:
            return ()
        return ((DEFAULT_GROUP, self), *((f.id, f.pricing) for f in self.filters))


Charge = RecurringCharge | UsageCharge


@dataclass(frozen=True)
class Plan:
    id: str
    currency: str
    interval: Interval
    charges: tuple[Charge, ...]

    @property
    def recurring_charges(self) -> tuple[RecurringCharge, ...]:
        return tuple(c for c in self.charges if isinstance(c, RecurringCharge))

    @property
    def usage_charges(self) -> tuple[UsageCharge, ...]:
        return tuple(c for c in self.charges if isinstance(c, UsageCharge))

    @property
    def meters(self) -> frozenset[str]:
        return frozenset(c.meter for c in self.usage_charges)


@dataclass(frozen=True)
class Customer:
    id: str
    entity: str
    # A catalog file that does not name draft_invoices leaves a stored customer's setting
    # alone (None); a new customer then gets False.
    draft_invoices: bool | None = False
    email: str | None = None
    taxes: tuple[str, ...] | None = None  # its own tax rates (SPEC §15); None: names none
    tax_exempt: bool = False
    details: Party = field(default_factory=Party)  # the buyer on its invoices (parties.py)


@dataclass(frozen=True)
class Catalog:
    entities: Mapping[str, Entity] = field(default_factory=dict)
    meters: Mapping[str, Meter] = field(default_factory=dict)
    plans: Mapping[str, Plan] = field(default_factory=dict)
    customers: Mapping[str, Customer] = field(default_factory=dict)
    taxes: Mapping[str, TaxRate] = field(default_factory=dict)  # SPEC §15


def parse_entity(data: Any, path: str, taxes: Mapping[str, object] | None = None) -> Entity:
    f = Fields(data, path)
    entity_id = f.text("id")
    tz = f.text("timezone")
    try:
        zone(tz)
    except Invalid as exc:
        raise Invalid(f.at("timezone"), exc.message) from None
    # YAML 1.1 reads an unquoted NO as false: a false prefix counts as not given (the
    # default applies), which is what the shared scenarios expect. Quote it to use it.
    prefix = entity_id.upper()
    if f.data.get("invoice_prefix") is False:
        f.raw("invoice_prefix")
    elif f.has("invoice_prefix"):
        prefix = f.text("invoice_prefix")
    delivery = parse_delivery(f.raw("delivery"), f.at("delivery")) if f.has("delivery") else None
    rates = optional_tax_ids(f, taxes) or ()
    profile = parse_party(f, SELLER)
    f.check_unknown()
    return Entity(entity_id, tz, prefix, delivery, rates, profile)


def parse_delivery(data: Any, path: str) -> Delivery:
    f = Fields(data, path)
    channel = f.choice("channel", CHANNELS)
    url = secret = sender = directory = None
    if channel == "webhook":
        url = f.text("url", max_length=2000)
        if not url.startswith(("https://", "http://")):
            f.fail("url", f"must be an http(s) URL, got {describe(url)}")
        if "@" in urlsplit(url).netloc:
            f.fail("url", "must not carry a user or password (user:password@): sign with "
                          "`secret` instead")
        secret = f.text("secret", max_length=500)
    elif channel == "email":
        sender = f.optional_text("from")
        if sender is not None and "@" not in sender:
            f.fail("from", f"must be an email address, got {describe(sender)}")
    elif channel == "outbox":
        directory = f.optional_text("directory")
    f.check_unknown()
    return Delivery(channel, url, secret, sender, directory)


def parse_meter(data: Any, path: str) -> Meter:
    f = Fields(data, path)
    meter_id = f.text("id")
    aggregation = Aggregation(f.choice("aggregation", [a.value for a in Aggregation]))
    prop = f.optional_text("property")
    if aggregation is Aggregation.UNIQUE_COUNT and prop is None:
        f.fail("property", "is required for aggregation unique_count")
    if aggregation is not Aggregation.UNIQUE_COUNT and prop is not None:
        f.fail("property", "is only used by aggregation unique_count")
    unit = None if f.raw("unit") is None else parse_unit(f.raw("unit"), f.at("unit"))
    f.check_unknown()
    return Meter(meter_id, aggregation, prop, unit)


def _parse_tiers(f: Fields, name: str, *, bands: bool) -> tuple[Tier, ...]:
    tiers: list[Tier] = []
    entries = list(f.items(name))
    if not entries:
        f.fail(name, "must have at least one entry")
    previous: Decimal | None = None
    for index, (path, item) in enumerate(entries):
        t = Fields(item, path)
        raw_up_to = t.raw("up_to")
        last = index == len(entries) - 1
        if "up_to" not in t.data:
            t.fail("up_to", "is required (null for the last, unbounded one)")
        up_to: Decimal | None = None
        if raw_up_to is None:
            if not last:
                t.fail("up_to", "only the last entry may be null (unbounded)")
        else:
            up_to = t.decimal("up_to")
            if last:
                t.fail("up_to", "the last entry must be null (unbounded)")
            if previous is not None and up_to <= previous:
                t.fail("up_to", f"must be greater than the previous up_to ({previous})")
            previous = up_to
        if bands:
            tiers.append(Tier(up_to, flat_price=t.decimal("price")))
        else:
            tiers.append(
                Tier(
                    up_to,
                    unit_price=t.decimal("unit_price"),
                    flat_price=t.optional_decimal("flat_price") or Decimal(0),
                )
            )
        t.check_unknown()
    return tuple(tiers)


def parse_charge(data: Any, path: str, meters: Mapping[str, Meter] | None,
                 taxes: Mapping[str, object] | None = None) -> Charge:
    f = Fields(data, path)
    charge_id = f.text("id")
    kind = f.choice("type", ["recurring", "usage"])
    rates = optional_tax_ids(f, taxes)
    if kind == "recurring":
        charge: Charge = RecurringCharge(charge_id, f.decimal("amount"), rates)
        f.check_unknown()
        return charge
    meter = f.text("meter")
    if meters is not None and meter not in meters:
        f.fail("meter", f"{describe(meter)} is not a known meter")
    charge = _parse_pricing(f, charge_id, meter, rates)
    if f.raw("filters") is not None:
        filters = [(p, _parse_filter(item, p, charge)) for p, item in f.items("filters")]
        check_filters([flt for _, flt in filters], [p for p, _ in filters])
        charge = replace(charge, filters=tuple(flt for _, flt in filters))
    f.check_unknown()
    return charge


def _parse_pricing(f: Fields, charge_id: str, meter: str,
                   rates: tuple[str, ...] | None) -> UsageCharge:
    """A usage price (SPEC §5): the model with its parameters, included, minimum, cap."""
    model = Model(f.choice("model", [m.value for m in Model]))
    common: dict[str, Any] = {
        "included": f.optional_decimal("included") or Decimal(0),
        "minimum": f.optional_decimal("minimum"),
        "cap": f.optional_decimal("cap"),
        "taxes": rates,
    }
    if model is Model.UNIT:
        return UsageCharge(charge_id, meter, model, unit_price=f.decimal("unit_price"), **common)
    if model is Model.PACKAGE:
        size = f.decimal("package_size")
        if size <= 0:
            f.fail("package_size", "must be greater than 0")
        return UsageCharge(charge_id, meter, model, package_size=size,
                           package_price=f.decimal("package_price"), **common)
    if model is Model.BANDS:
        return UsageCharge(charge_id, meter, model, tiers=_parse_tiers(f, "bands", bands=True),
                           **common)
    return UsageCharge(charge_id, meter, model, tiers=_parse_tiers(f, "tiers", bands=False),
                       **common)


def _parse_filter(data: Any, path: str, charge: UsageCharge) -> Filter:
    """A filter of a usage charge (SPEC §13): its id, its match, its own price. Its lines
    carry its charge's tax rates: a filter names none."""
    f = Fields(data, path)
    filter_id = f.text("id")
    if not FILTER_ID.match(filter_id):
        f.fail("id", f"must be letters, digits, - and _, got {describe(filter_id)}")
    if "taxes" in f.data:
        f.fail("taxes", "a filter takes its charge's tax rates and names none")
    match = parse_match(f.required("match"), f.at("match"))
    pricing = _parse_pricing(f, filter_id, charge.meter, charge.taxes)
    f.check_unknown()
    return Filter(filter_id, match, pricing)


def parse_plan(data: Any, path: str, meters: Mapping[str, Meter] | None = None,
               taxes: Mapping[str, object] | None = None) -> Plan:
    f = Fields(data, path)
    plan_id = f.text("id")
    currency = parse_currency(f.required("currency"), f.at("currency"))
    interval = Interval(f.choice("interval", [i.value for i in Interval]))
    charges: list[Charge] = []
    seen: set[str] = set()
    for charge_path, item in f.items("charges"):
        charge = parse_charge(item, charge_path, meters, taxes)
        if charge.id in seen:
            raise Invalid(charge_path + ".id", f"duplicate charge id {charge.id!r}")
        seen.add(charge.id)
        charges.append(charge)
    f.check_unknown()
    return Plan(plan_id, currency, interval, tuple(charges))


def parse_customer(data: Any, path: str, entities: Mapping[str, Entity] | None,
                   taxes: Mapping[str, object] | None = None) -> Customer:
    f = Fields(data, path)
    customer_id = f.text("id")
    entity = f.text("entity")
    if entities is not None and entity not in entities:
        f.fail("entity", f"{describe(entity)} is not a known entity")
    draft = None if f.data.get("draft_invoices") is None else f.boolean(
        "draft_invoices", default=False)
    email = f.optional_text("email")
    if email is not None and ("@" not in email or any(c in email for c in " \r\n,;<>")):
        f.fail("email", f"must be one email address, got {describe(email)}")
    rates = optional_tax_ids(f, taxes)
    exempt = f.boolean("tax_exempt", default=False)
    details = parse_party(f, BUYER)
    f.check_unknown()
    return Customer(customer_id, entity, draft, email, rates, exempt, details)


def _unique(items: list[Any], kind: str, paths: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item, path in zip(items, paths, strict=True):
        if item.id in result:
            raise Invalid(path + ".id", f"duplicate {kind} id {item.id!r}")
        result[item.id] = item
    return result


def parse_catalog(data: Mapping[str, Any], path: str = "", known: Catalog | None = None) -> Catalog:
    """The catalog part of a scenario or catalog file (its other keys are left alone).
    Plans may charge, and customers belong to, items of ``known`` (what is stored) too."""
    f = Fields(data, path, "a mapping with entities, meters, plans and customers")
    parsed: dict[str, dict[str, Any]] = {}
    parsed["taxes"] = parse_tax_rates(f.items("taxes", required=False))
    taxes = {**(known.taxes if known else {}), **parsed["taxes"]}
    entity_list = [(p, parse_entity(d, p, taxes))
                   for p, d in f.items("entities", required=False)]
    parsed["entities"] = _unique([e for _, e in entity_list], "entity", [p for p, _ in entity_list])
    meter_list = [(p, parse_meter(d, p)) for p, d in f.items("meters", required=False)]
    parsed["meters"] = _unique([m for _, m in meter_list], "meter", [p for p, _ in meter_list])
    meters = {**(known.meters if known else {}), **parsed["meters"]}
    entities = {**(known.entities if known else {}), **parsed["entities"]}
    plan_list = [(p, parse_plan(d, p, meters, taxes))
                 for p, d in f.items("plans", required=False)]
    parsed["plans"] = _unique([x for _, x in plan_list], "plan", [p for p, _ in plan_list])
    customer_list = [
        (p, parse_customer(d, p, entities, taxes))
        for p, d in f.items("customers", required=False)
    ]
    parsed["customers"] = _unique(
        [c for _, c in customer_list], "customer", [p for p, _ in customer_list]
    )
    return Catalog(**parsed)


def _pricing_to_dict(c: UsageCharge) -> dict[str, Any]:
    def dec(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    d: dict[str, Any] = {"model": c.model.value}
    if c.model is Model.UNIT:
        d["unit_price"] = dec(c.unit_price)
    elif c.model is Model.PACKAGE:
        d["package_size"] = dec(c.package_size)
        d["package_price"] = dec(c.package_price)
    elif c.model is Model.BANDS:
        d["bands"] = [{"up_to": dec(t.up_to), "price": dec(t.flat_price)} for t in c.tiers]
    else:
        d["tiers"] = [
            {"up_to": dec(t.up_to), "unit_price": dec(t.unit_price),
             "flat_price": dec(t.flat_price)}
            for t in c.tiers
        ]
    if c.included:
        d["included"] = dec(c.included)
    for name in ("minimum", "cap"):
        if getattr(c, name) is not None:
            d[name] = dec(getattr(c, name))
    return d


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan in the catalog file's shape, with exact decimals as strings, so that
    ``parse_plan(plan_to_dict(p)) == p``. This is how a plan is stored."""

    def dec(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    charges: list[dict[str, Any]] = []
    for c in plan.charges:
        if isinstance(c, RecurringCharge):
            charges.append({"id": c.id, "type": "recurring", "amount": dec(c.amount)})
            if c.taxes is not None:
                charges[-1]["taxes"] = list(c.taxes)
            continue
        d = {"id": c.id, "type": "usage", "meter": c.meter, **_pricing_to_dict(c)}
        if c.taxes is not None:
            d["taxes"] = list(c.taxes)
        if c.filters:
            d["filters"] = [{"id": f.id, "match": match_to_dict(f.match),
                             **_pricing_to_dict(f.pricing)} for f in c.filters]
        charges.append(d)
    return {
        "id": plan.id, "currency": plan.currency, "interval": plan.interval.value,
        "charges": charges,
    }
