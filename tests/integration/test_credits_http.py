"""Prepaid credits over HTTP (SPEC §12) and through the Python client: grant (once per
Idempotency-Key), read a grant's ledger, a customer's grants and balance, void; every
refusal is one 4xx naming its field, and nothing is stored from it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from billing_client import BillingClient, BillingError
from fastapi.testclient import TestClient

from services import api_keys, clock
from services import catalog as catalog_service
from web.app import create_app

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, str]]]:
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    catalog_service.apply_document({
        "entities": [{"id": "e", "timezone": "UTC"}],
        "customers": [{"id": "ana", "entity": "e"}]}, NOW)
    _, key = api_keys.create("tests", NOW)
    clock.use(clock.SimulatedClock(NOW))
    try:
        with TestClient(create_app()) as client:
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        clock.reset()


GRANT = {"id": "welcome", "customer": "ana", "currency": "USD", "amount": "25.00",
         "expires_at": "2027-01-01T00:00:00Z", "priority": 10}


def test_grant_read_list_balance_and_void(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    made = client.post("/v1/credit-grants", json=GRANT,
                       headers={**auth, "Idempotency-Key": "g-1"})
    assert made.status_code == 201, made.text
    assert {k: made.json()[k] for k in ("id", "amount", "used", "remaining", "priority")} == {
        "id": "welcome", "amount": "25.00", "used": "0.00", "remaining": "25.00",
        "priority": 10}
    again = client.post("/v1/credit-grants", json=GRANT,
                        headers={**auth, "Idempotency-Key": "g-1"})
    assert (again.status_code, again.json()) == (201, made.json())
    other = client.post("/v1/credit-grants", json={**GRANT, "amount": "99.00"},
                        headers={**auth, "Idempotency-Key": "g-1"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert client.get("/v1/credit-grants/welcome", headers=auth).json()["amount"] == "25.00"
    clock.use(clock.SimulatedClock(NOW.replace(hour=13)))  # usable after it was granted
    assert client.get("/v1/customers/ana/credit-balance", headers=auth).json() == {
        "customer": "ana", "balances": [{"currency": "USD", "balance": "25.00"}]}
    grants = client.get("/v1/customers/ana/credit-grants", headers=auth).json()["grants"]
    assert [g["id"] for g in grants] == ["welcome"]
    voided = client.post("/v1/credit-grants/welcome/void", headers=auth)
    assert (voided.status_code, voided.json()["voided"], voided.json()["remaining"]) == (
        200, "25.00", "0.00")
    assert client.post("/v1/credit-grants/welcome/void", headers=auth).status_code == 200
    assert client.get("/v1/customers/ana/credit-balance", headers=auth).json()["balances"] == []


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"customer": "ghost"}, 404, "customer"),
    ({"id": "credit-sub@2026-01-01"}, 422, "id"),
    ({"amount": "10.005"}, 422, "amount"),
    ({"amount": "0"}, 422, "amount"),
    ({"amount": 10.5}, 422, "amount"),  # a JSON float is never read as money
    ({"currency": "XYZ"}, 422, "currency"),
    ({"expires_at": "2026-03-01T11:00:00Z"}, 422, "expires_at"),
    ({"expires_at": "tomorrow"}, 422, "expires_at"),
    ({"priority": 101}, 422, "priority"),
    ({"colour": "red"}, 422, "colour"),
])
def test_a_refused_grant_names_its_field_and_stores_nothing(
        api: tuple[TestClient, dict[str, str]], change: dict[str, Any], status: int,
        field: str) -> None:
    client, auth = api
    refused = client.post("/v1/credit-grants", json={**GRANT, **change}, headers=auth)
    assert refused.status_code == status, refused.text
    assert refused.json()["error"]["field"] == field
    assert client.get(f"/v1/credit-grants/{GRANT['id']}", headers=auth).status_code == 404


def test_a_taken_id_is_a_conflict(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    assert client.post("/v1/credit-grants", json=GRANT, headers=auth).status_code == 201
    taken = client.post("/v1/credit-grants", json={**GRANT, "amount": "1.00"}, headers=auth)
    assert (taken.status_code, taken.json()["error"]["field"]) == (409, "id")
    assert client.get("/v1/credit-grants/welcome", headers=auth).json()["amount"] == "25.00"


def test_unknown_grants_and_customers_are_404(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    for path in ("/v1/credit-grants/nope", "/v1/customers/ghost/credit-grants",
                 "/v1/customers/ghost/credit-balance"):
        assert client.get(path, headers=auth).status_code == 404
    assert client.post("/v1/credit-grants/nope/void", headers=auth).status_code == 404


def test_the_python_client(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    key = auth["Authorization"].removeprefix("Bearer ")
    with BillingClient("http://testserver", key, transport=client._transport) as billing:
        made = billing.grant_credits("topup", "ana", "EUR", Decimal("100.00"),
                                     expires_at=datetime(2027, 1, 1, tzinfo=UTC))
        assert (made["currency"], made["remaining"]) == ("EUR", "100.00")
        clock.use(clock.SimulatedClock(NOW.replace(hour=13)))
        assert billing.credit_balance("ana") == {"EUR": Decimal("100.00")}
        assert [g["id"] for g in billing.credit_grants("ana")] == ["topup"]
        assert billing.void_credits("topup")["voided"] == "100.00"
        with pytest.raises(BillingError) as refused:
            billing.grant_credits("x", "ghost", "EUR", "1")
        assert (refused.value.status, refused.value.field) == (404, "customer")
