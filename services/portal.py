"""The customer portal: signed links, and what the page shows a customer.

A link is ``{BILLING_PORTAL_URL}/portal/{token}``. The token is an HMAC-SHA256 signature
(itsdangerous, keyed by ``BILLING_PORTAL_SECRET``) over the link's id, its customer and
its expiry; the ``portal_links`` row lets an operator revoke it before then. A token is
refused — tampered, expired, revoked, or naming a customer that is not the link's — with
one reason, and never shows anything.

The page's numbers are the estimate (SPEC §10, ``services.invoicing.preview``): the same
function ``billing invoices preview`` and ``GET /v1/subscriptions/{id}/estimate`` use, so
the three always agree.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import Session

from domain.catalog import Aggregation, Meter, Plan, UsageCharge
from domain.documents import InvoiceRecord
from domain.invoices import ComposedInvoice, InvoiceStatus, Line
from domain.payments import PaymentStatus, overdue
from domain.periods import boundary, midnight, zone
from domain.plan_history import PlanHistory
from domain.units import Unit
from domain.validation import Invalid, check_text
from persistence import catalog as catalog_repo
from persistence import invoices as invoices_repo
from persistence import plan_changes as plan_changes_repo
from persistence import portal as portal_repo
from persistence import subscriptions as subs_repo
from persistence import usage as usage_repo
from persistence.db import snapshot, unit_of_work
from persistence.tables import PortalLinkRow, SubscriptionRow
from services import alerts, credits, invoicing
from services.delivery.render import (
    format_amount,
    format_in_unit,
    format_quantity,
    pricing_lines,
)
from services.settings import settings

SALT = "billing.portal.v1"
TTL = re.compile(r"^(\d{1,6})([smhd])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=90)


class Refused(Exception):
    """A token that shows nothing, with the reason the 403 page gives."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unavailable(Refused):
    """The portal is not set up (no BILLING_PORTAL_SECRET): no link can be checked."""


# ---------------------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    id: str
    customer: str
    url: str
    token: str
    created_at: datetime
    expires_at: datetime


def parse_ttl(text: str, field_name: str = "ttl") -> timedelta:
    """"12h", "30m", "7d", "90s": from 1 minute to 90 days."""
    match = TTL.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise Invalid(field_name, f"must be a number and s, m, h or d (e.g. 12h), got {text!r}")
    ttl = timedelta(seconds=int(match.group(1)) * SECONDS[match.group(2)])
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise Invalid(field_name, f"must be from 1m to 90d, got {text!r}")
    return ttl


def _serializer() -> URLSafeSerializer:
    secret = settings().portal_secret
    if not secret:
        raise Invalid("BILLING_PORTAL_SECRET",
                      "is not set: the portal's links are signed with it (any random text "
                      "of 16 characters or more, e.g. `openssl rand -hex 32`)")
    if len(secret) < 16:
        raise Invalid("BILLING_PORTAL_SECRET", "must be at least 16 characters")
    return URLSafeSerializer(secret, salt=SALT)


def link_id_of(seed: str | None) -> str:
    """A link's id, one shape however it is made (#27): ``link-`` and a UUID — from
    ``seed`` (an Idempotency-Key's command id: a retry gets the same link), else new."""
    made = uuid.uuid4() if seed is None else uuid.uuid5(uuid.NAMESPACE_URL, seed)
    return f"link-{made}"


def create_link(customer: str, ttl: str | None, now: datetime,
                link_id: str | None = None) -> Link:
    """A new link for ``customer`` that works until ``now + ttl`` (default
    ``BILLING_PORTAL_LINK_TTL``, 12 h) unless revoked. With ``link_id`` (derived from an
    Idempotency-Key) a retry gets the link the first request made."""
    check_text(customer, "customer")
    lifetime = parse_ttl(ttl if ttl is not None else settings().portal_link_ttl)
    serializer = _serializer()
    expires = (now + lifetime).replace(microsecond=0)
    with unit_of_work() as session:
        if catalog_repo.customer(session, customer) is None:
            raise Invalid("customer", f"{customer!r} is not a known customer")
        if link_id is None:
            row = PortalLinkRow(id=link_id_of(None), customer_id=customer,
                                created_at=now, expires_at=expires)
            portal_repo.add(session, row)
        else:  # the link of this key: made now, or by the same request before (or at once)
            row = portal_repo.add_once(session, PortalLinkRow(
                id=link_id, customer_id=customer, created_at=now, expires_at=expires))
            if row.customer_id != customer:
                raise Invalid("Idempotency-Key", "was used for a link of another customer")
        link = _link(serializer, row)
    return link


def _link(serializer: URLSafeSerializer, row: PortalLinkRow) -> Link:
    token = serializer.dumps({"l": row.id, "c": row.customer_id,
                              "e": int(row.expires_at.timestamp())})
    assert isinstance(token, str)
    url = f"{settings().portal_url.rstrip('/')}/portal/{token}"
    return Link(row.id, row.customer_id, url, token, row.created_at, row.expires_at)


def check_token(token: str, now: datetime) -> str:
    """The customer a token shows, or ``Refused`` with why not."""
    if len(token) > 2000:
        raise Refused("This link is not valid.")
    try:
        serializer = _serializer()
    except Invalid as exc:
        raise Unavailable(f"The billing portal is not available: {exc}") from None
    try:
        payload = serializer.loads(token)
    except BadSignature:
        raise Refused("This link is not valid: it was changed or cut short.") from None
    if not (isinstance(payload, dict) and isinstance(payload.get("l"), str)
            and isinstance(payload.get("c"), str) and isinstance(payload.get("e"), int)):
        raise Refused("This link is not valid.")
    if now.timestamp() >= payload["e"]:
        raise Refused("This link has expired. Ask for a new one.")
    with unit_of_work() as session:
        row = portal_repo.get(session, payload["l"])
    if row is None or row.customer_id != payload["c"]:
        raise Refused("This link is not valid.")
    if row.revoked_at is not None and row.revoked_at <= now:
        raise Refused("This link was revoked. Ask for a new one.")
    if now >= row.expires_at:
        raise Refused("This link has expired. Ask for a new one.")
    return row.customer_id


def revoke(*, link_id: str | None = None, customer: str | None = None, now: datetime) -> int:
    with unit_of_work() as session:
        return portal_repo.revoke(session, link_id=link_id, customer=customer, now=now)


def links(customer: str | None = None) -> list[PortalLinkRow]:
    with unit_of_work() as session:
        return portal_repo.listing(session, customer)


# ---------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Day:
    day: date
    value: Decimal


@dataclass(frozen=True)
class MeterView:
    meter: str
    charge: str
    aggregation: str
    quantity: str  # "12.5M tokens"
    amount: str  # "$23.00"
    pricing: tuple[str, ...]  # how it is priced, one line each
    chart_label: str  # "tokens per day" or "events per day"
    unit: Unit | None  # how the chart's values are written (None for event counts)
    days: tuple[Day, ...]
    quantity_value: Decimal = Decimal(0)
    amount_value: Decimal = Decimal(0)
    group: str | None = None  # SPEC §13: a filter's id, "" for the default group
    show_chart: bool = True  # the chart of a meter is shown once, with its first group
    segment: str = ""  # SPEC §14: "from 11 Mar on pro" when the plan changed in the period

    @property
    def label(self) -> str:
        """"tokens", or for a group of a charge with filters "tokens — large"."""
        name = self.meter if self.group is None else \
            f"{self.meter} — {self.group or 'default'}"
        return f"{name} ({self.segment})" if self.segment else name


@dataclass(frozen=True)
class SubscriptionEstimate:
    id: str
    plan: str
    plan_version: int
    currency: str
    period_start: date  # the open usage period, first day
    period_end: date  # exclusive
    invoice_date: date  # the boundary whose invoice this estimates
    period: str  # "2026-03-04 – 2026-04-03", both days included
    meters: tuple[MeterView, ...]
    recurring: tuple[tuple[str, str, str], ...]  # (charge, period, amount)
    adjustments: tuple[tuple[str, str, str, str], ...]  # (charge, period, quantity, amount)
    subtotal: str
    discount: str
    total: str
    total_value: Decimal = Decimal(0)
    discount_value: Decimal = Decimal(0)
    credits: str | None = None  # what the customer's prepaid credit would pay (SPEC §12)
    amount_due: str = ""
    taxes: tuple[tuple[str, str], ...] = ()  # ("Tax vat-de (19 %) on €42.49", "€8.07")
    # SPEC §14: ("base on pro, 21 of 31 days", "2026-03-11 – 2026-03-31", "€67.74")
    prorations: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class GrantItem:
    """A prepaid credit grant as the customer sees it, with its ledger."""

    id: str
    amount: str
    remaining: str
    state: str  # "usable", "used up", "expired", "voided", "usable from …"
    expires: str  # local date and time, or ""
    ledger: tuple[tuple[str, str], ...]  # (local date, amount) of each invoice it paid


@dataclass(frozen=True)
class InvoiceItem:
    reference: str  # its number: the portal's links name it
    number: str
    boundary: date
    total: str
    final: bool
    amount_due: str = ""
    due_date: date | None = None
    status: str = "sent"  # its payment status in words: open, paid, overdue, void, …


@dataclass(frozen=True)
class Page:
    customer: str
    entity: str
    timezone: str
    now_local: str
    subscriptions: tuple[SubscriptionEstimate, ...]
    invoices: tuple[InvoiceItem, ...]
    notes: tuple[str, ...] = field(default=())
    balances: tuple[tuple[str, str], ...] = ()  # (currency, balance) of prepaid credit
    grants: tuple[GrantItem, ...] = ()
    pending: tuple[PendingItem, ...] = ()  # due, not issued yet: before the estimates
    alerts: tuple[str, ...] = ()  # a banner per threshold crossed this period (billing-rules §19)


@dataclass(frozen=True)
class PendingItem:
    """An invoice due but not issued yet (its boundary passed; the next bill run issues
    it), with its amounts as that run would compute them now."""

    subscription: str
    boundary: date
    period: str
    final: bool
    total: str


def _period(start: date, end: date) -> str:
    last = end - timedelta(days=1)
    return f"{start.isoformat()} – {last.isoformat()}"


def _days(start: date, end: date, until: date) -> list[date]:
    """The days of [start, end) up to and including ``until`` (the chart stops today)."""
    days = []
    day = start
    while day < end and day <= until:
        days.append(day)
        day += timedelta(days=1)
    return days


def _estimate(composed: ComposedInvoice, subscription: str, plan: Plan, version: int,
              meters: dict[str, Meter], daily: dict[str, list[tuple[Decimal, int]]],
              days: list[date], history: PlanHistory) -> SubscriptionEstimate:
    currency = composed.currency

    def charge_of(line: Line) -> UsageCharge:  # as the plan of the line's segment has it
        segment_plan = history.in_force(line.period_start).plan
        return next(c for c in segment_plan.usage_charges if c.id == line.charge)

    charges = {c.id: c for c in plan.usage_charges}
    meter_views = []
    usage_lines = [ln for ln in composed.lines if ln.type == "usage"]
    full = (min(ln.period_start for ln in usage_lines),
            max(ln.period_end for ln in usage_lines)) if usage_lines else None
    for ln in usage_lines:
        charge = charge_of(ln)
        pricing = dict(charge.groups).get(ln.filter, charge) if ln.filter is not None \
            else charge
        meter = meters.get(charge.meter)
        unit = meter.unit if meter else None
        by_sum = meter is not None and meter.aggregation is Aggregation.SUM
        values = daily.get(charge.meter, [])
        chart = tuple(Day(d, (values[i][0] if by_sum else Decimal(values[i][1]))
                          if i < len(values) else Decimal(0)) for i, d in enumerate(days))
        label = "per day" if by_sum and unit else "units per day" if by_sum else "events per day"
        meter_views.append(MeterView(
            meter=charge.meter, charge=charge.id,
            aggregation=meter.aggregation.value if meter else "",
            quantity=format_in_unit(ln.quantity, unit),
            amount=format_amount(ln.amount, currency),
            pricing=pricing_lines(pricing, currency, unit), chart_label=label,
            unit=unit if by_sum else None, days=chart,
            quantity_value=ln.quantity, amount_value=ln.amount, group=ln.filter,
            show_chart=not ln.filter and (full is None or ln.period_start == full[0]),
            segment="" if full is None or (ln.period_start, ln.period_end) == full
            else f"{_period(ln.period_start, ln.period_end)}"))
    recurring = tuple((ln.charge, _period(ln.period_start, ln.period_end),
                       format_amount(ln.amount, currency))
                      for ln in composed.lines if ln.type == "recurring")
    adjustments = tuple(_adjustment(ln, meters, charges, currency)
                        for ln in composed.lines if ln.type == "adjustment")
    if full is None and composed.k >= 1:  # no usage line: the period the invoice closes
        full = (boundary(history.start.since, plan.interval, composed.k - 1),
                composed.boundary)
    period_start, period_end = full or (composed.lines[0].period_start,
                                        composed.lines[0].period_end)
    prorations = tuple(
        (f"{ln.charge} on {ln.plan}, {abs(ln.quantity)} of "
         f"{(period_end - period_start).days} days "
         f"{'credited' if ln.amount < 0 else 'charged'}",
         _period(ln.period_start, ln.period_end), format_amount(ln.amount, currency))
        for ln in composed.lines if ln.type == "proration")
    return SubscriptionEstimate(
        id=subscription, plan=plan.id, plan_version=version, currency=currency,
        period_start=period_start, period_end=period_end, invoice_date=composed.boundary,
        period=_period(period_start, period_end),
        meters=tuple(meter_views), recurring=recurring, adjustments=adjustments,
        subtotal=format_amount(composed.subtotal, currency),
        discount=format_amount(composed.discount, currency),
        total=format_amount(composed.total, currency), total_value=composed.total,
        discount_value=composed.discount,
        credits=format_amount(-composed.credits, currency) if composed.credits else None,
        amount_due=format_amount(composed.amount_due, currency), prorations=prorations,
        taxes=tuple((f"Tax {t.tax} ({format_quantity(t.rate)} %) on "
                     f"{format_amount(t.base, currency)}", format_amount(t.amount, currency))
                    for t in composed.taxes))


def _adjustment(ln: Line, meters: dict[str, Meter], charges: dict[str, UsageCharge],
                currency: str) -> tuple[str, str, str, str]:
    charge = charges.get(ln.charge)
    meter = meters.get(charge.meter) if charge else None
    label = ln.charge if ln.filter is None else f"{ln.charge} — {ln.filter or 'default'}"
    return (label, _period(ln.period_start, ln.period_end),
            format_in_unit(ln.quantity, meter.unit if meter else None),
            format_amount(ln.amount, currency))


def page(customer: str, now: datetime) -> Page:
    """Everything the portal shows ``customer`` at ``now`` — read in one snapshot
    (``persistence.db.snapshot``), so that each chart and its estimate count the same
    events, and the invoices, credits and pending invoices are of the same instant. The
    alert banners are read after it (``services.alerts``, a transaction of its own)."""
    with snapshot() as session:
        found = catalog_repo.customer(session, customer)
        if found is None:
            raise Invalid("customer", f"{customer!r} is not a known customer")
        entity = catalog_repo.entity(session, found.entity)
        assert entity is not None
        meters = catalog_repo.meters(session)
        rows = [r for r in subs_repo.listing(session, customer=customer)
                if (r.end_at is None or now < r.end_at) and r.start_at <= now]
        records = invoices_repo.records(session, customer=customer, status=InvoiceStatus.SENT)
        grant_views = credits.grant_views(session, now, customer=customer)
        balances = credits.balances(session, customer, now)
        estimates, notes = _estimates(session, customer, entity.timezone, rows, meters, now)
        waiting = tuple(
            PendingItem(p.subscription, p.invoice.boundary, _covered(p.invoice),
                        p.invoice.final, format_amount(p.invoice.total, p.invoice.currency))
            for p in invoicing.pending_of_customer_in(session, customer, now, latest=True))
    today = _local_date(now, entity.timezone)
    invoices = tuple(
        InvoiceItem(r.reference, r.number or r.reference, r.boundary,
                    format_amount(r.total, r.currency), r.final,
                    format_amount(r.amount_due, r.currency), r.due_date,
                    _payment_words(r.payment_status, r.due_date, today))
        for r in sorted(records, key=lambda r: (r.boundary, r.id), reverse=True))
    return Page(alerts=tuple(_banner(b) for b in alerts.banners(customer, now)),
                customer=customer, entity=entity.id, timezone=entity.timezone,
                now_local=_local_text(now, entity.timezone), subscriptions=tuple(estimates),
                invoices=invoices, notes=tuple(notes),
                balances=tuple((c, format_amount(b, c)) for c, b in balances.items()),
                grants=tuple(_grant_item(v, now, entity.timezone) for v in grant_views),
                pending=waiting)


def _estimates(session: Session, customer: str, tz: str, rows: list[SubscriptionRow],
               meters: dict[str, Meter], now: datetime
               ) -> tuple[list[SubscriptionEstimate], list[str]]:
    """Each live subscription's estimate (``invoicing.estimate_many``, set-wise) with its
    chart — the daily totals of its current period — in the caller's transaction; and a
    note for each that has none."""
    histories = plan_changes_repo.histories(session, rows)
    found = invoicing.estimate_many(session, rows, now, latest=True)
    today = _local_date(now, tz)
    estimates, notes = [], []
    for row in rows:
        history = histories[row.id]
        in_force = history.in_force(today)
        composed = found[row.id]
        if isinstance(composed, Invalid):
            notes.append(f"{row.id}: {composed.message}")
            continue
        if isinstance(composed, Exception):
            raise composed
        usage_lines = [ln for ln in composed.lines if ln.type == "usage"]
        days: list[date] = []
        daily: dict[str, list[tuple[Decimal, int]]] = {}
        if usage_lines:
            start = min(ln.period_start for ln in usage_lines)
            end = max(ln.period_end for ln in usage_lines)
            days = _days(start, end, today)
            if days:
                bounds = [midnight(d, tz) for d in days]
                bounds.append(midnight(days[-1] + timedelta(days=1), tz))
                daily = usage_repo.daily_totals(session, customer, history.meters(None),
                                                bounds)
        estimates.append(_estimate(composed, row.id, in_force.plan, in_force.version, meters,
                                   daily, days, history))
    return estimates, notes


def _covered(invoice: ComposedInvoice) -> str:
    """The days an invoice's lines cover, first to last."""
    if not invoice.lines:
        return ""
    return _period(min(ln.period_start for ln in invoice.lines),
                   max(ln.period_end for ln in invoice.lines))


def _banner(b: alerts.Banner) -> str:
    on = f" on {b.subscription}" if b.subscription else ""
    if b.kind == "credit_balance":
        currency = b.currency or ""
        return (f"Your prepaid credit is below {format_amount(b.threshold, currency)} "
                f"({format_amount(b.value, currency)} left).")
    if b.kind == "usage_quantity":
        return (f"Your {b.meter} usage{on} passed {format_quantity(b.threshold)} this period "
                f"({format_quantity(b.value)} so far).")
    currency = b.currency or ""
    return (f"Your estimated usage charges{on} passed {format_amount(b.threshold, currency)} "
            f"this period ({format_amount(b.value, currency)} so far).")


def _payment_words(status: str | None, due: date | None, today: date) -> str:
    if status is None:
        return "sent"
    if overdue(PaymentStatus(status), due, today):
        return "overdue"
    return status.replace("_", " ")


def _grant_item(view: credits.GrantView, now: datetime, tz: str) -> GrantItem:
    g, state = view.grant, view.ledger
    if g.voided_at is not None and g.voided_at <= now:
        status = "voided"
    elif g.expires_at is not None and g.expires_at <= now:
        status = "expired"
    elif g.granted_at >= now:
        status = f"usable from {_local_text(g.granted_at, tz)}"
    else:
        status = "used up" if state.remaining <= 0 else "usable"
    return GrantItem(
        id=g.id, amount=format_amount(g.amount, g.currency),
        remaining=format_amount(state.remaining, g.currency), state=status,
        expires=_local_text(g.expires_at, tz) if g.expires_at else "",
        ledger=tuple((_local_text(at, tz)[:10], format_amount(amount, g.currency))
                     for at, amount in view.applications))


def invoice_of(customer: str, reference: str) -> InvoiceRecord | None:
    """A *sent* invoice of ``customer`` by its number (drafts are the operator's, not the
    customer's)."""
    with unit_of_work() as session:
        found = invoices_repo.records(session, number=reference) if reference else []
    if not found or found[0].customer != customer or found[0].status != InvoiceStatus.SENT:
        return None
    return found[0]


def timezone_of(entity_id: str) -> str | None:
    with unit_of_work() as session:
        entity = catalog_repo.entity(session, entity_id)
    return entity.timezone if entity else None


def _local_date(now: datetime, tz: str) -> date:
    return now.astimezone(zone(tz)).date()


def _local_text(now: datetime, tz: str) -> str:
    return now.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M")
