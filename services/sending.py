"""Sending invoices: what happens, in one transaction, when drafts become sent — at issue
(a bill run) or at release — and nowhere else:

1. prepaid credits pay them, or a negative total becomes credit (SPEC §12,
   ``services.credits``: the customers' usable grants stay locked until the commit, so
   a customer's invoices sent by two transactions take its credits one after the other);
2. numbers, gapless per entity in the order of sending (the entity's counter row stays
   locked until the commit: taken last, so that the transactions sending an entity's
   invoices wait for each other only for this);
3. each gets its due date (the issue date in the entity's zone plus the net terms), its
   payment status (``open``, or ``paid`` when nothing is due) and a copy of who billed
   whom — the seller's and the buyer's legal details as they are now: a sent invoice never
   changes (``domain.payments``, ``domain.parties``);
4. each gets a pending delivery, carried out after the commit (``services.deliveries``;
   the scheduler's sweep sends again a delivery whose message was lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from domain.catalog import Entity
from domain.payments import DEFAULT_NET_TERMS, due_date, status_at_sending
from domain.periods import local_date
from persistence import catalog as catalog_repo
from persistence import deliveries as deliveries_repo
from persistence import invoices as invoices_repo
from services import credits
from services.credits import Sent


def send(session: Session, entity: Entity, invoices: Sequence[Sent], sent_at: datetime,
         now: datetime) -> dict[int, str]:
    """Send these drafts of one entity, in this order, as of ``sent_at`` (a bill run's
    instant, or a release's); their numbers by invoice id."""
    ids = [i.invoice_id for i in invoices]
    paid = credits.settle(session, invoices, sent_at)
    numbers = invoices_repo.number(session, entity.id, entity.invoice_prefix, ids, now)
    customers = catalog_repo.customers(session, {i.customer for i in invoices})
    issued_on = local_date(sent_at, entity.timezone)
    terms: list[invoices_repo.SentTerms] = []
    for invoice in invoices:
        customer = customers[invoice.customer]
        net = next(n for n in (customer.details.net_terms, entity.profile.net_terms,
                               DEFAULT_NET_TERMS) if n is not None)
        due = invoice.total - paid.get(invoice.invoice_id, Decimal(0))
        parties = {"seller": {"id": entity.id, **entity.profile.to_dict()},
                   "buyer": {"id": customer.id, "email": customer.email,
                             **customer.details.to_dict()}}
        terms.append(invoices_repo.SentTerms(invoice.invoice_id, due_date(issued_on, net),
                                             status_at_sending(due).value, parties))
    invoices_repo.set_sent_terms(session, terms)
    deliveries_repo.add_pending(session, ids, now)
    return dict(zip(ids, numbers, strict=True))
