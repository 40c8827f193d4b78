"""Whether a sent invoice was paid, over HTTP and through the Python client: payments
(once per Idempotency-Key), void, uncollectible, the due date from net terms, the
parties on the invoice, its PDF — and every refusal as one 4xx naming its field, with
nothing stored from it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest
from billing_client import BillingClient, BillingError
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from domain.periods import bill_run_instant
from persistence.db import unit_of_work
from persistence.tables import InvoiceEventRow, PaymentRow
from services import api_keys, clock, invoicing, payments, subscriptions
from services import catalog as catalog_service
from web.app import create_app
from workers.broker import stub_broker, use

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
SELLER = {"legal_name": "Example Labs GmbH", "address": "Hauptstraße 1\n10115 Berlin",
          "tax_id": "DE123456789", "email": "billing@example.test", "net_terms": 14,
          "payment_instructions": "IBAN DE89 3704 0044 0532 0130 00",
          "footer": "Registered in Berlin, HRB 12345"}
BUYER = {"legal_name": "Ganga AI Private Limited", "address": "1 MG Road\nBengaluru",
         "tax_id": "29ABCDE1234F1Z5", "net_terms": 30}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Invoice E-000001 of customer ``c`` (USD 100.00, sent 1 March, net 30: due 31
    March) and a draft of customer ``d``."""
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    start = datetime(2026, 2, 20, tzinfo=UTC)
    catalog_service.apply_document({
        "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E", **SELLER}],
        "meters": [],
        "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "100.00"}]}],
        "customers": [{"id": "c", "entity": "e", **BUYER},
                      {"id": "d", "entity": "e", "draft_invoices": True}]}, start)
    with unit_of_work() as session:
        for sub, customer in (("s", "c"), ("t", "d")):
            subscriptions.do_subscribe(session, start, {"id": sub, "customer": customer,
                                                        "plan": "p", "start": "2026-03-01"})
    invoicing.run_bill_run_now("e", date(2026, 3, 1), bill_run_instant(date(2026, 3, 1), "UTC"))
    _, key = api_keys.create("tests", NOW)
    clock.use(clock.SimulatedClock(NOW))
    use(stub_broker())  # the events' messages wait there: delivery is tested elsewhere
    try:
        with TestClient(create_app()) as client:
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        clock.reset()


def pay(client: TestClient, auth: dict[str, str], ref: str = "E-000001",
        key: str | None = None, **change: Any) -> Any:
    body = {"amount": "40.00", "currency": "USD", "date": "2026-03-09",
            "method": "bank_transfer", "reference": "TX-1", **change}
    headers = {**auth, "Idempotency-Key": key} if key else auth
    return client.post(f"/v1/invoices/{ref}/payments", json=body, headers=headers)


def stored() -> tuple[int, int]:
    with unit_of_work() as session:
        return (session.scalar(select(func.count()).select_from(PaymentRow)) or 0,
                session.scalar(select(func.count()).select_from(InvoiceEventRow)) or 0)


def test_a_sent_invoice_has_parties_a_due_date_and_is_open(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    invoice = client.get("/v1/invoices/E-000001", headers=auth).json()
    assert (invoice["payment_status"], invoice["due_date"], invoice["overdue"]) == (
        "open", "2026-03-31", False)  # the customer's net 30 over the entity's net 14
    assert invoice["seller"]["legal_name"] == "Example Labs GmbH"
    assert invoice["seller"]["tax_id"] == "DE123456789"
    assert invoice["buyer"] == {"id": "c", "email": None,
                                "legal_name": "Ganga AI Private Limited",
                                "address": "1 MG Road\nBengaluru",
                                "tax_id": "29ABCDE1234F1Z5", "net_terms": 30}
    draft = client.get("/v1/invoices/t@2026-03-01", headers=auth).json()
    assert (draft["status"], draft["payment_status"], draft["due_date"]) == (
        "draft", None, None)


def test_partial_then_full_payment_then_nothing_more(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    first = pay(client, auth, key="p-1")
    assert first.status_code == 201, first.text
    assert (first.json()["payment_status"], first.json()["paid"]) == (
        "partially_paid", "40.00")
    again = pay(client, auth, key="p-1")  # a retry: the first answer, paid once
    assert (again.status_code, again.json()) == (201, first.json())
    reused = pay(client, auth, key="p-1", amount="60.00")
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    rest = pay(client, auth, key="p-2", amount="60.00", method="card", reference=None)
    assert rest.status_code == 201, rest.text
    assert (rest.json()["payment_status"], rest.json()["paid"]) == ("paid", "100.00")
    assert [(p["amount"], p["method"]) for p in rest.json()["payments"]] == [
        ("40.00", "bank_transfer"), ("60.00", "card")]
    assert stored() == (2, 2)  # two payments; events partially_paid, paid
    more = pay(client, auth, amount="0.01")
    assert (more.status_code, more.json()["error"]["field"]) == (409, "invoice")
    assert "paid already" in more.json()["error"]["message"]
    assert client.post("/v1/invoices/E-000001/void", headers=auth).status_code == 409
    assert stored() == (2, 2)


@pytest.mark.parametrize(("ref", "change", "status", "field", "says"), [
    ("E-000001", {"amount": "100.01"}, 422, "amount", "more than the 100.00 still due"),
    ("E-000001", {"amount": "-5.00"}, 422, "amount", "greater than 0"),
    ("E-000001", {"amount": "0"}, 422, "amount", "greater than 0"),
    ("E-000001", {"amount": "1.001"}, 422, "amount", "decimal places"),
    ("E-000001", {"amount": "lots"}, 422, "amount", ""),
    ("E-000001", {"currency": "EUR"}, 422, "currency", "currency EUR is not the invoice's USD"),
    ("E-000001", {"currency": "XYZ"}, 422, "currency", ""),
    ("E-000001", {"date": "yesterday"}, 422, "date", ""),
    ("E-000001", {"method": "barter"}, 422, "method", ""),
    ("t@2026-03-01", {}, 409, "invoice", "draft is not payable"),
    ("E-000099", {}, 404, None, ""),
    ("nope@2026-03-01", {}, 404, None, ""),
])
def test_a_refused_payment_is_one_4xx_and_stores_nothing(
        api: tuple[TestClient, dict[str, str]], ref: str, change: dict[str, Any],
        status: int, field: str | None, says: str) -> None:
    client, auth = api
    refused = pay(client, auth, ref, **change)
    assert refused.status_code == status, refused.text
    error = refused.json()["error"]
    if field is not None:
        assert error["field"] == field
    assert says in error["message"]
    assert stored() == (0, 0)
    assert client.get("/v1/invoices/E-000001", headers=auth).json()["payment_status"] == "open"


def test_void_then_no_payment_and_uncollectible_then_payment(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    voided = client.post("/v1/invoices/E-000001/void", headers=auth)
    assert (voided.status_code, voided.json()["payment_status"]) == (200, "void")
    assert voided.json()["number"] == "E-000001"  # its number stays used
    assert client.post("/v1/invoices/E-000001/void", headers=auth).status_code == 200
    refused = pay(client, auth)
    assert (refused.status_code, refused.json()["error"]["message"]) == (
        409, "E-000001: the invoice is void")
    assert client.post("/v1/invoices/E-000001/mark-uncollectible",
                       headers=auth).status_code == 409
    assert stored() == (0, 1)
    assert client.post("/v1/invoices/t@2026-03-01/void", headers=auth).status_code == 409


def test_overdue_is_open_past_its_due_date(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    clock.use(clock.SimulatedClock(datetime(2026, 4, 1, 9, tzinfo=UTC)))
    invoice = client.get("/v1/invoices/E-000001", headers=auth).json()
    assert (invoice["payment_status"], invoice["overdue"]) == ("open", True)
    assert payments.overdue_now("e", datetime(2026, 3, 31, 23, tzinfo=UTC)) == []  # due day
    told = payments.overdue_now("e", datetime(2026, 4, 1, 8, tzinfo=UTC))
    assert len(told) == 1 and payments.overdue_now("e", datetime(2026, 4, 2, tzinfo=UTC)) == []
    uncollectible = client.post("/v1/invoices/E-000001/mark-uncollectible", headers=auth)
    assert (uncollectible.json()["payment_status"], uncollectible.json()["overdue"]) == (
        "uncollectible", False)
    late = pay(client, auth, amount="100.00", date="2026-04-01")  # a late payment counts
    assert late.json()["payment_status"] == "paid"


def test_customer_details_through_put(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    put = client.put("/v1/customers/c", headers=auth, json={
        "entity": "e", "legal_name": "Ganga AI Pvt Ltd", "tax_id": "29ABCDE1234F1Z5",
        "net_terms": 45, "locale": "ja"})
    assert put.status_code == 200, put.text
    assert {k: put.json().get(k) for k in ("legal_name", "net_terms", "locale", "address")} == {
        "legal_name": "Ganga AI Pvt Ltd", "net_terms": 45, "locale": "ja", "address": None}
    # a sent invoice keeps the parties it was sent with
    assert client.get("/v1/invoices/E-000001", headers=auth).json()["buyer"][
        "legal_name"] == "Ganga AI Private Limited"
    for change, field in (({"net_terms": -1}, "net_terms"), ({"locale": "xx"}, "locale"),
                          ({"legal_name": ""}, "legal_name")):
        refused = client.put("/v1/customers/c", headers=auth, json={"entity": "e", **change})
        assert (refused.status_code, refused.json()["error"]["field"]) == (422, field), \
            refused.text
    assert client.get("/v1/customers/c", headers=auth).json()["net_terms"] == 45


def test_the_pdf_and_the_python_client(api: tuple[TestClient, dict[str, str]]) -> None:
    pypdf = pytest.importorskip("pypdf")
    client, auth = api
    key = auth["Authorization"].removeprefix("Bearer ")
    with BillingClient("http://testserver", key, transport=client._transport) as billing:
        paid = billing.record_payment("E-000001", Decimal("100.00"), "USD", "2026-03-09",
                                      method="card", reference="ch_1")
        assert paid["payment_status"] == "paid"
        with pytest.raises(BillingError) as refused:
            billing.void_invoice("E-000001")
        assert refused.value.status == 409
        document = billing.invoice_pdf("E-000001")
    assert document.startswith(b"%PDF")
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(BytesIO(document)).pages)
    for expected in ("E-000001", "Example Labs GmbH", "DE123456789",
                     "Ganga AI Private Limited", "29ABCDE1234F1Z5", "$100.00", "PAID"):
        assert expected in text, (expected, text)
