"""Catalog and state snapshots for integration tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from persistence.db import unit_of_work
from persistence.tables import (
    BillRunRow,
    CustomerRow,
    InvoiceCounterRow,
    InvoiceLineRow,
    InvoiceRow,
    RejectedUsageRow,
    SubscriptionRow,
    UsageConflictRow,
    UsageEventRow,
)
from services import catalog as catalog_service

CATALOG: dict[str, Any] = {
    "entities": [{"id": "acme", "timezone": "Europe/Oslo", "invoice_prefix": "AC"}],
    "meters": [
        {"id": "tokens", "aggregation": "sum"},
        {"id": "seats", "aggregation": "max"},
    ],
    "plans": [
        {"id": "pro", "currency": "EUR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "49.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.001"},
        ]},
        {"id": "seats-only", "currency": "EUR", "interval": "month", "charges": [
            {"id": "seats", "type": "usage", "meter": "seats", "model": "unit",
             "unit_price": "10"},
        ]},
        {"id": "tokens-too", "currency": "EUR", "interval": "month", "charges": [
            {"id": "t", "type": "usage", "meter": "tokens", "model": "unit", "unit_price": "1"},
        ]},
    ],
    "customers": [
        {"id": "c-1", "entity": "acme"},
        {"id": "c-2", "entity": "acme", "draft_invoices": True},
    ],
}


def apply_catalog(data: dict[str, Any] | None = None) -> None:
    catalog_service.apply_document(data or CATALOG, datetime(2000, 1, 1, tzinfo=UTC))


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Everything billing-relevant, in a comparable form."""
    tables = {
        "subscriptions": (SubscriptionRow, ["id", "customer_id", "plan_id", "start", "end",
                                            "end_at", "discount"]),
        "customers": (CustomerRow, ["id", "draft_invoices"]),
        "usage": (UsageEventRow, ["key", "customer_id", "meter_id", "quantity", "timestamp"]),
        "rejected": (RejectedUsageRow, ["key", "reason"]),
        "conflicts": (UsageConflictRow, ["key"]),
        "invoices": (InvoiceRow, ["subscription_id", "boundary", "status", "number", "final",
                                  "issued_at", "subtotal", "discount", "total"]),
        "lines": (InvoiceLineRow, ["invoice_id", "type", "charge_id", "quantity", "amount"]),
        "counters": (InvoiceCounterRow, ["entity_id", "last_number"]),
        "bill_runs": (BillRunRow, ["entity_id", "local_date"]),
    }
    result: dict[str, list[tuple[Any, ...]]] = {}
    with unit_of_work() as session:
        for name, (model, columns) in tables.items():
            rows = session.execute(select(*[getattr(model, c) for c in columns])).all()
            result[name] = sorted((tuple(r) for r in rows), key=repr)
    return result


def invoices() -> list[InvoiceRow]:
    with unit_of_work() as session:
        return list(session.scalars(select(InvoiceRow).order_by(InvoiceRow.subscription_id,
                                                                 InvoiceRow.boundary)))
