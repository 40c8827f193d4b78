"""Subscriptions and the command log that makes command messages idempotent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from persistence.sql import insert_ignore
from persistence.tables import CommandLogRow, InvoiceRow, PlanMeterRow, SubscriptionRow

S = SubscriptionRow


def claim_message(session: Session, message_id: str, actor: str, now: datetime) -> bool:
    """Record a command message as being processed; False when it was processed before."""
    stmt = insert_ignore(session, CommandLogRow, "message_id").values(
        message_id=message_id, actor=actor, received_at=now
    ).returning(CommandLogRow.message_id)
    return session.execute(stmt).first() is not None


def record_outcome(session: Session, message_id: str, outcome: str, detail: str) -> None:
    session.execute(
        update(CommandLogRow).where(CommandLogRow.message_id == message_id)  # type: ignore[arg-type]
        .values(outcome=outcome, detail=detail)
    )


def get(session: Session, subscription_id: str, *, lock: bool = False) -> SubscriptionRow | None:
    return session.get(S, subscription_id, with_for_update=lock)


def add(session: Session, row: SubscriptionRow) -> None:
    session.add(row)
    session.flush()


def sharing_meters(session: Session, customer_id: str, meters: frozenset[str],
                   exclude: str | None = None) -> list[SubscriptionRow]:
    """The customer's subscriptions whose plan charges any of ``meters``."""
    if not meters:
        return []
    stmt = select(S).where(
        S.customer_id == customer_id,
        exists().where(PlanMeterRow.plan_id == S.plan_id,
                       PlanMeterRow.meter_id.in_(sorted(meters))),  # type: ignore[attr-defined]
    )
    if exclude is not None:
        stmt = stmt.where(S.id != exclude)
    return list(session.scalars(stmt))


def billable(session: Session, entity_id: str, run_at: datetime) -> list[SubscriptionRow]:
    """The entity's subscriptions that existed at ``run_at`` and have no final invoice yet."""
    has_final = exists().where(InvoiceRow.subscription_id == S.id, InvoiceRow.final)
    stmt = (
        select(S)
        .where(S.entity_id == entity_id, S.created_at <= run_at, ~has_final)  # type: ignore[operator]
        .order_by(S.id)
    )
    return list(session.scalars(stmt))
