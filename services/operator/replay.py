"""What a replay reports at its end (``scheduler/replay.py``): every invoice, the usage
counts, the credit grants with their ledgers — read in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.documents import InvoiceRecord
from persistence import invoices as invoices_repo
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from services import credits


@dataclass(frozen=True)
class Ledgers:
    invoices: list[InvoiceRecord]
    usage: dict[str, int]  # outcome counts, "unbilled" and "late"
    grants: list[credits.GrantView]


def ledgers(until: datetime) -> Ledgers:
    """The store's invoices, usage counts and credit ledgers (at ``until``)."""
    with unit_of_work() as session:
        invoices = invoices_repo.records(session)
        counts = usage_repo.outcome_counts(session)
        counts["unbilled"] = usage_repo.count_unbilled(session)
        counts["late"] = usage_repo.count_late(session)
        grants = credits.grant_views(session, until)
    return Ledgers(invoices, counts, grants)
