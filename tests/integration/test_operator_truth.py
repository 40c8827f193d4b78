"""Issue #27, in process: what is due now can be issued now (a bill run at the present
instant, by the service and over HTTP), and what is due but not issued yet is shown —
"pending", with its amounts — before the estimate of the open period, in the preview, the
estimates of the API and the portal. Every invoice is named by its public reference."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from billing_client import BillingClient
from fastapi.testclient import TestClient

from domain.periods import bill_run_instant
from persistence.db import unit_of_work
from services import api_keys, clock, invoicing, subscriptions
from services import catalog as catalog_service
from services import portal as portal_service
from services.settings import settings
from services.usage import ingest
from web.app import create_app
from workers.broker import stub_broker, use

ZONE = "Asia/Kolkata"
# 07:58 in Kolkata on 6 December: the boundary of 6 December has passed (at midnight), the
# run of 08:15 has not come yet
EARLY = datetime(2026, 12, 6, 2, 28, tzinfo=UTC)
# 10:30 in Kolkata: after the run of the day
LATE = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_store: str) -> Iterator[None]:
    created = datetime(2026, 11, 1, tzinfo=UTC)
    catalog_service.apply_document({
        "entities": [{"id": "tokyo", "timezone": ZONE, "invoice_prefix": "IN"}],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [{"id": "pro", "currency": "INR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "1000.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.0015"}]}],
        "customers": [{"id": "ganga", "entity": "tokyo"},
                      {"id": "yamuna", "entity": "tokyo"}]}, created)
    with unit_of_work() as session:
        assert subscriptions.do_subscribe(session, created, {
            "id": "sub-ganga", "customer": "ganga", "plan": "pro",
            "start": "2026-11-06"}).status == "applied"
    with unit_of_work() as session:
        ingest(session, [{"key": "nov", "customer": "ganga", "meter": "tokens",
                          "quantity": "2500000", "timestamp": "2026-11-20T10:00:00Z"}],
               datetime(2026, 11, 21, tzinfo=UTC), "m-1")
    day = date(2026, 11, 6)
    invoicing.run_bill_run_now("tokyo", day, bill_run_instant(day, ZONE))  # the opening one
    yield
    clock.reset()


def test_pending_invoices_come_before_the_estimate(store: None) -> None:
    """#27 item 2: at 07:58 the preview showed only the period starting 2027-01-06 —
    November's usage, invoiced 17 minutes later, was visible nowhere."""
    waiting = invoicing.pending("sub-ganga", EARLY, latest=True)
    assert [p.reference for p in waiting] == ["sub-ganga@2026-12-06"]
    lines = {(ln.type, ln.charge): ln.amount for ln in waiting[0].invoice.lines}
    assert lines[("usage", "tokens")] == 3750  # 2.5M tokens at 0.0015
    assert waiting[0].invoice.total == 4750
    assert invoicing.preview("sub-ganga", EARLY, latest=True).boundary == date(2027, 1, 6)
    assert invoicing.pending("sub-ganga", datetime(2026, 12, 5, 18, tzinfo=UTC)) == []

    page = portal_service.page("ganga", EARLY)
    assert [(p.subscription, p.boundary, p.total) for p in page.pending] == [
        ("sub-ganga", date(2026, 12, 6), "₹4,750.00")]

    # issued: nothing pending any more
    invoicing.run_bill_run_now("tokyo", None, LATE)
    assert invoicing.pending("sub-ganga", LATE, latest=True) == []
    assert portal_service.page("ganga", LATE).pending == ()


def test_a_run_now_issues_what_is_due_now_and_is_idempotent(store: None) -> None:
    """#27 item 1: a subscription created after this morning's run had its opening invoice
    wait for tomorrow's run; `--date` of tomorrow is refused. A run at now issues it."""
    with unit_of_work() as session:
        assert subscriptions.do_subscribe(session, LATE, {
            "id": "sub-yamuna", "customer": "yamuna", "plan": "pro",
            "start": "2026-12-06"}).status == "applied"
    today = invoicing.bill_run_report("tokyo", date(2026, 12, 6), LATE)
    assert [i["reference"] for i in today.invoices] == ["IN-000002"]  # sub-ganga's only
    assert today.notes and "sub-yamuna" in today.notes[0]
    tomorrow = invoicing.bill_run_report("tokyo", date(2026, 12, 7), LATE)
    assert tomorrow.refusal is not None and "has not come yet" in tomorrow.refusal.detail

    report = invoicing.bill_run_report("tokyo", None, LATE)
    assert report.run_at == LATE and report.refusal is None
    assert [(i["reference"], i["outcome"], i["total"]) for i in report.invoices] == [
        ("IN-000003", "applied", "1000.00")]
    again = invoicing.bill_run_report("tokyo", None, LATE)
    assert again.invoices == () and again.document()["issued"] == 0


def test_bill_runs_and_pending_invoices_over_http(store: None, monkeypatch: pytest.MonkeyPatch,
                                                  request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("BILLING_PORTAL_SECRET", "a-test-secret-of-some-length")
    settings.cache_clear()
    request.addfinalizer(settings.cache_clear)
    _, key = api_keys.create("tests", EARLY)
    auth = {"Authorization": f"Bearer {key}"}
    clock.use(clock.SimulatedClock(EARLY))
    use(stub_broker(max_retries=0))  # the web process enqueues the deliveries
    with TestClient(create_app()) as client:
        estimate = client.get("/v1/subscriptions/sub-ganga/estimate", headers=auth).json()
        assert estimate["boundary"] == "2027-01-06"
        assert [(p["reference"], p["status"], p["total"]) for p in estimate["pending"]] == [
            ("sub-ganga@2026-12-06", "pending", "4750.00")]
        customer = client.get("/v1/customers/ganga/estimate", headers=auth).json()
        assert [p["reference"] for p in customer["pending"]] == ["sub-ganga@2026-12-06"]
        # the portal: "No invoice yet" for a customer with an invoice due (#27, item 2)
        link = portal_service.create_link("ganga", None, EARLY)
        page = client.get(link.url.split("://", 1)[1].partition("/")[2].join(["/", ""]))
        assert page.status_code == 200, page.text
        assert "Due, not issued yet" in page.text and "₹4,750.00" in page.text
        assert "No invoice yet" not in page.text
        assert page.text.index("Due, not issued yet") < page.text.index("sub-ganga</span>")

        assert client.post("/v1/bill-runs", json={"entity": "nowhere"},
                           headers=auth).status_code == 404
        refused = client.post("/v1/bill-runs", json={"entity": "tokyo",
                                                     "date": "2026-12-07"}, headers=auth)
        assert refused.status_code == 409 and "not come yet" in refused.json()["error"][
            "message"]
        assert client.post("/v1/bill-runs", json={"entity": "tokyo", "date": "soon"},
                           headers=auth).status_code == 422
        run = client.post("/v1/bill-runs", json={"entity": "tokyo"}, headers=auth)
        assert run.status_code == 200, run.text
        assert run.json()["run_at"] == "2026-12-06T02:28:00Z" and run.json()["issued"] == 1
        assert [i["reference"] for i in run.json()["invoices"]] == ["IN-000002"]
        again = client.post("/v1/bill-runs", json={"entity": "tokyo"}, headers=auth).json()
        assert again["issued"] == 0
        shown = client.get("/v1/invoices/IN-000002", headers=auth).json()
        assert shown["reference"] == "IN-000002" and "id" not in shown
        assert shown["issued_at"] == "2026-12-06T02:28:00Z"
        by_draft_reference = client.get("/v1/invoices/sub-ganga@2026-12-06", headers=auth)
        assert by_draft_reference.json()["number"] == "IN-000002"
        assert client.get("/v1/invoices/2", headers=auth).status_code == 404  # an id
        assert client.get("/v1/subscriptions/sub-ganga/estimate",
                          headers=auth).json()["pending"] == []

        # the Python client: the same run, and ids of one shape however they are made
        with BillingClient("http://testserver", key,
                           transport=client._transport) as billing:
            assert billing.bill_run("tokyo")["issued"] == 0
            batch = billing.send_usage([{"key": "k-1", "customer": "ganga",
                                         "meter": "tokens", "quantity": "1",
                                         "timestamp": "2026-12-06T01:00:00Z"}])
        plain = client.post("/v1/usage", headers=auth, json={"events": [
            {"key": "k-2", "customer": "ganga", "meter": "tokens", "quantity": "1",
             "timestamp": "2026-12-06T01:00:00Z"}]}).json()["batch"]
        assert re.fullmatch(r"http-usage-[0-9a-f-]{36}", batch.id), batch.id
        assert re.fullmatch(r"http-usage-[0-9a-f-]{36}", plain), plain
        links = [client.post("/v1/portal-links", json={"customer": "ganga"},
                             headers={**auth, **extra}).json()["id"]
                 for extra in ({}, {"Idempotency-Key": "link-1"})]
        made = portal_service.create_link("ganga", None, EARLY).id
        assert all(re.fullmatch(r"link-[0-9a-f-]{36}", i) for i in [*links, made]), links


def test_estimate_many_is_each_estimate_set_wise(store: None) -> None:
    """#29: the estimates of many subscriptions in one call are each one's ``estimate``;
    one that has none gets its ``Invalid`` and does not stop the others."""
    from domain.validation import Invalid
    from persistence import subscriptions as subs_repo

    with unit_of_work() as session:
        assert subscriptions.do_subscribe(session, EARLY, {
            "id": "sub-yamuna", "customer": "yamuna", "plan": "pro",
            "start": "2026-12-06"}).status == "applied"
    with unit_of_work() as session:
        rows = [subs_repo.get(session, s) for s in ("sub-ganga", "sub-yamuna")]
        assert all(rows)
        many = invoicing.estimate_many(session, [r for r in rows if r], LATE, latest=True)
    assert list(many) == ["sub-ganga", "sub-yamuna"]
    for subscription, found in many.items():
        assert found == invoicing.preview(subscription, LATE, latest=True)
    with unit_of_work() as session:
        ended = subs_repo.get(session, "sub-ganga")
        assert ended is not None
        ended.end = date(2026, 12, 6)  # as if cancelled: no next invoice (rolled back)
        answer = invoicing.estimate_many(session, [ended], LATE, latest=True)["sub-ganga"]
        session.rollback()
    assert isinstance(answer, Invalid) and "ended on 2026-12-06" in answer.message
