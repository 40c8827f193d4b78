"""Sending invoices: what happens, in one transaction, when drafts become sent — at issue
(a bill run) or at release — and nowhere else:

1. prepaid credits pay them, or a negative total becomes credit (SPEC §12,
   ``services.credits``: the customers' usable grants stay locked until the commit, so
   a customer's invoices sent by two transactions take its credits one after the other);
2. numbers, gapless per entity in the order of sending (the entity's counter row stays
   locked until the commit: taken last, so that the transactions sending an entity's
   invoices wait for each other only for this);
3. each gets a pending delivery, carried out after the commit (``services.deliveries``;
   the scheduler's sweep sends again a delivery whose message was lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from domain.catalog import Entity
from persistence import deliveries as deliveries_repo
from persistence import invoices as invoices_repo
from services import credits
from services.credits import Sent


def send(session: Session, entity: Entity, invoices: Sequence[Sent], sent_at: datetime,
         now: datetime) -> dict[int, str]:
    """Send these drafts of one entity, in this order, as of ``sent_at`` (a bill run's
    instant, or a release's); their numbers by invoice id."""
    ids = [i.invoice_id for i in invoices]
    credits.settle(session, invoices, sent_at)
    numbers = invoices_repo.number(session, entity.id, entity.invoice_prefix, ids, now)
    deliveries_repo.add_pending(session, ids, now)
    return dict(zip(ids, numbers, strict=True))
