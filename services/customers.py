"""Customers as an operator (or the API) sees them: who they are, their subscriptions and
their invoices."""

from __future__ import annotations

from dataclasses import dataclass

from domain.catalog import Customer
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work


@dataclass(frozen=True)
class CustomerSummary:
    id: str
    entity: str
    email: str | None
    draft_invoices: bool
    subscriptions: int
    invoices: int


def _summary(c: Customer, counts: dict[str, tuple[int, int]]) -> CustomerSummary:
    subscriptions, invoices = counts.get(c.id, (0, 0))
    return CustomerSummary(c.id, c.entity, c.email, bool(c.draft_invoices), subscriptions,
                           invoices)


def listing(*, entity: str | None = None) -> list[CustomerSummary]:
    with unit_of_work() as session:
        customers = [c for c in catalog_repo.customers(session).values()
                     if entity is None or c.entity == entity]
        counts = catalog_repo.customer_counts(session)
    return [_summary(c, counts) for c in customers]


def get(customer_id: str) -> CustomerSummary | None:
    with unit_of_work() as session:
        found = catalog_repo.customer(session, customer_id)
        if found is None:
            return None
        return _summary(found, catalog_repo.customer_counts(session, [customer_id]))
