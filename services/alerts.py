"""Spend and usage alerts (docs/billing-rules.md §19): create, list, delete — and
evaluate, set-wise, the alerts of the customers whose usage was just folded.

Evaluation follows the fold on PostgreSQL: ``evaluate_folded`` takes the customers (with
alerts) of the batches folded since it last looked (``alert_state``), prices their current
periods with the estimate (``invoicing.compute_many``, reading the rollups), and records
each threshold crossed as a unique ``(alert, subscription, period, threshold)`` row with
one ``alert.triggered`` event per evaluation that crossed any — in one transaction, so a
repeated or concurrent evaluation fires nothing twice and a crash fires nothing lost (the
state moves on only after). On SQLite (nothing folds) and in replays the ingest of a batch
evaluates its customers instead (``after_ingest``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.orm import Session

from domain import alerts as rules
from domain.invoices import next_boundary_after
from domain.money import format_money
from domain.periods import midnight
from domain.validation import Invalid, check_text
from persistence import alerts as alerts_repo
from persistence import catalog as catalog_repo
from persistence import db
from persistence import subscriptions as subs_repo
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.sql import is_postgres
from persistence.tables import AlertCrossingRow, AlertEventRow, AlertRow, SubscriptionRow
from persistence.usage import Period
from services import credits, invoicing
from services.commands import Outcome, applied, invalid, not_found, refused, unchanged
from services.outages import is_infrastructure

log = structlog.get_logger("billing")
EVENT = "alert.triggered"
CHUNK = 500  # customers evaluated per transaction
PARALLEL = 3  # transactions at once


def thresholds_of(row: AlertRow) -> rules.Thresholds:
    return rules.Thresholds(tuple(Decimal(t) for t in row.thresholds), row.recurring_step)


def document(row: AlertRow) -> dict[str, Any]:
    return {"id": row.id, "customer": row.customer_id, "subscription": row.subscription_id,
            "kind": row.kind, "meter": row.meter_id, "currency": row.currency,
            "thresholds": list(row.thresholds),
            "recurring_step": None if row.recurring_step is None else str(row.recurring_step),
            "created_at": row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


# ---------------------------------------------------------------------------- commands


def do_create(session: Session, now: datetime, data: Any) -> Outcome:
    """Create an alert; refused, naming the field, when the input breaks a rule or names
    an unknown customer, subscription (of another customer) or meter, or a taken id."""
    try:
        request = rules.parse_alert(data)
    except Invalid as exc:
        return invalid(exc)
    if catalog_repo.customer(session, request.customer) is None:
        return not_found(f"{request.customer!r} is not a known customer", "customer")
    if request.subscription is not None:
        sub = subs_repo.get(session, request.subscription)
        if sub is None or sub.customer_id != request.customer:
            return not_found(f"{request.subscription!r} is not a subscription of "
                             f"{request.customer!r}", "subscription")
    if request.meter is not None and request.meter not in catalog_repo.meters(session):
        return not_found(f"{request.meter!r} is not a known meter", "meter")
    row = AlertRow(id=request.id, customer_id=request.customer,
                   subscription_id=request.subscription, kind=request.kind,
                   meter_id=request.meter, currency=request.currency,
                   thresholds=[str(t) for t in request.thresholds.values],
                   recurring_step=request.thresholds.step, created_at=now)
    if not alerts_repo.add(session, row):
        return refused(f"alert id {request.id!r} is taken", "conflict", "id")
    return applied(f"alert {request.id} on {request.subscription or request.customer}")


def do_delete(session: Session, now: datetime, alert_id: Any) -> Outcome:
    if not isinstance(alert_id, str) or not alert_id:
        return refused(f"must be an alert id, got {alert_id!r}", "invalid", "alert")
    try:
        check_text(alert_id, "alert")
    except Invalid as exc:
        return invalid(exc)
    row = alerts_repo.get(session, alert_id)
    if row is None or row.deleted_at is not None:
        return not_found(f"{alert_id!r} is not a known alert", "alert")
    if not alerts_repo.mark_deleted(session, alert_id, now):
        return unchanged(f"{alert_id} was deleted already")
    return applied(f"alert {alert_id} deleted")


def get(alert_id: str) -> dict[str, Any] | None:
    with unit_of_work() as session:
        row = alerts_repo.get(session, alert_id)
        if row is None or row.deleted_at is not None:
            return None
        return document(row)


def listing(*, customer: str | None = None,
            subscription: str | None = None) -> list[dict[str, Any]]:
    with unit_of_work() as session:
        return [document(r) for r in alerts_repo.listing(session, customer=customer,
                                                         subscription=subscription)]


def events(*, alert_id: str | None = None, customer: str | None = None,
           limit: int = 1000) -> list[AlertEventRow]:
    with unit_of_work() as session:
        return alerts_repo.events(session, alert_id=alert_id, customer=customer, limit=limit)


# ---------------------------------------------------------------------------- evaluating


@dataclass(frozen=True)
class Current:
    """A subscription's current period at the evaluation instant."""

    row: SubscriptionRow
    k: int
    start: date
    end: date


def _current(session: Session, rows: Sequence[SubscriptionRow], now: datetime
             ) -> dict[str, tuple[Current, Any, Any]]:
    """(current period, plan, entity) of each subscription that has one at ``now``."""
    found: dict[str, tuple[Current, Any, Any]] = {}
    entities: dict[str, Any] = {}
    plans = catalog_repo.plans(session, {(r.plan_id, r.plan_version) for r in rows})
    for row in rows:
        try:
            plan = plans.get((row.plan_id, row.plan_version)) or invoicing.plan_of(session, row)
            if row.entity_id not in entities:
                entities[row.entity_id] = catalog_repo.entity(session, row.entity_id)
            entity = entities[row.entity_id]
            terms = invoicing.terms_of(row, plan)
            k, end = next_boundary_after(terms, entity.timezone, now)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            log.warning("alert: subscription not evaluated", subscription=row.id,
                        reason=str(exc))
            continue
        if k < 1 or (row.end is not None and end > row.end):
            continue
        found[row.id] = (Current(row, k, terms.boundary(k - 1), end), plan, entity)
    return found


def _amounts(session: Session, wanted: Sequence[tuple[Current, Any, Any]]
             ) -> dict[str, Decimal]:
    """The estimated usage amount of each subscription's current period (SPEC §10: the
    usage lines of that period, before discount; adjustment lines for late usage of closed
    periods are not in it), set-wise per entity."""
    by_entity: dict[str, list[tuple[Current, Any, Any]]] = defaultdict(list)
    for item in wanted:
        by_entity[item[2].id].append(item)
    result: dict[str, Decimal] = {}
    for items in by_entity.values():
        entity = items[0][2]
        composed = invoicing.compute_many(
            session, entity, [invoicing.ToCompose(c.row, plan, c.k) for c, plan, _ in items],
            estimate=True)
        for (current, _, _), computed in zip(items, composed, strict=True):
            if isinstance(computed, Exception):
                log.warning("alert: estimate failed", subscription=current.row.id,
                            reason=str(computed))
                continue
            lines = computed.invoice.lines if computed.invoice is not None else ()
            result[current.row.id] = sum(
                (ln.amount for ln in lines if ln.type == "usage"
                 and current.start <= ln.period_start and ln.period_end <= current.end),
                Decimal(0))
    return result


def _quantities(session: Session, wanted: Sequence[tuple[Current, Any, Any, str]]
                ) -> dict[tuple[str, str], Decimal]:
    """One meter's usage (its aggregation) in each subscription's current period."""
    meters = catalog_repo.meters(session)
    groups: dict[Period, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for current, _, entity, meter in wanted:
        period = Period(midnight(current.start, entity.timezone),
                        midnight(current.end, entity.timezone))
        groups[period][0].add(current.row.customer_id)
        groups[period][1].add(meter)
    totals = {period: usage_repo.aggregate_many(session, period, customers,
                                                [meters[m] for m in sorted(ids)],
                                                rolled_up=True)
              for period, (customers, ids) in groups.items()}
    result: dict[tuple[str, str], Decimal] = {}
    for current, _, entity, meter in wanted:
        period = Period(midnight(current.start, entity.timezone),
                        midnight(current.end, entity.timezone))
        result[(current.row.id, meter)] = totals[period][(current.row.customer_id, meter)]
    return result


def evaluate(session: Session, customers: Collection[str], now: datetime, *,
             balances_only: bool = False) -> list[int]:
    """Evaluate every live alert of ``customers`` at ``now`` (their rows locked until the
    commit) — or only their balance alerts; the ``alert.triggered`` events recorded, to
    deliver after the commit."""
    pairs = alerts_repo.to_evaluate(  # (alert, a subscription it watches, or None)
        session, customers, now, lock=True,
        no_subscription=rules.KINDS if balances_only else rules.DECREASING)
    if balances_only:
        pairs = [(a, s) for a, s in pairs if a.kind in rules.DECREASING]
    alerts = list({a.id: a for a, _ in pairs}.values())
    if not alerts:
        return []
    subs = sorted({s.id: s for _, s in pairs if s is not None}.values(), key=lambda r: r.id)
    current = _current(session, subs, now)
    targets: list[tuple[AlertRow, str]] = [  # (alert, subscription)
        (a, s.id) for a, s in pairs
        if s is not None and a.kind not in rules.DECREASING and s.id in current]
    amounts = _amounts(session, [current[s] for s in sorted(
        {s for a, s in targets if a.kind == "usage_amount"})])
    quantities = _quantities(session, [(*current[s], a.meter_id) for a, s in targets
                                       if a.kind == "usage_quantity" and a.meter_id])
    scopes = {(a.id, s, rules.period_key(current[s][0].start)) for a, s in targets}
    scopes |= {(a.id, "", "") for a in alerts if a.kind in rules.DECREASING}
    fired = alerts_repo.fired(session, scopes)
    fires: list[Fire] = []
    for a, sub_id in targets:
        c = current[sub_id][0]
        value = amounts.get(sub_id) if a.kind == "usage_amount" else \
            quantities.get((sub_id, a.meter_id or ""))
        if value is None:
            continue
        scope = (a.id, sub_id, rules.period_key(c.start))
        state = fired.get(scope)
        of = thresholds_of(a)
        crossing = rules.increasing(value, of, rules.Fired(
            frozenset(state.fixed) if state else frozenset(), state.recurring if state else 0))
        if not crossing:
            continue
        # every listed threshold crossed, and the highest recurring ones (the highest
        # number is what the next evaluation reads of them)
        rows = [(t, 0) for t in crossing.fixed] + [
            (of.recurring(n), n) for n in range(
                max(crossing.recurring_from, crossing.recurring_to - rules.MAX_LISTED + 1),
                crossing.recurring_to + 1)]
        fires.append(Fire(a, scope, rows, crossing.count, value,
                          {"subscription": sub_id, "period": {
                              "start": c.start.isoformat(), "end": c.end.isoformat()}}))
    balance_alerts = [a for a in alerts if a.kind in rules.DECREASING]
    for a in balance_alerts:
        balance = credits.balances(session, a.customer_id, now).get(a.currency or "",
                                                                    Decimal(0))
        scope = (a.id, "", "")
        state = fired.get(scope)
        new, rearmed = rules.decreasing(balance, thresholds_of(a),
                                        state.fixed if state else set())
        alerts_repo.rearm(session, scope, rearmed)
        if new:
            fires.append(Fire(a, scope, [(t, 0) for t in new], len(new),
                              format_money(balance, a.currency or "XXX"),
                              {"subscription": None, "currency": a.currency}))
    return _fire(session, fires, now)


@dataclass(frozen=True)
class Fire:
    """What one evaluation found an alert crossed in one scope."""

    alert: AlertRow
    scope: alerts_repo.Scope
    rows: list[tuple[Decimal, int]]  # (threshold, recurring number or 0)
    count: int  # how many were crossed (rows holds at most the 100 highest)
    value: Decimal | str
    extra: dict[str, Any]


def _fire(session: Session, fires: Sequence[Fire], now: datetime) -> list[int]:
    """Record the crossings set-wise and, per scope, one event for those this evaluation
    inserted (a concurrent evaluation that recorded one first fired it)."""
    if not fires:
        return []
    inserted = alerts_repo.record_crossings(
        session, [(f.scope, t, n, Decimal(f.value)) for f in fires for t, n in f.rows], now)
    events: list[tuple[str, dict[str, Any]]] = []
    for f in fires:
        mine = sorted(t for t, _ in f.rows if (*f.scope, t) in inserted)
        if not mine:
            continue
        events.append((f.alert.id, {
            "alert": f.alert.id, "customer": f.alert.customer_id, "kind": f.alert.kind,
            **({"meter": f.alert.meter_id} if f.alert.meter_id else {}), **f.extra,
            "thresholds": [str(t) for t in mine],
            "thresholds_crossed": f.count - (len(f.rows) - len(mine)),
            "value": str(f.value), "evaluated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    ids = alerts_repo.add_events(session, EVENT, events, now)
    for event_id, (alert, payload) in zip(ids, events, strict=True):
        log.debug("alert triggered", alert=alert, subscription=payload["subscription"],
                  thresholds=payload["thresholds"], value=payload["value"],
                  alert_event=event_id)
    if events:
        log.info("alerts triggered", events=len(events))
    return ids


def evaluate_customers(customers: Collection[str], now: datetime, *,
                       balances_only: bool = False) -> list[int]:
    """``evaluate`` in transactions of its own, ``CHUNK`` customers each; on PostgreSQL
    several chunks at once (``PARALLEL``): they touch disjoint alerts, and most of a
    chunk's time is spent waiting on the database."""
    wanted = sorted(set(customers))
    chunks = [wanted[start:start + CHUNK] for start in range(0, len(wanted), CHUNK)]

    def one(chunk: list[str]) -> list[int]:
        with unit_of_work() as session:
            return evaluate(session, chunk, now, balances_only=balances_only)

    if len(chunks) <= 1 or db.engine().dialect.name != "postgresql":  # SQLite: one writer
        return [i for chunk in chunks for i in one(chunk)]
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(chunks)),
                            thread_name_prefix="alerts") as pool:
        return [i for ids in pool.map(one, chunks) for i in ids]


def evaluate_folded(now: datetime) -> list[int]:
    """Evaluate the alerts of the customers whose usage was folded since the last time
    (PostgreSQL), and move ``alert_state`` on to what is folded. A crash before the state
    moves evaluates those customers again: their crossings are recorded, so nothing fires
    twice. The events recorded, to deliver."""
    with unit_of_work() as session:
        if not is_postgres(session):
            return []
        after = alerts_repo.lock_state(session)
        upto = alerts_repo.folded(session)
        if upto <= after:
            return []
        customers = alerts_repo.customers_folded(session, after, upto) \
            if alerts_repo.any_live(session) else []
        if not customers:
            alerts_repo.set_state(session, upto)
            return []
    recorded = evaluate_customers(customers, now)
    with unit_of_work() as session:
        if alerts_repo.lock_state(session) == after:
            alerts_repo.set_state(session, upto)
    return recorded


def after_ingest(raw_events: Any, now: datetime) -> list[int]:
    """Where nothing folds (SQLite): evaluate the alerts of a batch's customers right after
    it is stored. (A replay also evaluates every customer after each step.)"""
    if db.engine().dialect.name == "postgresql":  # there the fold evaluates
        return []
    if not isinstance(raw_events, list):
        raw_events = [raw_events]
    customers = {e.get("customer") for e in raw_events if isinstance(e, dict)}
    wanted = {c for c in customers if isinstance(c, str)}
    if not wanted:
        return []
    with unit_of_work() as session:
        if not alerts_repo.any_live(session):
            return []
    return evaluate_customers(wanted, now)


@dataclass(frozen=True)
class Banner:
    """A threshold crossed in the current period (a balance: one it is still below)."""

    alert: str
    kind: str
    subscription: str | None
    threshold: Decimal
    value: Decimal
    meter: str | None = None
    currency: str | None = None


def banners(customer: str, now: datetime) -> list[Banner]:
    """For the portal: per alert (and subscription), the highest threshold crossed in the
    subscription's current period at ``now``; per balance alert, the lowest threshold the
    balance is below."""
    with unit_of_work() as session:
        found = alerts_repo.listing(session, customer=customer)
        if not found:
            return []
        rows = alerts_repo.crossings(session, [a.id for a in found])
        current = _current(session, alerts_repo.live_subscriptions(session, [customer], now),
                           now)
    by_id = {a.id: a for a in found}
    best: dict[tuple[str, str], AlertCrossingRow] = {}
    for r in rows:
        a = by_id[r.alert_id]
        held = best.get((r.alert_id, r.subscription_id))
        if a.kind in rules.DECREASING:  # the lowest the balance is below
            keep = held is None or r.threshold < held.threshold
        else:  # the highest crossed in the current period
            now_period = current.get(r.subscription_id)
            if now_period is None or rules.period_key(now_period[0].start) != r.period:
                continue
            keep = held is None or r.threshold > held.threshold
        if keep:
            best[(r.alert_id, r.subscription_id)] = r
    return [Banner(r.alert_id, by_id[r.alert_id].kind, r.subscription_id or None,
                   r.threshold, r.value, by_id[r.alert_id].meter_id,
                   by_id[r.alert_id].currency or (current[r.subscription_id][1].currency
                                                  if r.subscription_id in current else None))
            for r in sorted(best.values(), key=lambda r: (r.alert_id, r.subscription_id))]


def evaluate_balances(now: datetime) -> list[int]:
    """The balance alerts of every customer that has one: a balance moves when invoices
    are sent, grants voided or expired — not with usage — so the scheduler looks at each
    wake (``BILLING_TICK_SECONDS``)."""
    with unit_of_work() as session:
        customers = alerts_repo.customers_with_alerts(session, kinds=rules.DECREASING)
    return evaluate_customers(customers, now, balances_only=True)


def evaluate_all(now: datetime) -> list[int]:
    """Every customer with alerts (``billing alerts evaluate``, replays after a bill run:
    a balance moves when invoices are sent)."""
    with unit_of_work() as session:
        customers = alerts_repo.customers_with_alerts(session)
    return evaluate_customers(customers, now)
