"""Plan histories (SPEC §14): the plan changes of subscriptions, read set-wise."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.plan_history import PlanEntry, PlanHistory
from persistence import catalog as catalog_repo
from persistence.tables import PlanChangeRow, SubscriptionRow

P = PlanChangeRow
CHUNK = 500


def changes(session: Session, subscription_ids: Collection[str]) -> dict[str, list[PlanChangeRow]]:
    """The plan changes of these subscriptions, by ``since``."""
    found: dict[str, list[PlanChangeRow]] = defaultdict(list)
    wanted = sorted(set(subscription_ids))
    for start in range(0, len(wanted), CHUNK):
        stmt = (select(P).where(col(P.subscription_id).in_(wanted[start:start + CHUNK]))
                .order_by(col(P.subscription_id), col(P.since)))
        for row in session.scalars(stmt):
            found[row.subscription_id].append(row)
    return found


def histories(session: Session, rows: Sequence[SubscriptionRow]) -> dict[str, PlanHistory]:
    """The plan history of each subscription: its first plan, then its changes."""
    found = changes(session, [r.id for r in rows])
    keys = {(r.plan_id, r.plan_version) for r in rows}
    keys |= {(c.plan_id, c.plan_version) for cs in found.values() for c in cs}
    plans = catalog_repo.plans(session, keys)
    result: dict[str, PlanHistory] = {}
    for row in rows:
        first = plans[(row.plan_id, row.plan_version)]
        result[row.id] = PlanHistory.of(row.start, first, row.plan_version, [
            PlanEntry(c.since, plans[(c.plan_id, c.plan_version)], c.plan_version)
            for c in found.get(row.id, [])])
    return result


def store(session: Session, subscription_id: str, before: PlanHistory, after: PlanHistory,
          since_at: datetime, sent_at: datetime, now: datetime) -> None:
    """Make the stored changes of the subscription ``after``'s, from ``before``'s: a change
    on the latest date replaces (or deletes) that row, a new one is added."""
    old = {e.since: e.key for e in before.changes}
    new = {e.since: e for e in after.changes}
    for since, key in old.items():
        if since not in new or new[since].key != key:
            session.execute(delete(P).where(col(P.subscription_id) == subscription_id,
                                            col(P.since) == since))
    for since, entry in new.items():
        if old.get(since) != entry.key:
            session.add(P(subscription_id=subscription_id, since=since, since_at=since_at,
                          plan_id=entry.plan.id, plan_version=entry.version, sent_at=sent_at,
                          created_at=now))
    session.flush()


def with_changes(session: Session, subscription_ids: Collection[str]) -> set[str]:
    """Which of these subscriptions have a plan change."""
    found: set[str] = set()
    wanted = sorted(set(subscription_ids))
    for start in range(0, len(wanted), CHUNK):
        found.update(session.scalars(select(col(P.subscription_id)).where(
            col(P.subscription_id).in_(wanted[start:start + CHUNK])).distinct()))
    return found
