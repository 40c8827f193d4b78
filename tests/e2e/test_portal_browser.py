"""The customer portal in a real headless Chromium (issue #13): ``python -m web`` on a free
port (the embedded default: SQLite, an in-process worker and scheduler), a link made with
``billing portal link``, and Playwright reading the page as a customer would.

Checked: the same quantities and amounts as ``billing invoices preview``, written in the
meters' display units; a chart per meter; invoice links open their document; tampered
and expired links get 403; a second customer's link never shows the first's data; an id
with ``<script>`` is text; nothing is loaded from another host; the page fits a phone.
Screenshots go to ``BILLING_TEST_ARTIFACTS`` (default ``test-artifacts/``) for a person
to look at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from persistence import db, migrate
from services import portal as portal_service
from services.delivery.render import format_amount, format_in_unit
from services.settings import settings
from tests import cli_process, portal_data
from tests.conftest import CHROMIUM, ROOT, require_browser
from tests.servers import free_port

pytestmark = pytest.mark.browser
ARTIFACTS = Path(os.environ.get("BILLING_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "portal"
SECRET = "browser-test-portal-secret"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_browser()
    folder = tmp_path_factory.mktemp("portal")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BILLING_") or k == "BILLING_REQUIRE_SERVICES"}
    env.update(BILLING_DATABASE_URL=f"sqlite:///{folder / 'portal.db'}",
               BILLING_PORTAL_SECRET=SECRET, BILLING_PORTAL_URL=base, PORT=str(port),
               BILLING_DELIVERY_CHANNEL="none", BILLING_LOG_FORMAT="json",
               HOST="127.0.0.1")
    saved = {k: os.environ.get(k) for k in ("BILLING_PORTAL_SECRET", "BILLING_PORTAL_URL")}
    os.environ.update(BILLING_PORTAL_SECRET=SECRET, BILLING_PORTAL_URL=base)
    settings.cache_clear()
    db.configure(env["BILLING_DATABASE_URL"])
    migrate.upgrade()
    now = datetime.now(UTC)
    store = portal_data.build(now)
    db.engine().dispose()
    log = (folder / "web.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "web"], cwd=ROOT, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert web.poll() is None and time.monotonic() < deadline, \
                (folder / "web.log").read_text()
            time.sleep(0.2)
        yield {"base": base, "env": env, "store": store, "folder": folder}
    finally:
        web.terminate()
        web.wait(timeout=30)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        settings.cache_clear()


def billing(site: dict[str, Any], *args: str) -> str:
    done = cli_process.run(args, cwd=ROOT, env=site["env"], timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def browser(site: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.requests = []  # every request the page made
    tab.on("request", lambda request: tab.requests.append(request.url))
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    try:
        yield tab
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def link(site: dict[str, Any], customer: str, *args: str) -> str:
    made = json.loads(billing(site, "portal", "link", customer, "--json", *args))
    assert made["customer"] == customer
    url: str = made["url"]
    assert url.startswith(site["base"] + "/portal/")
    return url


def test_the_page_shows_what_the_preview_says(page: Any, site: dict[str, Any]) -> None:
    url = link(site, "acme-co")
    answer = page.goto(url)
    assert answer.status == 200
    preview = json.loads(billing(site, "invoices", "preview", "s-acme", "--json"))
    units = {"tokens": portal_data_unit(), "calls": None}
    usage = {ln["charge"]: ln for ln in preview["lines"] if ln["type"] == "usage"}
    for meter, unit in units.items():
        block = page.locator(f'.meter[data-meter="{meter}"]')
        assert block.locator(".quantity").inner_text() == format_in_unit(
            Decimal(usage[meter]["quantity"]), unit)
        assert block.locator(".amount").inner_text() == format_amount(
            Decimal(usage[meter]["amount"]), "EUR")
        bars = block.locator("svg.chart rect.bar")
        assert bars.count() >= 10  # a bar per day of the period so far
        assert block.locator("svg.chart").bounding_box()["height"] > 50  # drawn, visible
    assert page.locator("td.total").inner_text() == format_amount(
        Decimal(preview["total"]), "EUR")
    assert page.locator("tr.adjustment").count() == len(
        [ln for ln in preview["lines"] if ln["type"] == "adjustment"]) > 0
    assert "€2.00 / 1M tokens" in page.content()
    assert all(u.startswith(site["base"]) or u.startswith("data:") for u in page.requests), \
        page.requests
    shot(page, "portal-laptop")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "portal-phone")


def test_invoice_links_open_their_document(page: Any, site: dict[str, Any]) -> None:
    page.goto(link(site, "acme-co"))
    rows = page.locator("tr.invoice")
    assert rows.count() == 3
    pdf = rows.nth(0).locator("a.pdf").get_attribute("href")
    answer = page.request.get(f"{site['base']}{pdf}")  # its PDF beside it
    assert answer.ok and answer.body().startswith(b"%PDF"), answer.status
    number = rows.nth(0).locator("td.number a").inner_text()
    with page.expect_navigation():
        rows.nth(0).locator("td.number a").click()
    assert f"Invoice {number}" in page.title()
    assert "M tokens" in page.content()
    shot(page, "invoice-document")


def test_tampered_and_expired_links_get_403(page: Any, site: dict[str, Any]) -> None:
    url = link(site, "acme-co")
    payload, signature = url.rsplit("/", 1)[1].split(".")
    other_payload = link(site, "other-co").rsplit("/", 1)[1].split(".")[0]
    for bad in (f"{site['base']}/portal/{payload}.{signature[::-1]}",
                f"{site['base']}/portal/{other_payload}.{signature}"):
        answer = page.goto(bad)
        assert answer.status == 403
        assert page.locator("h1").inner_text() == "Access denied"
        assert "acme-co" not in page.content() and "other-co" not in page.content()
    shot(page, "refused-tampered")
    db.configure(site["env"]["BILLING_DATABASE_URL"])
    try:
        expired = portal_service.create_link("acme-co", "1m",
                                             datetime.now(UTC) - timedelta(minutes=2))
    finally:
        db.engine().dispose()
    answer = page.goto(expired.url)
    assert answer.status == 403 and "expired" in page.locator("#refused").inner_text()
    shot(page, "refused-expired")
    revoked = link(site, "acme-co")
    assert page.goto(revoked).status == 200
    billing(site, "portal", "revoke", "--customer", "acme-co")
    assert page.goto(revoked).status == 403 and "revoked" in page.content()


def test_a_second_customer_sees_only_its_own(page: Any, site: dict[str, Any]) -> None:
    page.goto(link(site, "other-co"))
    text = page.locator("main").inner_text()
    assert "other-co" in text and "s-other" in text
    assert "acme-co" not in text and "s-acme" not in text and "Adjustment" not in text
    preview = json.loads(billing(site, "invoices", "preview", "s-other", "--json"))
    tokens = next(ln for ln in preview["lines"] if ln["charge"] == "tokens")
    assert page.locator('.meter[data-meter="tokens"] .quantity').inner_text() == \
        format_in_unit(Decimal(tokens["quantity"]), portal_data_unit())
    shot(page, "portal-second-customer")


def test_an_id_with_a_script_tag_is_text(page: Any, site: dict[str, Any]) -> None:
    page.goto(link(site, portal_data.XSS))
    assert page.locator("#customer").inner_text() == portal_data.XSS
    assert page.dialogs == []  # nothing ran
    assert page.evaluate("document.scripts.length") == 0
    shot(page, "portal-script-id")


def portal_data_unit() -> Any:
    from domain.units import Unit

    unit = portal_data.CATALOG["meters"][0]["unit"]
    return Unit(unit["name"], Decimal(unit["per"]))
