"""A sample invoice document (the shape of domain.documents) for delivery tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from domain.documents import InvoiceRecord, invoice_document
from domain.invoices import Line


def sample_document(*, number: str | None = "AC-0007", currency: str = "EUR",
                    final: bool = False) -> dict[str, Any]:
    jpy = currency == "JPY"
    inv = InvoiceRecord(
        id=7, entity="acme", customer="customer-7", subscription="sub-42",
        boundary=date(2026, 3, 1), issued_at=datetime(2026, 3, 1, 7, 15, tzinfo=UTC),
        status="sent" if number else "draft", number=number, final=final, currency=currency,
        lines=(
            Line("recurring", "base", date(2026, 3, 1), date(2026, 4, 1), Decimal(1),
                 Decimal("1000") if jpy else Decimal("49.00")),
            Line("usage", "tokens", date(2026, 2, 1), date(2026, 3, 1), Decimal("1532"),
                 Decimal("500") if jpy else Decimal("1.53")),
        ),
        subtotal=Decimal("1500") if jpy else Decimal("50.53"),
        discount=Decimal("0") if jpy else Decimal("1.53"),
        total=Decimal("1500") if jpy else Decimal("49.00"),
    )
    return invoice_document(inv) | {"id": inv.id}
