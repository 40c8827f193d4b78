"""Alerts over HTTP (docs/billing-rules.md §19) and through the Python client: create
(once per Idempotency-Key), list, read, delete; bad input is one 4xx naming its field and
stores nothing; an alert created past a threshold fires at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from billing_client import BillingClient, BillingError
from fastapi.testclient import TestClient

from services import alerts as alerts_service
from services import api_keys, clock, usage
from services import catalog as catalog_service
from services import portal as portal_service
from services.settings import settings
from web.app import create_app
from workers.broker import stub_broker, use

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, str]]]:
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    catalog_service.apply_document({
        "entities": [{"id": "e", "timezone": "UTC"}],
        "meters": [{"id": "calls", "aggregation": "sum"}],
        "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
             "unit_price": "0.50"}]}],
        "customers": [{"id": "ana", "entity": "e"}, {"id": "bo", "entity": "e"}]}, NOW)
    _, key = api_keys.create("tests", NOW)
    use(stub_broker())  # alert events are queued in process; nothing consumes them here
    clock.use(clock.SimulatedClock(NOW))
    try:
        with TestClient(create_app()) as client:
            assert client.post("/v1/subscriptions", json={
                "id": "s1", "customer": "ana", "plan": "p", "start": "2026-03-01"},
                headers={"Authorization": f"Bearer {key}"}).status_code == 201
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        clock.reset()


ALERT = {"id": "spend", "customer": "ana", "subscription": "s1", "kind": "usage_amount",
         "thresholds": ["10.00", "20.00"], "recurring_step": "50.00"}


def test_create_read_list_and_delete(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    made = client.post("/v1/alerts", json=ALERT, headers={**auth, "Idempotency-Key": "a-1"})
    assert made.status_code == 201, made.text
    assert made.json()["thresholds"] == ["10.00", "20.00"]
    assert made.json()["recurring_step"] == "50.00"
    again = client.post("/v1/alerts", json=ALERT, headers={**auth, "Idempotency-Key": "a-1"})
    assert (again.status_code, again.json()) == (201, made.json())
    taken = client.post("/v1/alerts", json=ALERT, headers=auth)
    assert (taken.status_code, taken.json()["error"]["field"]) == (409, "id")
    assert client.get("/v1/alerts/spend", headers=auth).json() == made.json()
    assert [a["id"] for a in client.get("/v1/alerts", params={"customer": "ana"},
                                        headers=auth).json()["alerts"]] == ["spend"]
    assert client.get("/v1/alerts", params={"customer": "bo"},
                      headers=auth).json()["alerts"] == []
    gone = client.delete("/v1/alerts/spend", headers={**auth, "Idempotency-Key": "d-1"})
    assert gone.status_code == 200 and gone.json() == {"id": "spend", "deleted": True}
    assert client.delete("/v1/alerts/spend",
                         headers={**auth, "Idempotency-Key": "d-1"}).json() == gone.json()
    assert client.get("/v1/alerts/spend", headers=auth).status_code == 404
    assert client.delete("/v1/alerts/spend", headers=auth).status_code == 404


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"thresholds": ["0"]}, 422, "thresholds[0]"),
    ({"thresholds": ["-1.00"]}, 422, "thresholds[0]"),
    ({"thresholds": ["20.00", "10.00"]}, 422, "thresholds[1]"),
    ({"thresholds": ["10", "10"]}, 422, "thresholds[1]"),
    ({"thresholds": []}, 422, "thresholds"),
    ({"recurring_step": "0"}, 422, "recurring_step"),
    ({"kind": "usage_quantity", "meter": "tokens"}, 404, "meter"),
    ({"kind": "usage_quantity"}, 422, "meter"),
    ({"kind": "nope"}, 422, "kind"),
    ({"customer": "ghost"}, 404, "customer"),
    ({"subscription": "nope"}, 404, "subscription"),
    ({"customer": "bo"}, 404, "subscription"),  # s1 is ana's
    ({"kind": "credit_balance", "subscription": None, "currency": "ABC",
      "recurring_step": None}, 422, "currency"),
])
def test_bad_input_is_one_4xx_naming_the_field_and_stores_nothing(
        api: tuple[TestClient, dict[str, str]], change: dict[str, object], status: int,
        field: str) -> None:
    client, auth = api
    answer = client.post("/v1/alerts", json={**ALERT, **change}, headers=auth)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert client.get("/v1/alerts", headers=auth).json()["alerts"] == []


def test_an_alert_created_past_a_threshold_fires_at_once(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    usage.ingest_message([{"key": "u1", "customer": "ana", "meter": "calls",
                           "quantity": "50", "timestamp": "2026-03-05T00:00:00Z"}],
                         "m-1", NOW)  # 25.00
    assert client.post("/v1/alerts", json=ALERT, headers=auth).status_code == 201
    fired = alerts_service.events(alert_id="spend")
    assert [e.payload["thresholds"] for e in fired] == [["10.00", "20.00"]]
    assert fired[0].payload["value"] == "25.00"
    assert fired[0].payload["period"] == {"start": "2026-03-01", "end": "2026-04-01"}
    # evaluated again: nothing more
    assert alerts_service.evaluate_customers(["ana"], NOW) == []


def test_the_python_client(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    key = auth["Authorization"].removeprefix("Bearer ")
    with BillingClient("http://testserver", key, transport=client._transport) as billing:
        made = billing.create_alert("calls", "ana", "usage_quantity", [100, "200"],
                                    meter="calls")
        assert (made["meter"], made["thresholds"]) == ("calls", ["100", "200"])
        assert [a["id"] for a in billing.alerts(customer="ana")] == ["calls"]
        assert billing.alert("calls")["kind"] == "usage_quantity"
        assert billing.delete_alert("calls")["deleted"] is True
        with pytest.raises(BillingError) as refused:
            billing.create_alert("x", "ana", "usage_amount", ["5", "1"])
        assert (refused.value.status, refused.value.field) == (422, "thresholds[1]")


def test_the_portal_shows_a_banner_for_a_threshold_crossed_this_period(
        api: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    client, auth = api
    monkeypatch.setenv("BILLING_PORTAL_SECRET", "a-test-secret-of-some-length")
    monkeypatch.setenv("BILLING_PORTAL_URL", "http://portal.test")
    settings.cache_clear()
    try:
        usage.ingest_message([{"key": "u1", "customer": "ana", "meter": "calls",
                               "quantity": "50", "timestamp": "2026-03-05T00:00:00Z"}],
                             "m-1", NOW)
        assert client.post("/v1/alerts", json=ALERT, headers=auth).status_code == 201
        assert client.post("/v1/alerts", json={
            "id": "calls", "customer": "ana", "kind": "usage_quantity", "meter": "calls",
            "thresholds": ["40", "1000"]}, headers=auth).status_code == 201
        link = portal_service.create_link("ana", None, NOW)
        html = client.get(link.url.removeprefix("http://portal.test")).text
        assert "Your estimated usage charges on s1 passed $20.00 this period ($25.00 so " \
               "far)." in html
        assert "Your calls usage on s1 passed 40 this period (50 so far)." in html
        # next period: nothing crossed yet, no banner
        clock.use(clock.SimulatedClock(datetime(2026, 4, 2, tzinfo=UTC)))
        assert portal_service.page("ana", clock.now()).alerts == ()
    finally:
        settings.cache_clear()


def test_a_runaway_crosses_many_recurring_thresholds_in_one_event_and_none_again(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    assert client.post("/v1/alerts", json={
        "id": "every", "customer": "ana", "kind": "usage_quantity", "meter": "calls",
        "thresholds": ["10", "20"], "recurring_step": "1"}, headers=auth).status_code == 201
    usage.ingest_message([{"key": "u1", "customer": "ana", "meter": "calls",
                           "quantity": "500", "timestamp": "2026-03-05T00:00:00Z"}],
                         "m-1", NOW)
    alerts_service.evaluate_customers(["ana"], NOW)  # (on PostgreSQL the fold would)
    usage.ingest_message([{"key": "u2", "customer": "ana", "meter": "calls",
                           "quantity": "1", "timestamp": "2026-03-06T00:00:00Z"}],
                         "m-2", NOW)
    alerts_service.evaluate_customers(["ana"], NOW)
    first, second = (e.payload for e in alerts_service.events(alert_id="every"))
    assert first["thresholds_crossed"] == 2 + 480  # 10, 20, then 21 … 500
    assert first["thresholds"][:3] == ["10", "20", "401"]
    assert first["thresholds"][-1] == "500" and len(first["thresholds"]) == 102
    assert (second["thresholds"], second["thresholds_crossed"]) == (["501"], 1)
