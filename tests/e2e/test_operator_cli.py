"""The operator commands of ``billing`` against a database, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from persistence import db
from persistence.db import unit_of_work
from services.subscriptions import do_subscribe
from services.usage import ingest

CATALOG = """
entities: [{id: acme-eu, timezone: Europe/Oslo, invoice_prefix: EU}]
meters: [{id: tokens, aggregation: sum}]
plans:
  - id: pro
    currency: EUR
    interval: month
    charges:
      - {id: base, type: recurring, amount: "49.00"}
      - {id: tokens, type: usage, meter: tokens, model: unit, unit_price: "0.01"}
customers:
  - {id: c-1, entity: acme-eu}
  - {id: c-2, entity: acme-eu, draft_invoices: true}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    return {**os.environ, "BILLING_DATABASE_URL": url,
            "BILLING_OUTBOX_DIR": str(tmp_path / "outbox")}


def billing(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          env={**env, "COLUMNS": "200"}, timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_operator_flow(env: dict[str, str], tmp_path: Path) -> None:
    ok(billing(env, "db", "upgrade"))
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    ok(billing(env, "catalog", "apply", str(tmp_path / "catalog.yaml")))

    # the app side: two subscriptions and some usage, straight through the handlers
    db.configure(env["BILLING_DATABASE_URL"])
    past = datetime(2026, 1, 1, tzinfo=UTC)
    with unit_of_work() as session:
        for sub, customer in (("s-1", "c-1"), ("s-2", "c-2")):
            assert do_subscribe(session, past, {"id": sub, "customer": customer, "plan": "pro",
                                                "start": "2026-01-01"}).status == "applied"
    with unit_of_work() as session:
        counts = ingest(session, [
            {"key": "e-1", "customer": "c-1", "meter": "tokens", "quantity": "150",
             "timestamp": "2026-01-10T10:00:00Z"},
            {"key": "e-2", "customer": "c-2", "meter": "tokens", "quantity": "-3",
             "timestamp": "2026-01-10T10:00:00Z"},
        ], datetime(2026, 1, 11, tzinfo=UTC), "m-1")
    assert counts["rejected"] == 1
    db.engine().dispose()

    # a bill run on live data: the opening and the 1 February invoices
    done = billing(env, "bill-run", "acme-eu", "--date", "2026-02-01")
    assert "4 invoices issued, 2 delivered" in ok(done) + done.stderr
    assert sorted(p.name for p in (tmp_path / "outbox" / "acme-eu").iterdir()) == [
        "EU-000001.html", "EU-000001.json", "EU-000002.html", "EU-000002.json"]
    again = billing(env, "bill-run", "acme-eu", "--date", "2026-02-01")  # idempotent
    assert "0 invoices issued, 0 delivered" in again.stderr
    listing = ok(billing(env, "invoices", "list"))
    assert "EU-000001" in listing and "EU-000002" in listing and "s-2@2026-01-01" in listing
    shown = json.loads(ok(billing(env, "invoices", "show", "EU-000002", "--json")))
    assert shown["total"] == "50.50" and shown["boundary"] == "2026-02-01"
    page = ok(billing(env, "invoices", "show", "EU-000002", "--html"))
    assert page.lstrip().lower().startswith("<!doctype html") and "€50.50" in page

    # a rejected event, fixed and re-sent; the draft regenerated and released
    assert "quantity" in ok(billing(env, "usage", "rejected"))
    rejected_id = "1"
    done = billing(env, "usage", "resubmit", rejected_id, "--set", "quantity=3")
    assert done.returncode == 0 and "accepted" in done.stderr, done.stderr
    ok(billing(env, "invoices", "regenerate", "s-2", "2026-02-01"))
    draft = json.loads(ok(billing(env, "invoices", "show", "s-2@2026-02-01", "--json")))
    assert draft["status"] == "draft" and draft["total"] == "49.03"
    ok(billing(env, "invoices", "release", "s-2", "2026-02-01"))
    released = json.loads(ok(billing(env, "invoices", "show", "s-2@2026-02-01", "--json")))
    assert released["status"] == "sent" and released["number"] == "EU-000003"
    done = billing(env, "invoices", "release", "s-2", "2026-02-01")
    assert done.returncode == 1 and "not a draft" in done.stderr

    # estimated charges: nothing stored
    estimate = json.loads(ok(billing(env, "invoices", "preview", "s-1", "--at",
                                     "2026-01-20T00:00:00Z", "--json")))
    assert estimate["boundary"] == "2026-02-01" and estimate["total"] == "50.50"
    assert "0 dead letters" in ok(billing(env, "dead-letters", "list"))


def test_bad_catalog_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    ok(billing(env, "db", "upgrade"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("meters: [{id: m, aggregation: median}]\n")
    done = billing(env, "catalog", "apply", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "meters[0].aggregation" in done.stderr
