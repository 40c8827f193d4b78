"""Alerts, the thresholds they fired (``alert_crossings``), the outbox of
``alert.triggered`` (``alert_events``) and how far evaluation follows the fold
(``alert_state``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, text, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.db import _json
from persistence.sql import driver_cursor, insert_ignore, is_postgres
from persistence.tables import (
    AlertCrossingRow,
    AlertEventRow,
    AlertRow,
    AlertStateRow,
    SubscriptionRow,
)

A, C, V = AlertRow, AlertCrossingRow, AlertEventRow
CHUNK = 500


def add(session: Session, row: AlertRow) -> bool:
    """Store a new alert; False when its id is taken (by a live or a deleted one)."""
    stmt = insert_ignore(session, A, "id").values(
        id=row.id, customer_id=row.customer_id, subscription_id=row.subscription_id,
        kind=row.kind, meter_id=row.meter_id, currency=row.currency,
        thresholds=row.thresholds, recurring_step=row.recurring_step,
        created_at=row.created_at, deleted_at=None).returning(col(A.id))
    return session.execute(stmt).first() is not None


def get(session: Session, alert_id: str) -> AlertRow | None:
    return session.get(A, alert_id)


def listing(session: Session, *, customer: str | None = None,
            subscription: str | None = None) -> list[AlertRow]:
    stmt = select(A).where(col(A.deleted_at).is_(None)).order_by(col(A.id))
    if customer is not None:
        stmt = stmt.where(col(A.customer_id) == customer)
    if subscription is not None:
        stmt = stmt.where(col(A.subscription_id) == subscription)
    return list(session.scalars(stmt))


def mark_deleted(session: Session, alert_id: str, now: datetime) -> bool:
    result = session.execute(update(A).where(col(A.id) == alert_id,
                                             col(A.deleted_at).is_(None))
                             .values(deleted_at=now).returning(col(A.id)))
    return result.first() is not None


def any_live(session: Session) -> bool:
    return session.scalar(select(col(A.id)).where(col(A.deleted_at).is_(None))
                          .limit(1)) is not None


def of_customers(session: Session, customers: Collection[str], *,
                 lock: bool = False) -> list[AlertRow]:
    """The live alerts of these customers, by id; ``lock``: held until the commit (two
    evaluations of one alert take turns)."""
    found: list[AlertRow] = []
    wanted = sorted(set(customers))
    for start in range(0, len(wanted), CHUNK):
        stmt = select(A).where(col(A.customer_id).in_(wanted[start:start + CHUNK]),
                               col(A.deleted_at).is_(None)).order_by(col(A.id))
        if lock and is_postgres(session):
            stmt = stmt.with_for_update()
        found.extend(session.scalars(stmt))
    return sorted(found, key=lambda a: a.id)


def customers_with_alerts(session: Session, kinds: Collection[str] | None = None
                          ) -> list[str]:
    stmt = select(col(A.customer_id)).where(col(A.deleted_at).is_(None))
    if kinds is not None:
        stmt = stmt.where(col(A.kind).in_(list(kinds)))
    return list(session.scalars(stmt.distinct().order_by(col(A.customer_id))))


def live_subscriptions(session: Session, customers: Collection[str],
                       now: datetime) -> list[SubscriptionRow]:
    """The subscriptions of these customers started by ``now`` and not ended."""
    found: list[SubscriptionRow] = []
    wanted = sorted(set(customers))
    for start in range(0, len(wanted), CHUNK):
        stmt = select(SubscriptionRow).where(
            col(SubscriptionRow.customer_id).in_(wanted[start:start + CHUNK]),
            col(SubscriptionRow.start_at) <= now)
        found.extend(r for r in session.scalars(stmt) if r.end_at is None or now < r.end_at)
    return sorted(found, key=lambda r: r.id)


def to_evaluate(session: Session, customers: Collection[str], now: datetime, *,
                no_subscription: Collection[str] = (), lock: bool = False
                ) -> list[tuple[AlertRow, SubscriptionRow | None]]:
    """The live alerts of these customers, each with the subscriptions it watches at
    ``now`` — its own, or each of its customer's started by ``now`` and not ended — one
    (alert, subscription) pair each, (alert, None) for an alert that watches none (a
    kind in ``no_subscription`` — a balance alert —, or one whose subscription is not live): one
    joined query per ``CHUNK`` customers, by alert id then subscription id. ``lock``: the
    alerts held until the commit (two evaluations of one alert take turns)."""
    S = SubscriptionRow
    found: list[tuple[AlertRow, SubscriptionRow | None]] = []
    wanted = sorted(set(customers))
    watches = and_(col(S.customer_id) == col(A.customer_id),
                   or_(col(A.subscription_id).is_(None), col(S.id) == col(A.subscription_id)),
                   col(S.start_at) <= now)
    if no_subscription:
        watches = and_(watches, col(A.kind).not_in(list(no_subscription)))
    for start in range(0, len(wanted), CHUNK):
        stmt = (select(A, S).outerjoin(S, watches)
                .where(col(A.customer_id).in_(wanted[start:start + CHUNK]),
                       col(A.deleted_at).is_(None))
                .order_by(col(A.id), col(S.id)))
        if lock and is_postgres(session):
            stmt = stmt.with_for_update(of=A)
        for alert, sub in session.execute(stmt).all():
            ended = sub is not None and sub.end_at is not None and now >= sub.end_at
            found.append((alert, None if ended else sub))  # as ``live_subscriptions``
    return sorted(found, key=lambda p: (p[0].id, p[1].id if p[1] is not None else ""))


# ---------------------------------------------------------------------------- crossings

Scope = tuple[str, str, str]  # (alert, subscription or "", period or "")


@dataclass
class FiredRows:
    fixed: set[Decimal]
    recurring: int


def fired(session: Session, scopes: Collection[Scope]) -> dict[Scope, FiredRows]:
    """What each (alert, subscription, period) has fired so far."""
    result: dict[Scope, FiredRows] = defaultdict(lambda: FiredRows(set(), 0))
    by_alert: dict[str, set[Scope]] = defaultdict(set)
    for scope in scopes:
        by_alert[scope[0]].add(scope)
    alerts = sorted(by_alert)
    for start in range(0, len(alerts), CHUNK):
        stmt = select(col(C.alert_id), col(C.subscription_id), col(C.period),
                      col(C.threshold), col(C.recurring)).where(
            col(C.alert_id).in_(alerts[start:start + CHUNK]))
        for alert, sub, period, threshold, recurring in session.execute(stmt):
            scope = (alert, sub, period)
            if scope not in by_alert[alert]:
                continue
            entry = result[scope]
            if recurring:
                entry.recurring = max(entry.recurring, int(recurring))
            else:
                entry.fixed.add(Decimal(threshold))
    return dict(result)


CROSSINGS_INSERT = (
    "INSERT INTO alert_crossings (alert_id, subscription_id, period, threshold, recurring, "
    "value, crossed_at) SELECT a, s, p, t, n, v, %b FROM unnest(%b::text[], %b::text[], "
    "%b::text[], %b::numeric[], %b::int[], %b::numeric[]) AS u(a, s, p, t, n, v) "
    'ORDER BY a COLLATE "C", s COLLATE "C", p COLLATE "C", t '
    "ON CONFLICT (alert_id, subscription_id, period, threshold) DO NOTHING "
    "RETURNING alert_id, subscription_id, period, threshold"
)


def record_crossings(session: Session,
                     crossed: Sequence[tuple[Scope, Decimal, int, Decimal]],
                     now: datetime) -> set[tuple[str, str, str, Decimal]]:
    """Insert crossings — (scope, threshold, recurring number or 0, value) — set-wise;
    the (alert, subscription, period, threshold) of those inserted (a concurrent
    evaluation that recorded one first keeps it). On PostgreSQL one statement, the
    crossings as binary arrays; elsewhere an executemany per ``CHUNK``."""
    inserted: set[tuple[str, str, str, Decimal]] = set()
    if not crossed:
        return inserted
    if is_postgres(session):
        with driver_cursor(session) as cursor:
            cursor.execute(CROSSINGS_INSERT, (
                now, [a for (a, _, _), _, _, _ in crossed], [s for (_, s, _), _, _, _ in crossed],
                [p for (_, _, p), _, _, _ in crossed], [t for _, t, _, _ in crossed],
                [n for _, _, n, _ in crossed], [v for _, _, _, v in crossed]))
            inserted.update((a, s, p, Decimal(t)) for a, s, p, t in cursor.fetchall())
        return inserted
    for start in range(0, len(crossed), CHUNK):
        values = [{"alert_id": a, "subscription_id": s, "period": p, "threshold": t,
                   "recurring": n, "value": v, "crossed_at": now}
                  for (a, s, p), t, n, v in crossed[start:start + CHUNK]]
        stmt = insert_ignore(session, C, "alert_id", "subscription_id", "period",
                             "threshold").returning(
            col(C.alert_id), col(C.subscription_id), col(C.period), col(C.threshold))
        inserted.update((a, s, p, Decimal(t)) for a, s, p, t in session.execute(stmt, values))
    return inserted


def rearm(session: Session, scope: Scope, thresholds: Collection[Decimal]) -> None:
    """Forget that these thresholds fired (a balance back at or above them)."""
    if not thresholds:
        return
    alert, sub, period = scope
    session.execute(delete(C).where(col(C.alert_id) == alert, col(C.subscription_id) == sub,
                                    col(C.period) == period,
                                    col(C.threshold).in_(list(thresholds))))


def crossings(session: Session, alert_ids: Collection[str]) -> list[AlertCrossingRow]:
    wanted = sorted(set(alert_ids))
    found: list[AlertCrossingRow] = []
    for start in range(0, len(wanted), CHUNK):
        found.extend(session.scalars(select(C).where(
            col(C.alert_id).in_(wanted[start:start + CHUNK])).order_by(col(C.id))))
    return found


# ---------------------------------------------------------------------------- the outbox


EVENTS_INSERT = (
    "INSERT INTO alert_events (alert_id, type, payload, created_at, status, attempts, "
    "last_error, updated_at) SELECT a, %b, p::jsonb, %b, 'pending', 0, '', %b "
    "FROM unnest(%b::text[], %b::text[]) WITH ORDINALITY AS u(a, p, o) ORDER BY o "
    "RETURNING id"
)


def add_events(session: Session, kind: str, events: Sequence[tuple[str, dict[str, Any]]],
               now: datetime) -> list[int]:
    """Record events — (alert, payload) — to deliver after the commit; their ids, in
    order. On PostgreSQL one statement, the events as binary arrays (their ids are drawn
    in the order the rows are inserted, so sorted they are in the events' order)."""
    ids: list[int] = []
    if not events:
        return ids
    if is_postgres(session):
        with driver_cursor(session) as cursor:
            cursor.execute(EVENTS_INSERT, (kind, now, now, [a for a, _ in events],
                                           [_json(p) for _, p in events]))
            return sorted(int(row[0]) for row in cursor.fetchall())
    for start in range(0, len(events), CHUNK):
        stmt = insert(V).returning(col(V.id), sort_by_parameter_order=True)
        rows = session.execute(stmt, [
            {"alert_id": alert, "type": kind, "payload": payload, "created_at": now,
             "status": "pending", "attempts": 0, "last_error": "", "updated_at": now}
            for alert, payload in events[start:start + CHUNK]])
        ids.extend(int(str(row[0])) for row in rows)
    return ids


def claim_event(session: Session, event_id: int) -> AlertEventRow | None:
    """The event, locked for this attempt (PostgreSQL: one another worker holds is
    skipped)."""
    stmt = select(V).where(col(V.id) == event_id)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).first()


def stale_events(session: Session, older_than: datetime, limit: int = 1000) -> list[int]:
    stmt = (select(col(V.id)).where(col(V.status) == "pending", col(V.updated_at) < older_than)
            .order_by(col(V.id)).limit(limit))
    return list(session.scalars(stmt))


def events(session: Session, *, alert_id: str | None = None, customer: str | None = None,
           limit: int = 1000) -> list[AlertEventRow]:
    stmt = select(V).order_by(col(V.id)).limit(limit)
    if alert_id is not None:
        stmt = stmt.where(col(V.alert_id) == alert_id)
    if customer is not None:
        stmt = stmt.where(col(V.alert_id).in_(select(col(A.id)).where(
            col(A.customer_id) == customer)))
    return list(session.scalars(stmt))


# ---------------------------------------------------------------------------- following the fold


def lock_state(session: Session) -> int:
    """How far evaluation has followed the fold, locked until the commit (two schedulers'
    evaluations take turns)."""
    session.execute(insert_ignore(session, AlertStateRow, "id").values(id=1, evaluated=-1))
    stmt = select(col(AlertStateRow.evaluated)).where(col(AlertStateRow.id) == 1)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    return int(session.execute(stmt).scalar_one())


def set_state(session: Session, evaluated: int) -> None:
    session.execute(update(AlertStateRow).where(col(AlertStateRow.id) == 1)
                    .values(evaluated=evaluated))


def folded(session: Session) -> int:
    value = session.execute(text("SELECT folded FROM usage_fold_state WHERE id = 1")).scalar()
    return int(value) if value is not None else -1


CUSTOMERS_FOLDED = """
SELECT DISTINCT e.customer_id FROM usage_events AS e
WHERE e.batch_seq > :after AND e.batch_seq <= :upto
  AND e.customer_id IN (SELECT customer_id FROM alerts WHERE deleted_at IS NULL)
"""


def customers_folded(session: Session, after: int, upto: int) -> list[str]:
    """The customers with alerts whose usage is in batches ``(after, upto]``."""
    if upto <= after:
        return []
    return sorted(session.scalars(text(CUSTOMERS_FOLDED),
                                  {"after": after, "upto": upto}))
