"""Where people look, for this round's features: the invoice documents (HTML, text,
webhook JSON) and the customer portal show the filter groups (SPEC §13), the taxes per
rate (§15) and the prepaid credits with the amount due (§12); the preview applies the
balance."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.documents import detailed_document
from domain.periods import bill_run_instant
from persistence import invoices as invoices_repo
from persistence.db import unit_of_work
from services import catalog as catalog_service
from services import clock, credits, invoicing, subscriptions, usage
from services import portal as portal_service
from services.delivery.render import render_html, render_text
from services.settings import settings
from web.app import create_app

CATALOG: dict[str, Any] = {
    "taxes": [{"id": "vat", "rate": "19"}, {"id": "reduced", "rate": "7"}],
    "entities": [{"id": "de", "timezone": "UTC", "invoice_prefix": "DE", "taxes": ["vat"]}],
    "meters": [{"id": "tokens", "aggregation": "sum"}],
    "plans": [{"id": "llm", "currency": "EUR", "interval": "month", "charges": [
        {"id": "base", "type": "recurring", "amount": "20.00", "taxes": ["reduced"]},
        {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
         "unit_price": "0.001", "filters": [
             {"id": "large", "match": {"model": ["large"]}, "model": "unit",
              "unit_price": "0.01"}]}]}],
    "customers": [{"id": "anna", "entity": "de"}, {"id": "firma", "entity": "de",
                                                   "tax_exempt": True}],
}
NOW = datetime(2026, 2, 10, 12, tzinfo=UTC)


@pytest.fixture
def books(sqlite_store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("BILLING_PORTAL_SECRET", "a-test-secret-of-some-length")
    monkeypatch.setenv("BILLING_PORTAL_URL", "http://portal.test")
    settings.cache_clear()
    start = datetime(2025, 12, 20, tzinfo=UTC)
    catalog_service.apply_document(CATALOG, start)
    with unit_of_work() as session:
        for sub, customer in (("s-anna", "anna"), ("s-firma", "firma")):
            subscriptions.do_subscribe(session, start, {"id": sub, "customer": customer,
                                                        "plan": "llm", "start": "2026-01-01"})
        credits.do_grant(session, start, {"id": "welcome", "customer": "anna",
                                          "currency": "EUR", "amount": "30.00"})
    for day in (date(2026, 1, 1), date(2026, 2, 1)):
        if day == date(2026, 2, 1):
            usage.ingest_message([
                {"key": f"{c}-{m}", "customer": c, "meter": "tokens", "quantity": "1000",
                 "timestamp": "2026-01-15T10:00:00Z", "properties": {"model": m}}
                for c in ("anna", "firma") for m in ("large", "small")], f"m-{day}",
                datetime(2026, 1, 20, tzinfo=UTC))
        invoicing.run_bill_run_now("de", day, bill_run_instant(day, "UTC"))
    clock.use(clock.SimulatedClock(NOW))
    try:
        with TestClient(create_app()) as client:
            yield client
    finally:
        clock.reset()
        settings.cache_clear()


def invoice(reference: tuple[str, date]) -> dict[str, Any]:
    with unit_of_work() as session:
        found = invoices_repo.records(session, subscription=reference[0], boundary=reference[1])
    return detailed_document(found[0])


def test_a_sent_invoice_shows_groups_taxes_and_credits(books: TestClient) -> None:
    document = invoice(("s-anna", date(2026, 2, 1)))
    # base 20.00 (7 %) + default 1.00 + large 10.00 (19 %): 31.00; tax 1.40 + 2.09
    assert [(ln["charge"], ln.get("filter", "-"), ln["amount"], ln["taxes"])
            for ln in document["lines"]] == [
        ("base", "-", "20.00", ["reduced"]), ("tokens", None, "1.00", ["vat"]),
        ("tokens", "large", "10.00", ["vat"])]
    assert (document["tax"], document["total"]) == ("3.49", "34.49")
    # the January invoice (20.00 + 1.40 tax) took 21.40 of welcome: 8.60 is left
    assert (document["credits"], document["amount_due"]) == ("8.60", "25.89")
    assert document["credits_applied"] == [{"grant": "welcome", "amount": "8.60"}]
    html = render_html(document, timezone="UTC")
    text = render_text(document, timezone="UTC")
    for page in (html, text):
        assert "tokens — large" in page and "tokens — default" in page
        assert "Tax vat (19 %) on €11.00" in page and "€2.09" in page
        assert "Prepaid credits (welcome €8.60)" in page and "Amount due" in page
        assert "€25.89" in page


def test_an_exempt_customers_invoice_says_so(books: TestClient) -> None:
    document = invoice(("s-firma", date(2026, 2, 1)))
    assert (document["taxes"], document["tax"], document["tax_exempt"]) == ([], "0.00", True)
    assert "Tax exempt" in render_html(document, timezone="UTC")


def test_the_portal_shows_groups_taxes_balance_and_the_preview_applies_it(
        books: TestClient) -> None:
    with unit_of_work() as session:
        credits.do_grant(session, NOW, {"id": "topup", "customer": "anna", "currency": "EUR",
                                        "amount": "5.00"})
    later = datetime(2026, 2, 11, tzinfo=UTC)
    clock.use(clock.SimulatedClock(later))
    preview = invoicing.preview("s-anna", later, latest=True)
    assert (preview.total, preview.credits, preview.amount_due) == (
        Decimal("21.40"), Decimal("5.00"), Decimal("16.40"))
    link = portal_service.create_link("anna", None, later)
    page = books.get(link.url.removeprefix("http://portal.test")).text
    assert "tokens — large" in page and "tokens — default" in page
    assert 'data-currency="EUR">€5.00</strong>' in page
    assert re.search(r"Tax reduced \(7 %\) on €20\.00</td><td class=\"num\">€1\.40", page)
    assert 'class="num amount-due">€16.40' in page
    assert "welcome" in page and "used up" in page
