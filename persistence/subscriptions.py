"""Subscriptions, their lifecycle commands, and the command log that makes command
messages idempotent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from domain.subscriptions import LifecycleCommand
from persistence import rollups
from persistence.sql import insert_ignore, is_postgres, storable
from persistence.tables import (
    CommandLogRow,
    InvoiceRow,
    PlanMeterRow,
    SubscriptionCommandRow,
    SubscriptionRow,
)
from persistence.types import UTCDateTime

S = SubscriptionRow
C = SubscriptionCommandRow
SUBSCRIBE = "subscribe"  # the marker command: where a subscription's lifecycle begins


def claim_message(session: Session, message_id: str, actor: str, now: datetime) -> bool:
    """Record a command message as being processed; False when it was processed before."""
    stmt = insert_ignore(session, CommandLogRow, "message_id").values(
        message_id=message_id, actor=actor, received_at=now
    ).returning(col(CommandLogRow.message_id))
    return session.execute(stmt).first() is not None


def record_outcome(session: Session, message_id: str, outcome: str, detail: str,
                   code: str = "", field: str | None = None) -> None:
    session.execute(
        update(CommandLogRow).where(col(CommandLogRow.message_id) == message_id)
        .values(outcome=outcome, detail=storable(detail), code=code,
                field=None if field is None else storable(field))
    )


def command_outcome(session: Session, message_id: str) -> CommandLogRow | None:
    return session.get(CommandLogRow, message_id)


def get(session: Session, subscription_id: str, *, lock: bool = False) -> SubscriptionRow | None:
    return session.get(S, subscription_id, with_for_update=lock, populate_existing=lock)


def get_many(session: Session, ids: Sequence[str]) -> dict[str, SubscriptionRow]:
    result: dict[str, SubscriptionRow] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), 500):
        stmt = select(S).where(col(S.id).in_(wanted[start:start + 500]))
        result.update((row.id, row) for row in session.scalars(stmt))
    return result


def of_entity(session: Session, entity_id: str, *, lock: bool = False) -> list[SubscriptionRow]:
    """The entity's subscriptions; ``lock``: locked for update in id order (as a bill run
    locks them), read afresh."""
    stmt = select(S).where(col(S.entity_id) == entity_id).order_by(col(S.id))
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(stmt))


def listing(session: Session, *, customer: str | None = None, entity: str | None = None,
            limit: int = 1000) -> list[SubscriptionRow]:
    stmt = select(S).order_by(col(S.id)).limit(limit)
    if customer is not None:
        stmt = stmt.where(col(S.customer_id) == customer)
    if entity is not None:
        stmt = stmt.where(col(S.entity_id) == entity)
    return list(session.scalars(stmt))


def add(session: Session, row: SubscriptionRow) -> None:
    session.add(row)
    session.flush()
    want_usage_rolled_up(session, row)


def want_usage_rolled_up(session: Session, row: SubscriptionRow) -> None:
    """The customer's usage from the subscription's start on is what its estimates, portal
    and alerts read: rolled up from there (persistence/rollups.py, horizons)."""
    rollups.want_horizon(session, row.customer_id, row.start_at)


def sharing_meters(session: Session, customer_id: str, meters: frozenset[str],
                   exclude: str | None = None) -> list[tuple[SubscriptionRow, list[str]]]:
    """The customer's subscriptions whose plan version charges any of ``meters``, with the
    meters they share."""
    if not meters:
        return []
    PM = PlanMeterRow
    stmt = select(S, col(PM.meter_id)).join(
        PM, (col(PM.plan_id) == col(S.plan_id)) & (col(PM.version) == col(S.plan_version))
    ).where(col(S.customer_id) == customer_id, col(PM.meter_id).in_(sorted(meters)))
    if exclude is not None:
        stmt = stmt.where(col(S.id) != exclude)
    shared: dict[str, tuple[SubscriptionRow, list[str]]] = {}
    for row, meter in session.execute(stmt.order_by(col(S.id), col(PM.meter_id))):
        shared.setdefault(row.id, (row, []))[1].append(meter)
    return list(shared.values())


def add_command(session: Session, subscription_id: str, kind: str, sent_at: datetime,
                message_id: str) -> None:
    session.add(C(subscription_id=subscription_id, kind=kind, sent_at=sent_at,
                  message_id=message_id))
    session.flush()


def lifecycle(session: Session, subscription_id: str) -> list[LifecycleCommand]:
    """The cancels and uncancels of the subscription sent after its subscribe, in the order
    they were sent (ties: in the order they were processed)."""
    rows = session.execute(select(col(C.kind), col(C.sent_at)).where(
        col(C.subscription_id) == subscription_id).order_by(col(C.sent_at), col(C.id))).all()
    kinds = [kind for kind, _ in rows]
    first = kinds.index(SUBSCRIBE) + 1 if SUBSCRIBE in kinds else len(rows)
    return [LifecycleCommand(kind, at) for kind, at in rows[first:] if kind != SUBSCRIBE]


def lifecycle_after(session: Session, subscription_id: str,
                    sent_at: datetime) -> list[LifecycleCommand]:
    """The cancels and uncancels of the subscription sent after ``sent_at``, in sent order:
    its lifecycle if it had been subscribed at ``sent_at``."""
    rows = session.execute(select(col(C.kind), col(C.sent_at)).where(
        col(C.subscription_id) == subscription_id, col(C.kind) != SUBSCRIBE,
        col(C.sent_at) > sent_at).order_by(col(C.sent_at), col(C.id))).all()
    return [LifecycleCommand(kind, at) for kind, at in rows]


def invoiced_from(session: Session, subscription_id: str,
                  boundary: date) -> list[tuple[date, bool]]:
    """(boundary, final) of the subscription's invoices at or after ``boundary``."""
    I = InvoiceRow  # noqa: E741
    stmt = select(col(I.boundary), col(I.final)).where(
        col(I.subscription_id) == subscription_id, col(I.boundary) >= boundary).order_by(
        col(I.boundary))
    return [(b, f) for b, f in session.execute(stmt)]


def due(session: Session, entity_id: str, run_at: datetime) -> list[SubscriptionRow]:
    """The entity's subscriptions that existed at ``run_at`` and whose next boundary a run
    at ``run_at`` has to deal with: an index range, however long their history."""
    stmt = (
        select(S)
        .where(col(S.entity_id) == entity_id, col(S.next_boundary_at) <= run_at,
               col(S.created_at) <= run_at,
               col(S.end_at).is_(None) | (col(S.next_boundary_at) <= col(S.end_at)))
        .order_by(col(S.id))
    )
    return list(session.scalars(stmt))


def created_after_run(session: Session, entity_id: str, run_at: datetime,
                      limit: int = 20) -> list[SubscriptionRow]:
    """Subscriptions with a boundary due by ``run_at`` that were created after it: their
    invoices come with the next run."""
    stmt = (select(S).where(col(S.entity_id) == entity_id, col(S.next_boundary_at) <= run_at,
                            col(S.created_at) > run_at).order_by(col(S.id)).limit(limit))
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class Advance:
    """Every boundary of a subscription before ``b_k`` is dealt with; its usage before
    ``closed_until_at`` is invoiced (when given). ``if_unchanged``: only if the subscription
    still ends on ``ends`` (``None``: no end) — for a move decided on a row read without a
    lock, which a cancel or uncancel may have changed since."""

    subscription_id: str
    k: int
    boundary: date
    at: datetime
    closed_until_at: datetime | None = None
    if_unchanged: bool = False
    ends: date | None = None


def advance(session: Session, moves: Sequence[Advance]) -> None:
    """Apply these moves (never moving a subscription back) in one executemany each."""
    for guarded in (True, False):
        group = [m for m in moves if m.if_unchanged == guarded]
        if not group:
            continue
        closed = col(S.closed_until_at)
        where = [col(S.id) == bindparam("sid"), col(S.next_k) < bindparam("k")]
        if guarded:
            where.append(col(S.end).is_not_distinct_from(bindparam("ends", type_=Date())))
        stmt = (update(S).where(*where)
                .values(next_k=bindparam("k"), next_boundary=bindparam("b"),
                        next_boundary_at=bindparam("at"),
                        closed_until_at=func.coalesce(bindparam("closed",
                                                                type_=UTCDateTime()), closed)))
        # a Core executemany on the connection (the ORM would want to match primary keys)
        session.connection().execute(stmt, [
            {"sid": m.subscription_id, "k": m.k, "b": m.boundary, "at": m.at,
             "closed": m.closed_until_at, **({"ends": m.ends} if guarded else {})}
            for m in group])


def lock(session: Session, ids: Sequence[str]) -> None:
    """Lock these subscriptions for update, in id order (no deadlock with an ingest that
    share-locks them): from here no event of theirs closing now can commit unseen."""
    if ids and is_postgres(session):
        session.execute(select(col(S.id)).where(col(S.id).in_(sorted(set(ids))))
                        .order_by(col(S.id)).with_for_update())


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(S)) or 0)
