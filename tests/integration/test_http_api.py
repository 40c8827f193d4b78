"""The HTTP API (issue #12), driven over HTTP (FastAPI's test client) on every store and
broker: every endpoint, 401s, refusals in the response, idempotent retries, oversize
requests, and usage ingested by the workers through the broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services import api_keys
from tests.conftest import Runtime
from tests.integration.helpers import apply_catalog
from web.app import create_app


@pytest.fixture
def api(runtime: Runtime) -> Iterator[tuple[TestClient, Runtime]]:
    apply_catalog()
    runtime.at("2026-01-01T06:00:00Z")
    _, key = api_keys.create("tests", datetime(2026, 1, 1, tzinfo=UTC))
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, runtime


def event(key: str, quantity: Any = "10", **kw: Any) -> dict[str, Any]:
    return {"key": key, "customer": "c-1", "meter": "tokens", "quantity": quantity,
            "timestamp": "2026-01-05T10:00:00Z", **kw}


def test_every_endpoint_needs_a_key_but_healthz(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    for method, path in [("get", "/v1/invoices"), ("post", "/v1/usage"),
                         ("get", "/v1/customers/c-1"), ("put", "/v1/customers/c-1"),
                         ("post", "/v1/subscriptions"), ("get", "/v1/subscriptions/s"),
                         ("post", "/v1/subscriptions/s/cancel"),
                         ("get", "/v1/usage/batches/b"), ("get", "/v1/invoices/1")]:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer bk_nope"},
                        {"Authorization": "Basic abc"}):
            answer = getattr(client, method)(path, headers=headers)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized"
    health = client.get("/healthz", headers={"Authorization": ""})
    assert health.status_code == 200 and health.json()["database"] == "ok"


def test_a_revoked_key_is_refused(api: tuple[TestClient, Runtime]) -> None:
    client, runtime = api
    _, other = api_keys.create("other", runtime.clock.now())
    headers = {"Authorization": f"Bearer {other}"}
    assert client.get("/v1/invoices", headers=headers).status_code == 200
    api_keys.revoke("other", runtime.clock.now())
    assert client.get("/v1/invoices", headers=headers).status_code == 401


def test_usage_is_ingested_by_the_workers_and_its_batch_tells_the_outcome(
        api: tuple[TestClient, Runtime]) -> None:
    client, runtime = api
    runtime.at("2026-01-06T00:00:00Z")
    body = {"events": [event("e-1", "1.5", properties={"n": 7.0}),
                       event("e-1", "1.50", properties={"n": 7}),
                       event("bad", "-1"), event("late\u0000", "1")]}
    answer = client.post("/v1/usage", json=body)
    assert answer.status_code == 202, answer.text
    batch = answer.json()["batch"]
    assert answer.json()["events"] == 4
    queued = client.get(f"/v1/usage/batches/{batch}").json()
    assert queued["status"] in ("queued", "processed")
    runtime.drain()
    done = client.get(f"/v1/usage/batches/{batch}").json()
    assert done["status"] == "processed"
    assert (done["accepted"], done["duplicate"], done["conflict"], done["rejected"]) == (1, 1,
                                                                                          0, 2)
    reasons = {r["key"]: r["reason"] for r in done["rejections"]}
    assert reasons["bad"].startswith("quantity:")
    assert client.get("/v1/usage/batches/nope").status_code == 404


def test_a_usage_request_retried_with_its_key_is_one_batch(
        api: tuple[TestClient, Runtime]) -> None:
    client, runtime = api
    runtime.at("2026-01-06T00:00:00Z")
    body = {"events": [event("e-1"), event("e-2")]}
    first = client.post("/v1/usage", json=body, headers={"Idempotency-Key": "k-1"}).json()
    again = client.post("/v1/usage", json=body, headers={"Idempotency-Key": "k-1"}).json()
    assert first["batch"] == again["batch"]
    runtime.drain()
    done = client.get(f"/v1/usage/batches/{first['batch']}").json()
    assert done["accepted"] == 2 and done["duplicate"] == 0  # the retry changed nothing


def test_the_events_text_goes_to_the_workers_as_it_came(
        api: tuple[TestClient, Runtime]) -> None:
    """The web process forwards the events' JSON text without encoding it again: odd
    spacing, exact decimals and long integers survive; a later duplicate ``events`` member
    wins (as a JSON parser reads it); a body with non-ASCII text is re-encoded instead."""
    from persistence.db import unit_of_work
    from persistence.tables import UsageEventRow

    client, runtime = api
    runtime.at("2026-01-06T00:00:00Z")
    long = "1" + "0" * 40
    forwarded = ('{ "ignored": {"events": []},\n "events" : [ {"key":"x-1","customer":"c-1",'
                 '"meter":"tokens","quantity":0.000000000000000000001,'
                 '"timestamp":"2026-01-05T10:00:00Z"} ] ,"events":[{"key":"x-2",'
                 '"customer":"c-1","meter":"tokens","quantity": ' + long + ','
                 '"timestamp":"2026-01-05T10:00:00Z","properties":{"n":1.10}}]}')
    accented = {"events": [event("x-3", "2.50", properties={"model": "génération"})]}
    batches = [client.post("/v1/usage", content=forwarded.encode(),
                           headers={"Content-Type": "application/json"}).json()["batch"],
               client.post("/v1/usage", json=accented).json()["batch"]]
    runtime.drain()
    for batch in batches:
        assert client.get(f"/v1/usage/batches/{batch}").json()["accepted"] == 1
    with unit_of_work() as session:
        stored = {e.key: e for e in session.query(UsageEventRow).filter(
            UsageEventRow.key.in_(["x-1", "x-2", "x-3"]))}
    assert set(stored) == {"x-2", "x-3"}
    assert str(stored["x-2"].quantity) == long
    assert stored["x-3"].properties == {"model": "génération"}


def test_oversize_and_malformed_usage_requests(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    too_many = client.post("/v1/usage", json={"events": [event(f"e-{i}") for i in range(1001)]})
    assert too_many.status_code == 413 and too_many.json()["error"]["field"] == "events"
    huge = client.post("/v1/usage", content=b'{"events": ["' + b"x" * 1_100_000 + b'"]}',
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
    for bad in (b"not json", b"[1]", b'{"events": []}', b'{"events": 3}', b"\xff\xfe"):
        answer = client.post("/v1/usage", content=bad,
                             headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, (bad, answer.text)
        assert set(answer.json()["error"]) == {"code", "message", "field"}


def test_customers(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    created = client.put("/v1/customers/c-9", json={"entity": "acme", "email": "a@b.example"})
    assert created.status_code == 201, created.text
    assert created.json() == {"id": "c-9", "entity": "acme", "email": "a@b.example",
                              "draft_invoices": False, "legal_name": None, "address": None,
                              "tax_id": None, "net_terms": None, "locale": None,
                              "taxes": None, "tax_exempt": False}
    updated = client.put("/v1/customers/c-9", json={"entity": "acme", "draft_invoices": True})
    assert updated.status_code == 200 and updated.json()["draft_invoices"] is True
    assert client.get("/v1/customers/c-9").json()["draft_invoices"] is True
    assert client.get("/v1/customers/nobody").status_code == 404
    unknown = client.put("/v1/customers/c-8", json={"entity": "nowhere"})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "entity"
    bad = client.put("/v1/customers/c-8", json={"entity": "acme", "email": "nope"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "email"
    assert client.put("/v1/customers/c-8", json={}).status_code == 422


def test_subscriptions_refusals_come_back_in_the_response(
        api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    created = client.post("/v1/subscriptions", json={"id": "s-1", "customer": "c-1",
                                                      "plan": "pro", "start": "2026-01-01"})
    assert created.status_code == 201, created.text
    sub = created.json()
    assert (sub["status"], sub["plan_version"], sub["next_boundary"]) == (
        "active", 1, "2026-01-01")
    overlap = client.post("/v1/subscriptions", json={"id": "s-2", "customer": "c-1",
                                                      "plan": "tokens-too",
                                                      "start": "2026-03-01"})
    assert overlap.status_code == 409 and "overlaps" in overlap.json()["error"]["message"]
    assert overlap.json()["error"]["field"] == "plan"  # #27: the README says "with the field"
    plan = client.post("/v1/subscriptions", json={"id": "s-3", "customer": "c-1",
                                                   "plan": "nope", "start": "2026-03-01"})
    assert plan.status_code == 404 and plan.json()["error"]["field"] == "plan"
    discount = client.post("/v1/subscriptions", json={
        "id": "s-4", "customer": "c-1", "plan": "seats-only", "start": "2026-03-01",
        "discount": {"percent": "150"}})
    assert discount.status_code == 422
    assert discount.json()["error"]["field"] == "subscribe.discount.percent"
    date = client.post("/v1/subscriptions", json={"id": "s-5", "customer": "c-1",
                                                   "plan": "seats-only", "start": "soon"})
    assert date.status_code == 422 and date.json()["error"]["field"] == "subscribe.start"
    assert client.get("/v1/subscriptions/s-9").status_code == 404
    assert client.post("/v1/subscriptions/s-9/cancel").status_code == 404


def test_commands_retried_with_their_key_apply_once(api: tuple[TestClient, Runtime]) -> None:
    client, runtime = api
    body = {"id": "s-1", "customer": "c-1", "plan": "pro", "start": "2026-01-01"}
    first = client.post("/v1/subscriptions", json=body, headers={"Idempotency-Key": "a"})
    again = client.post("/v1/subscriptions", json=body, headers={"Idempotency-Key": "a"})
    assert first.status_code == again.status_code == 201
    runtime.at("2026-01-10T00:00:00Z")
    cancel = client.post("/v1/subscriptions/s-1/cancel", headers={"Idempotency-Key": "c"})
    assert cancel.json()["end"] == "2026-02-01"
    uncancel = client.post("/v1/subscriptions/s-1/uncancel", headers={"Idempotency-Key": "u"})
    assert uncancel.json()["end"] is None
    retried = client.post("/v1/subscriptions/s-1/cancel", headers={"Idempotency-Key": "c"})
    assert retried.status_code == 200 and retried.json() == cancel.json()  # the first answer
    assert client.get("/v1/subscriptions/s-1").json()["end"] is None  # applied once
    refused = client.post("/v1/subscriptions", json={**body, "plan": "seats-only"},
                          headers={"Idempotency-Key": "b"})
    refused_again = client.post("/v1/subscriptions", json={**body, "plan": "seats-only"},
                                headers={"Idempotency-Key": "b"})
    assert refused.status_code == refused_again.status_code == 409
    assert refused.json() == refused_again.json()


def test_invoices_pages_documents_release_and_regenerate(
        api: tuple[TestClient, Runtime]) -> None:
    from scheduler.tick import tick

    client, runtime = api
    for sub, customer in (("s-1", "c-1"), ("s-2", "c-2")):
        assert client.post("/v1/subscriptions", json={
            "id": sub, "customer": customer, "plan": "pro",
            "start": "2026-01-01"}).status_code == 201
    runtime.at("2026-01-01T07:15:00Z")
    tick(runtime.clock.now())
    runtime.drain()
    page = client.get("/v1/invoices", params={"limit": 1}).json()
    assert len(page["invoices"]) == 1 and page["next"] is not None
    rest = client.get("/v1/invoices", params={"limit": 1, "after": page["next"]}).json()
    assert len(rest["invoices"]) == 1
    assert rest["invoices"][0]["reference"] != page["invoices"][0]["reference"]
    assert "id" not in rest["invoices"][0]  # no internal id (#27)
    drafts = client.get("/v1/invoices", params={"status": "draft"}).json()["invoices"]
    assert [d["subscription"] for d in drafts] == ["s-2"]
    ref = "s-2@2026-01-01"
    assert client.get(f"/v1/invoices/{ref}").json()["number"] is None
    html = client.get(f"/v1/invoices/{ref}", headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html") and "DRAFT" in html.text
    assert client.post(f"/v1/invoices/{ref}/regenerate").status_code == 200
    released = client.post(f"/v1/invoices/{ref}/release", headers={"Idempotency-Key": "r"})
    assert released.status_code == 200 and released.json()["number"] == "AC-000002"
    again = client.post(f"/v1/invoices/{ref}/release", headers={"Idempotency-Key": "r"})
    assert again.status_code == 200 and again.json()["number"] == "AC-000002"
    not_a_draft = client.post(f"/v1/invoices/{ref}/release")
    assert not_a_draft.status_code == 409
    assert client.get("/v1/invoices/AC-000002").json()["subscription"] == "s-2"
    assert client.get("/v1/invoices/nope").status_code == 404
    assert client.get("/v1/invoices", params={"status": "bogus"}).status_code == 422
    assert client.get("/v1/invoices", params={"after": "x"}).status_code == 422


def test_estimates(api: tuple[TestClient, Runtime]) -> None:
    client, runtime = api
    client.post("/v1/subscriptions", json={"id": "s-1", "customer": "c-1", "plan": "pro",
                                           "start": "2026-01-01"})
    runtime.at("2026-01-06T00:00:00Z")
    client.post("/v1/usage", json={"events": [event("e-1", "2000")]})
    runtime.drain()
    estimate = client.get("/v1/subscriptions/s-1/estimate").json()
    assert estimate["boundary"] == "2026-02-01" and estimate["total"] == "51.00"
    customer = client.get("/v1/customers/c-1/estimate").json()
    assert [e["subscription"] for e in customer["estimates"]] == ["s-1"]
    assert client.get("/v1/customers/nobody/estimate").status_code == 404
    assert client.get("/v1/subscriptions/s-1/estimate",
                      params={"at": "9999-01-01T00:00:00Z"}).status_code == 422


def test_openapi_and_docs_are_served(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = json.loads(spec.text)["paths"]
    assert {"/v1/usage", "/v1/invoices/{ref}", "/v1/subscriptions/{subscription_id}/cancel",
            "/healthz"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_ids_that_cannot_exist_are_not_found(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    for method, path in [("get", "/v1/customers/a%00b"), ("get", "/v1/subscriptions/a%00b"),
                         ("post", "/v1/subscriptions/a%00b/cancel"),
                         ("get", "/v1/invoices/a%00b"), ("get", "/v1/usage/batches/a%00b"),
                         ("get", "/v1/subscriptions/a%00b/estimate"),
                         ("get", "/v1/customers/" + "x" * 300)]:
        answer = getattr(client, method)(path)
        assert answer.status_code == 404, (path, answer.text)
    answer = client.put("/v1/customers/a%00b", json={"entity": "acme"})
    assert answer.status_code == 422 and "must not contain" in answer.json()["error"]["message"]
