"""The customer portal over HTTP (issue #13), on SQLite and PostgreSQL: the page shows what
the estimate (SPEC §10) says, in the meters' display units; links are signed, expire, are
revocable and never show another customer's data; ids are text, never markup."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from domain.units import Unit
from services import api_keys, clock, invoicing
from services import portal as portal_service
from services.delivery.render import format_amount, format_in_unit
from services.settings import settings
from tests import portal_data
from tests.portal_data import XSS
from web.app import create_app

NOW = datetime(2026, 3, 20, 10, 30, tzinfo=UTC)
TOKENS = Unit("tokens", Decimal(1000000))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def portal(request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    monkeypatch.setenv("BILLING_PORTAL_SECRET", "a-test-secret-of-some-length")
    monkeypatch.setenv("BILLING_PORTAL_URL", "http://portal.test")
    settings.cache_clear()
    sim = clock.SimulatedClock(NOW)
    clock.use(sim)
    portal_data.build(NOW)
    _, key = api_keys.create("tests", NOW)
    try:
        with TestClient(create_app()) as client:
            yield client, key
    finally:
        clock.reset()
        settings.cache_clear()


def path_of(link: portal_service.Link) -> str:
    assert link.url.startswith("http://portal.test/portal/")
    return link.url.removeprefix("http://portal.test")


def meters_of(html: str) -> dict[str, tuple[Decimal, Decimal]]:
    return {m: (Decimal(q), Decimal(a)) for m, q, a in re.findall(
        r'data-meter="([^"]+)" data-charge="[^"]+" data-quantity="([^"]+)" '
        r'data-amount="([^"]+)"', html)}


def test_the_page_shows_the_estimate_in_display_units(portal: tuple[TestClient, str]) -> None:
    client, _ = portal
    page = client.get(path_of(portal_service.create_link("acme-co", None, NOW)))
    assert page.status_code == 200, page.text
    html = page.text
    estimate = invoicing.preview("s-acme", NOW)
    usage = {ln.charge: ln for ln in estimate.lines if ln.type == "usage"}
    assert meters_of(html) == {"tokens": (usage["tokens"].quantity, usage["tokens"].amount),
                               "calls": (usage["calls"].quantity, usage["calls"].amount)}
    assert usage["tokens"].quantity > 1000000  # the chosen data reach the priced tier
    assert format_in_unit(usage["tokens"].quantity, TOKENS) in html  # e.g. "8.1M tokens"
    assert "M tokens" in format_in_unit(usage["tokens"].quantity, TOKENS)
    assert format_amount(usage["tokens"].amount, "EUR") in html
    assert "€2.00 / 1M tokens" in html and "up to 1M tokens" in html
    assert "at least €1.00" in html  # the calls charge's minimum
    total = re.search(r'data-total="([^"]+)"', html)
    assert total and Decimal(total.group(1)) == estimate.total
    adjustments = [ln for ln in estimate.lines if ln.type == "adjustment"]
    assert adjustments and "Adjustment: tokens" in html  # the late event of last period
    assert format_amount(adjustments[0].amount, "EUR") in html
    for header, value in (("referrer-policy", "no-referrer"), ("cache-control", "no-store")):
        assert page.headers[header] == value
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in html.split("</head>")[0] and "https://" not in html


def test_the_chart_has_a_bar_per_day_so_far(portal: tuple[TestClient, str]) -> None:
    client, _ = portal
    html = client.get(path_of(portal_service.create_link("acme-co", None, NOW))).text
    estimate = invoicing.preview("s-acme", NOW)
    start = next(ln.period_start for ln in estimate.lines if ln.type == "usage")
    days = (NOW.date() - start).days + 1
    charts = re.findall(r'<svg class="chart".*?</svg>', html, re.S)
    assert len(charts) == 2
    assert all(chart.count('<rect class="bar"') == days for chart in charts)
    assert "tokens per day" in html and "events per day" in html


def test_invoice_links_open_their_document_and_only_the_customers(
        portal: tuple[TestClient, str]) -> None:
    client, _ = portal
    mine = path_of(portal_service.create_link("acme-co", None, NOW))
    html = client.get(mine).text
    links = re.findall(rf'href="({re.escape(mine)}/invoices/([^"/]+))">([^<]+)</a>', html)
    # each link names its invoice by its number, never by an internal id (#27)
    assert all(ref == number for _, ref, number in links)
    assert len(links) == 3  # the opening invoice (Jan 4) and the runs of Feb 4 and Mar 4
    documents = []
    for href, _, number in links:
        document = client.get(href)
        assert document.status_code == 200 and number in document.text
        documents.append(document.text)
    assert sum("M tokens" in d for d in documents) == 2  # usage lines in the display unit
    theirs = path_of(portal_service.create_link("other-co", None, NOW))
    for _, invoice_id, _ in links:
        assert client.get(f"{theirs}/invoices/{invoice_id}").status_code == 404
    assert client.get(f"{mine}/invoices/999999").status_code == 404


def test_a_token_never_shows_another_customers_data(portal: tuple[TestClient, str]) -> None:
    client, _ = portal
    html = client.get(path_of(portal_service.create_link("other-co", None, NOW))).text
    assert "other-co" in html and "s-other" in html
    assert "acme-co" not in html and "s-acme" not in html and "Adjustment" not in html
    tokens = meters_of(html)["tokens"][0]
    days = len(re.findall(r'<rect class="bar"', html)) // 2
    assert tokens == 7777 * (days - 1)  # its own events only: one a day at noon, not yet today


def test_tampered_expired_and_revoked_links_get_403(portal: tuple[TestClient, str]) -> None:
    client, _ = portal
    link = portal_service.create_link("acme-co", "1h", NOW)
    path = path_of(link)
    payload, signature = link.token.split(".")
    forged = portal_service.create_link("other-co", "1h", NOW).token.split(".")[0]
    for bad in (f"/portal/{payload}.{signature[:-2]}xx", f"/portal/{forged}.{signature}",
                f"/portal/{payload[:-1]}A.{signature}", "/portal/nonsense",
                f"{path}x", "/portal/" + "a" * 5000):
        answer = client.get(bad)
        assert answer.status_code == 403, bad
        assert "Access denied" in answer.text and "acme-co" not in answer.text
        assert client.get(f"{bad}/invoices/1").status_code == 403
    assert client.get(path).status_code == 200
    clock.use(clock.SimulatedClock(NOW + timedelta(hours=1)))
    expired = client.get(path)
    assert expired.status_code == 403 and "expired" in expired.text
    clock.use(clock.SimulatedClock(NOW))
    assert client.get(path).status_code == 200
    assert portal_service.revoke(link_id=link.id, now=NOW) == 1
    revoked = client.get(path)
    assert revoked.status_code == 403 and "revoked" in revoked.text


def test_ids_with_markup_are_text(portal: tuple[TestClient, str]) -> None:
    client, _ = portal
    html = client.get(path_of(portal_service.create_link(XSS, None, NOW))).text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_links_over_the_api(portal: tuple[TestClient, str]) -> None:
    client, key = portal
    auth = {"Authorization": f"Bearer {key}"}
    made = client.post("/v1/portal-links", json={"customer": "acme-co", "ttl": "30m"},
                       headers={**auth, "Idempotency-Key": "link-1"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["expires_at"] == (NOW + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    again = client.post("/v1/portal-links", json={"customer": "acme-co", "ttl": "30m"},
                        headers={**auth, "Idempotency-Key": "link-1"})
    assert again.json() == body  # a retry gets the same link
    path = body["url"].removeprefix("http://portal.test")
    assert client.get(path).status_code == 200
    assert client.post("/v1/portal-links", json={"customer": "acme-co"}).status_code == 401
    unknown = client.post("/v1/portal-links", json={"customer": "nobody"}, headers=auth)
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "customer"
    for bad in ("a\\u0000b", "a\\u0001b", "\\ud800"):  # never a customer: a clear 422
        refused = client.post("/v1/portal-links", content=f'{{"customer": "{bad}"}}',
                              headers={**auth, "Content-Type": "application/json"})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "customer"
    for ttl in ("12", "0m", "91d", "1y", "-1h"):
        bad = client.post("/v1/portal-links", json={"customer": "acme-co", "ttl": ttl},
                          headers=auth)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "ttl", ttl
    assert client.delete(f"/v1/portal-links/{body['id']}", headers=auth).status_code == 204
    assert client.get(path).status_code == 403
    assert client.delete(f"/v1/portal-links/{body['id']}", headers=auth).status_code == 404


def test_without_a_secret_no_link_is_made_or_accepted(
        portal: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, key = portal
    path = path_of(portal_service.create_link("acme-co", None, NOW))
    monkeypatch.delenv("BILLING_PORTAL_SECRET")
    settings.cache_clear()
    made = client.post("/v1/portal-links", json={"customer": "acme-co"},
                       headers={"Authorization": f"Bearer {key}"})
    assert made.status_code == 503 and "BILLING_PORTAL_SECRET" in made.json()["error"]["message"]
    unset = client.get(path)
    assert unset.status_code == 503 and "SECRET" not in unset.text  # not the customer's to fix
    monkeypatch.setenv("BILLING_PORTAL_SECRET", "another-secret-entirely")
    settings.cache_clear()
    assert client.get(path).status_code == 403  # signed with the old secret
