"""Invoice documents a finance team can send, read in a real headless Chromium: a
customer with full billing details in English and in Japanese, a paid and a voided
invoice, each at laptop and phone widths — both parties' legal names and tax ids, the due
date, the payment instructions, the status stamp, and no horizontal overflow — and the
PDF of each, its text extracted with pypdf. Screenshots and PDFs go to
``BILLING_TEST_ARTIFACTS`` (default ``test-artifacts/``)/invoices for a person to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from domain.periods import bill_run_instant
from persistence.db import unit_of_work
from persistence.invoices import records
from services import catalog as catalog_service
from services import documents, invoicing, payments, subscriptions
from tests.conftest import CHROMIUM, ROOT, require_browser

pytestmark = pytest.mark.browser
ARTIFACTS = Path(os.environ.get("BILLING_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "invoices"
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
LOGO = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8"
        "AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
SELLER = {"legal_name": "Example Labs GmbH", "address": "Hauptstraße 1\n10115 Berlin\nGermany",
          "tax_id": "DE123456789", "email": "billing@example.test", "net_terms": 14,
          "logo": LOGO, "payment_instructions": "IBAN DE89 3704 0044 0532 0130 00, BIC "
          "COBADEFFXXX — please quote the invoice number",
          "footer": "Example Labs GmbH · Registered in Berlin, HRB 12345 · "
                    "Managing director: A. Example"}
BUYERS = {
    "en": {"legal_name": "Ganga AI Private Limited with a Rather Long Registered Name",
           "address": "Prestige Tech Park, Tower 4, 12th floor\nOuter Ring Road\n"
                      "Bengaluru 560103\nIndia", "tax_id": "29ABCDE1234F1Z5", "locale": "en"},
    "ja": {"legal_name": "株式会社サンプル人工知能研究所", "address": "東京都千代田区丸の内1-1-1",
           "tax_id": "T1234567890123", "locale": "ja", "net_terms": 30},
    "paid": {"legal_name": "Paid Up Ltd", "tax_id": "GB123456789", "locale": "en"},
    "void": {"legal_name": "Voided Ltd", "tax_id": "FR12345678901", "locale": "fr"},
}


@pytest.fixture
def invoices(sqlite_store: str) -> dict[str, Any]:
    """One sent invoice per buyer (1 March), the ``paid`` one paid, the ``void`` one
    voided: their documents as of 10 March."""
    start = datetime(2026, 2, 20, tzinfo=UTC)
    catalog_service.apply_document({
        "entities": [{"id": "e", "timezone": "Europe/Berlin", "invoice_prefix": "EL",
                      **SELLER}],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [
            {"id": "usd", "currency": "USD", "interval": "month", "charges": [
                {"id": "platform", "type": "recurring", "amount": "1200.00"},
                {"id": "tokens", "type": "usage", "meter": "tokens", "model": "graduated",
                 "tiers": [{"up_to": "1000000", "unit_price": "0"},
                           {"up_to": None, "unit_price": "0.000002"}]}]},
            {"id": "jpy", "currency": "JPY", "interval": "month", "charges": [
                {"id": "platform", "type": "recurring", "amount": "150000"}]}],
        "customers": [{"id": f"c-{name}", "entity": "e", **details}
                      for name, details in BUYERS.items()]}, start)
    with unit_of_work() as session:
        for name in BUYERS:
            subscriptions.do_subscribe(session, start, {
                "id": f"s-{name}", "customer": f"c-{name}",
                "plan": "jpy" if name == "ja" else "usd", "start": "2026-03-01",
                **({"discount": {"percent": "10"}} if name == "en" else {})})
    invoicing.run_bill_run_now("e", date(2026, 3, 1),
                               bill_run_instant(date(2026, 3, 1), "Europe/Berlin"))
    with unit_of_work() as session:
        found = {r.subscription.removeprefix("s-"): r for r in records(session)}
        assert payments.do_pay(session, NOW, found["paid"].id, {
            "amount": "1200.00", "currency": "USD", "date": "2026-03-09",
            "method": "bank_transfer", "reference": "TX-778"}).status == "applied"
        assert payments.do_void(session, NOW, found["void"].id).status == "applied"
        found = {r.subscription.removeprefix("s-"): r for r in records(session)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


EXPECTED = {
    "en": ["Example Labs GmbH", "DE123456789", "Ganga AI Private Limited", "29ABCDE1234F1Z5",
           "Due date", "Mar 15, 2026", "IBAN DE89", "Discount (10%)", "Unit price",
           "$1,200.00", "HRB 12345"],
    "ja": ["請求書", "Example Labs GmbH", "DE123456789", "株式会社サンプル人工知能研究所",
           "T1234567890123", "お支払期限", "2026/03/31", "￥150,000"],
    "paid": ["Paid Up Ltd", "GB123456789", "PAID", "TX-778"],
    "void": ["Voided Ltd", "FR12345678901", "ANNULÉE"],
}


@pytest.mark.parametrize("name", list(BUYERS))
def test_an_invoice_document_on_a_laptop_and_a_phone_and_as_pdf(
        invoices: dict[str, Any], browser: Any, name: str) -> None:
    with unit_of_work() as session:
        doc = documents.prepare(session, invoices[name], NOW)
    page_file = ARTIFACTS / f"{name}.html"
    page_file.write_text(documents.html_of(doc), encoding="utf-8")
    for width, height, label in ((1280, 900, "laptop"), (390, 844, "phone")):
        page = browser.new_page(viewport={"width": width, "height": height})
        requests: list[str] = []
        page.on("request", lambda r, seen=requests: seen.append(r.url))
        page.goto(page_file.as_uri())
        text = page.inner_text("body")
        for expected in EXPECTED[name]:
            assert expected in text, (label, expected, text)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} overflows the {label} by {overflow}px"
        assert all(u.startswith(("file:", "data:")) for u in requests), requests
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
        page.close()
    pdf = documents.pdf_of(doc)
    (ARTIFACTS / f"{name}.pdf").write_bytes(pdf)
    from pypdf import PdfReader

    text = " ".join(p.extract_text() for p in PdfReader(BytesIO(pdf)).pages)
    flat = " ".join(text.split())
    for expected in EXPECTED[name]:
        assert " ".join(expected.split()) in flat, (expected, flat)
