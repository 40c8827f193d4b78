"""Plan changes over HTTP (SPEC §14) and through the Python client: the change (once per
Idempotency-Key), its preview (nothing changes), the plan history of a subscription, and
every refusal as one 4xx with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from billing_client import BillingClient, BillingError
from fastapi.testclient import TestClient

from domain.periods import bill_run_instant
from persistence.db import unit_of_work
from services import api_keys, clock, invoicing, subscriptions
from services import catalog as catalog_service
from web.app import create_app

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, str]]]:
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    start = datetime(2026, 2, 20, tzinfo=UTC)
    catalog_service.apply_document({
        "entities": [{"id": "e", "timezone": "UTC"}],
        "meters": [],
        "plans": [{"id": p, "currency": "EUR", "interval": i, "charges": [
            {"id": "base", "type": "recurring", "amount": a}]}
            for p, a, i in (("starter", "20.00", "month"), ("pro", "100.00", "month"),
                            ("yearly", "900.00", "year"))],
        "customers": [{"id": "c", "entity": "e"}]}, start)
    with unit_of_work() as session:
        subscriptions.do_subscribe(session, start, {"id": "s", "customer": "c",
                                                    "plan": "starter", "start": "2026-03-01"})
    invoicing.run_bill_run_now("e", date(2026, 3, 1), bill_run_instant(date(2026, 3, 1), "UTC"))
    _, key = api_keys.create("tests", NOW)
    clock.use(clock.SimulatedClock(NOW))
    try:
        with TestClient(create_app()) as client:
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        clock.reset()


def test_preview_then_change_then_history(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    preview = client.post("/v1/subscriptions/s/change-plan/preview",
                          json={"plan": "pro", "from": "2026-03-11"}, headers=auth)
    assert preview.status_code == 200, preview.text
    lines = preview.json()["estimate"]["lines"]
    assert [(ln["type"], ln.get("plan"), ln["quantity"], ln["amount"]) for ln in lines] == [
        ("proration", "pro", "21", "67.74"), ("proration", "starter", "-21", "-13.55"),
        ("recurring", None, "1", "100.00")]
    assert client.get("/v1/subscriptions/s", headers=auth).json()["plans"] == [
        {"plan": "starter", "version": 1, "from": "2026-03-01"}]  # nothing changed
    changed = client.post("/v1/subscriptions/s/change-plan", headers={
        **auth, "Idempotency-Key": "up"}, json={"plan": "pro", "from": "2026-03-11"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["plans"] == [{"plan": "starter", "version": 1, "from": "2026-03-01"},
                                       {"plan": "pro", "version": 1, "from": "2026-03-11"}]
    again = client.post("/v1/subscriptions/s/change-plan", headers={
        **auth, "Idempotency-Key": "up"}, json={"plan": "pro", "from": "2026-03-11"})
    assert again.json() == changed.json()
    reused = client.post("/v1/subscriptions/s/change-plan", headers={
        **auth, "Idempotency-Key": "up"}, json={"plan": "starter", "from": "2026-03-11"})
    assert reused.status_code == 422


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"plan": "yearly", "from": "2026-03-20"}, 409, "bills every year"),
    ({"plan": "starter", "from": "2026-03-20"}, 409, "in force on 2026-03-20 already"),
    ({"plan": "pro", "from": "2026-02-28"}, 409, "before the current period"),
    ({"plan": "pro", "from": "2026-04-02"}, 409, "after the next boundary"),
    ({"plan": "ghost", "from": "2026-03-20"}, 404, "not a known plan"),
    ({"plan": "pro", "from": "soon"}, 422, "YYYY-MM-DD"),
    ({"plan": "pro"}, 422, "from"),
])
def test_a_refused_change_is_one_4xx_and_changes_nothing(
        api: tuple[TestClient, dict[str, str]], body: dict[str, str], status: int,
        says: str) -> None:
    client, auth = api
    for path in ("/v1/subscriptions/s/change-plan/preview", "/v1/subscriptions/s/change-plan"):
        refused = client.post(path, json=body, headers=auth)
        assert refused.status_code == status, refused.text
        assert says in refused.json()["error"]["message"]
    assert len(client.get("/v1/subscriptions/s", headers=auth).json()["plans"]) == 1
    assert client.post("/v1/subscriptions/nope/change-plan", json={
        "plan": "pro", "from": "2026-03-20"}, headers=auth).status_code == 404


def test_the_python_client(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    key = auth["Authorization"].removeprefix("Bearer ")
    with BillingClient("http://testserver", key, transport=client._transport) as billing:
        assert billing.preview_plan_change("s", "pro", date(2026, 4, 1))["estimate"][
            "lines"][0]["amount"] == "100.00"  # from the next boundary: no proration
        assert billing.change_plan("s", "pro", date(2026, 4, 1))["plans"][-1] == {
            "plan": "pro", "version": 1, "from": "2026-04-01"}
        with pytest.raises(BillingError) as refused:
            billing.change_plan("s", "yearly", "2026-04-01")
        assert refused.value.status == 409


def test_the_portal_shows_segments_and_proration(api: tuple[TestClient, dict[str, str]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from services import portal as portal_service
    from services.settings import settings

    client, auth = api
    monkeypatch.setenv("BILLING_PORTAL_SECRET", "a-test-secret-of-some-length")
    monkeypatch.setenv("BILLING_PORTAL_URL", "http://portal.test")
    settings.cache_clear()
    try:
        assert client.post("/v1/subscriptions/s/change-plan", headers=auth, json={
            "plan": "pro", "from": "2026-03-11"}).status_code == 200
        link = portal_service.create_link("c", None, NOW)
        page = client.get(link.url.removeprefix("http://portal.test")).text
    finally:
        settings.cache_clear()
    assert "base on pro, 21 of 31 days charged" in page
    assert "base on starter, 21 of 31 days credited" in page
    assert "€67.74" in page and "-€13.55" in page
