"""Subscriptions and the command log that makes command messages idempotent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import insert_ignore
from persistence.tables import CommandLogRow, InvoiceRow, PlanMeterRow, SubscriptionRow

S = SubscriptionRow


def claim_message(session: Session, message_id: str, actor: str, now: datetime) -> bool:
    """Record a command message as being processed; False when it was processed before."""
    stmt = insert_ignore(session, CommandLogRow, "message_id").values(
        message_id=message_id, actor=actor, received_at=now
    ).returning(col(CommandLogRow.message_id))
    return session.execute(stmt).first() is not None


def record_outcome(session: Session, message_id: str, outcome: str, detail: str) -> None:
    session.execute(
        update(CommandLogRow).where(col(CommandLogRow.message_id) == message_id)
        .values(outcome=outcome, detail=detail)
    )


def get(session: Session, subscription_id: str, *, lock: bool = False) -> SubscriptionRow | None:
    return session.get(S, subscription_id, with_for_update=lock)


def get_many(session: Session, ids: Sequence[str]) -> dict[str, SubscriptionRow]:
    result: dict[str, SubscriptionRow] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), 500):
        stmt = select(S).where(col(S.id).in_(wanted[start:start + 500]))
        result.update((row.id, row) for row in session.scalars(stmt))
    return result


def add(session: Session, row: SubscriptionRow) -> None:
    session.add(row)
    session.flush()


def sharing_meters(session: Session, customer_id: str, meters: frozenset[str],
                   exclude: str | None = None) -> list[SubscriptionRow]:
    """The customer's subscriptions whose plan charges any of ``meters``."""
    if not meters:
        return []
    stmt = select(S).where(
        col(S.customer_id) == customer_id,
        exists().where(col(PlanMeterRow.plan_id) == col(S.plan_id),
                       col(PlanMeterRow.meter_id).in_(sorted(meters))),
    )
    if exclude is not None:
        stmt = stmt.where(col(S.id) != exclude)
    return list(session.scalars(stmt))


def billable(session: Session, entity_id: str, run_at: datetime) -> list[SubscriptionRow]:
    """The entity's subscriptions that existed at ``run_at`` and have no final invoice yet."""
    has_final = exists().where(col(InvoiceRow.subscription_id) == col(S.id), col(InvoiceRow.final))
    stmt = (
        select(S)
        .where(col(S.entity_id) == entity_id, col(S.created_at) <= run_at, ~has_final)
        .order_by(col(S.id))
    )
    return list(session.scalars(stmt))
