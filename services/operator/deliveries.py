"""What operators see and do of deliveries (``billing deliveries``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from persistence import deliveries as deliveries_repo
from persistence import invoices as invoices_repo
from persistence.db import unit_of_work
from persistence.tables import DeliveryRow


def listing(status: str | None, limit: int) -> list[tuple[DeliveryRow, str | None]]:
    """Deliveries (of ``status``, or all), newest first, each with its invoice's reference."""
    with unit_of_work() as session:
        rows = deliveries_repo.rows(session, status, limit)
        names = {r.id: r.reference for r in invoices_repo.records(
            session, ids=sorted({r.invoice_id for r in rows}))} if rows else {}
    return [(r, names.get(r.invoice_id)) for r in rows]


def reset_for_retry(invoice_ids: Sequence[int], now: datetime) -> list[int]:
    """Make the deliveries of ``invoice_ids`` (every failed one when empty) pending again,
    except those done; the invoices reset."""
    with unit_of_work() as session:
        wanted = list(invoice_ids) or [r.invoice_id for r in deliveries_repo.rows(
            session, "failed", limit=10_000)]
        return deliveries_repo.reset(session, wanted, now)
