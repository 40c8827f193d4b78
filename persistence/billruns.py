"""Bill-run claims — one row per (entity, local date), with their progress — and what the
scheduler keeps: the catalog's revision and its beats."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session
from sqlmodel import col

from persistence.sql import driver_cursor, insert_ignore, is_postgres, rowcount
from persistence.tables import BillRunRow, CatalogRevisionRow, EntityRow, SchedulerBeatRow

CLAIM_MANY = (
    "INSERT INTO bill_runs (entity_id, local_date, run_at, claimed_at, status) "
    "SELECT e, d, r, %b, 'claimed' FROM unnest(%b::text[], %b::date[], %b::timestamptz[]) "
    "AS u(e, d, r) ON CONFLICT (entity_id, local_date) DO NOTHING "
    "RETURNING entity_id, local_date"
)


def claim_many(session: Session, runs: Sequence[tuple[str, date, datetime]],
               now: datetime) -> list[tuple[str, date]]:
    """Claim these (entity, local date, run instant) runs at once; those claimed now (not
    before, by this scheduler or another). On PostgreSQL one statement, the runs as three
    binary arrays (a wake may claim tens of thousands)."""
    if not runs:
        return []
    if is_postgres(session):
        with driver_cursor(session) as cursor:
            cursor.execute(CLAIM_MANY, (now, [e for e, _, _ in runs], [d for _, d, _ in runs],
                                        [at for _, _, at in runs]))
            return [(e, d) for e, d in cursor.fetchall()]
    R = BillRunRow
    claimed: list[tuple[str, date]] = []
    for start in range(0, len(runs), 500):
        rows = [{"entity_id": e, "local_date": d, "run_at": at, "claimed_at": now}
                for e, d, at in runs[start:start + 500]]
        stmt = insert_ignore(session, R, "entity_id", "local_date").values(rows).returning(
            col(R.entity_id), col(R.local_date))
        claimed.extend((e, d) for e, d in session.execute(stmt))
    return claimed


def take_to_send(session: Session, now: datetime, resend_after: timedelta,
                 entity_ids: Collection[str] | None = None) -> list[tuple[str, date]]:
    """Mark sent, in one statement, the claims to send (again) — never sent, or sent more
    than ``resend_after`` ago and not done (their message, or the work it fanned out, may
    have been lost) — skipping those another scheduler holds, and return them. They stay
    locked until the transaction ends: send them before it commits (if sending fails, the
    rollback leaves them to send again). Two schedulers at once so send each run once; a
    run's worker marking it done waits for the commit."""
    R = BillRunRow
    due = select(col(R.entity_id), col(R.local_date)).where(
        col(R.status) != "done",
        (col(R.status) == "claimed") | col(R.sent_at).is_(None)
        | (col(R.sent_at) <= now - resend_after))
    if entity_ids is not None:
        due = due.where(col(R.entity_id).in_(sorted(entity_ids)))
    if is_postgres(session):
        due = due.with_for_update(skip_locked=True)
    stmt = (update(R).where(tuple_(col(R.entity_id), col(R.local_date)).in_(due))
            .values(status="sent", sent_at=now)
            .returning(col(R.entity_id), col(R.local_date)))
    return sorted((e, d) for e, d in session.execute(stmt))


def mark_done(session: Session, entity_id: str, local_date: date, now: datetime) -> None:
    """The run is done — unless it was already: the first run that finished it keeps its
    ``done_at`` (a ``billing bill-run`` by hand after the scheduled run changes nothing)."""
    R = BillRunRow
    session.execute(update(R).where(col(R.entity_id) == entity_id,
                                    col(R.local_date) == local_date, col(R.status) != "done")
                    .values(status="done", done_at=now))


def runs(session: Session, entity_id: str | None = None, limit: int = 50) -> list[BillRunRow]:
    R = BillRunRow
    stmt = select(R).order_by(col(R.local_date).desc(), col(R.entity_id)).limit(limit)
    if entity_id is not None:
        stmt = stmt.where(col(R.entity_id) == entity_id)
    return list(session.scalars(stmt))


# ---------------------------------------------------------------------------- scheduling


def catalog_revision(session: Session) -> int:
    return int(session.scalar(select(col(CatalogRevisionRow.revision))) or 0)


def bump_catalog_revision(session: Session) -> None:
    """An entity was created or changed: schedulers rebuild their schedule."""
    R = CatalogRevisionRow
    if rowcount(session.execute(update(R).where(col(R.id) == 1)
                                .values(revision=col(R.revision) + 1))) == 0:
        session.execute(insert_ignore(session, R, "id").values(id=1, revision=1))


def entity_zones(session: Session) -> dict[str, str]:
    """Every entity's time zone, by id."""
    return dict(session.execute(select(col(EntityRow.id), col(EntityRow.timezone))).all())


def beat(session: Session, row: SchedulerBeatRow) -> None:
    session.merge(row)


def beats(session: Session) -> list[SchedulerBeatRow]:
    """Every scheduler's latest beat, the most recent first."""
    R = SchedulerBeatRow
    return list(session.scalars(select(R).order_by(col(R.woke_at).desc())))


def count_unfinished(session: Session) -> int:
    R = BillRunRow
    return int(session.scalar(select(func.count()).select_from(R)
                              .where(col(R.status) != "done")) or 0)
