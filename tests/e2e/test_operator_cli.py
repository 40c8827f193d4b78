"""The operator commands of ``billing`` against a database, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from persistence import db
from persistence.db import unit_of_work
from services.subscriptions import do_subscribe
from services.usage import ingest
from tests import cli_process

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
    return cli_process.run(args, env={**env, "COLUMNS": "200"}, timeout=120)


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


def _store(env: dict[str, str], tmp_path: Path) -> None:
    ok(billing(env, "db", "upgrade"))
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    ok(billing(env, "catalog", "apply", str(tmp_path / "catalog.yaml")))
    db.configure(env["BILLING_DATABASE_URL"])


def test_customers_subscriptions_and_usage_for_operators(env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """customers list/show, subscriptions list/show, usage conflicts, and which rejected
    events were re-submitted since (issue #10)."""
    _store(env, tmp_path)
    past = datetime(2026, 1, 1, tzinfo=UTC)
    with unit_of_work() as session:
        assert do_subscribe(session, past, {"id": "s-1", "customer": "c-1", "plan": "pro",
                                            "start": "2026-01-01", "discount": {
                                                "percent": "10", "cycles": 2}}).status == "applied"
    event = {"key": "e-1", "customer": "c-1", "meter": "tokens", "quantity": "5",
             "timestamp": "2026-01-10T10:00:00Z"}
    received = datetime(2026, 1, 11, tzinfo=UTC)  # after the events happened
    with unit_of_work() as session:
        ingest(session, [event, {**event, "key": "e-2", "quantity": "x"},
                         {**event, "key": "e-3", "quantity": "-1"}], received, "m-1")
    with unit_of_work() as session:
        ingest(session, [{**event, "quantity": "6"}, {**event, "key": "e-2"}], received, "m-2")
    db.engine().dispose()

    customers = json.loads(ok(billing(env, "customers", "list", "--json")))
    assert [(c["id"], c["subscriptions"], c["draft_invoices"]) for c in customers] == [
        ("c-1", 1, False), ("c-2", 0, True)]
    shown = json.loads(ok(billing(env, "customers", "show", "c-1", "--json")))
    assert [s["id"] for s in shown["subscriptions"]] == ["s-1"]
    assert "s-1" in ok(billing(env, "customers", "show", "c-1"))
    missing = billing(env, "customers", "show", "nobody")
    assert missing.returncode == 1 and "no customer 'nobody'" in missing.stderr

    subs = json.loads(ok(billing(env, "subscriptions", "list", "--json")))
    assert [(s["id"], s["plan"], s["plan_version"], s["status"], s["start"]) for s in subs] == [
        ("s-1", "pro", 1, "active", "2026-01-01")]
    one = json.loads(ok(billing(env, "subscriptions", "show", "s-1", "--json")))
    assert one["next_boundary"] == "2026-01-01" and one["discount"]["cycles"] == 2
    text = ok(billing(env, "subscriptions", "show", "s-1"))
    assert "10 % for the first 2 invoices" in text and "overdue" in text
    assert billing(env, "subscriptions", "show", "nope").returncode == 1

    conflicts = json.loads(ok(billing(env, "usage", "conflicts", "--json")))
    assert [(c["key"], c["stored"]["quantity"], c["received"]["quantity"])
            for c in conflicts] == [("e-1", "5", "6")]
    assert "e-1" in ok(billing(env, "usage", "conflicts"))
    rejected = {r["key"]: r for r in json.loads(ok(billing(env, "usage", "rejected", "--json")))}
    assert set(rejected) == {"e-2", "e-3"}
    assert rejected["e-2"]["resubmitted_at"] is not None  # e-2 sent again, fixed
    assert rejected["e-3"]["resubmitted_at"] is None
    still_open = json.loads(ok(billing(env, "usage", "rejected", "--open", "--json")))
    assert [r["key"] for r in still_open] == ["e-3"]


def test_a_first_day_explains_when_its_invoice_comes(env: dict[str, str],
                                                     tmp_path: Path) -> None:
    """A subscription created at 10:00 with today's start gets its opening invoice at the
    next day's 08:15 run: `subscriptions show` says so and `bill-run` of today explains
    why it issued nothing (issue #10)."""
    from datetime import timedelta

    from domain.periods import bill_run_instant, zone
    from services import clock

    _store(env, tmp_path)
    now = clock.now()
    today = now.astimezone(zone("Europe/Oslo")).date()
    created = max(bill_run_instant(today, "Europe/Oslo") + timedelta(minutes=5),
                  now - timedelta(hours=1))
    if created > now:
        pytest.skip("before today's 08:15 run in Oslo: the first day is not over yet")
    with unit_of_work() as session:
        assert do_subscribe(session, created, {"id": "s-new", "customer": "c-1", "plan": "pro",
                                               "start": today.isoformat()}).status == "applied"
    db.engine().dispose()
    shown = json.loads(ok(billing(env, "subscriptions", "show", "s-new", "--json")))
    tomorrow = bill_run_instant(today + timedelta(days=1), "Europe/Oslo")
    assert shown["next_boundary"] == today.isoformat()
    assert shown["next_run"] == tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "created after the 08:15 run" in shown["note"]
    done = billing(env, "bill-run", "acme-eu", "--date", today.isoformat())
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "0 invoices issued" in said and "s-new" in said and "next" in said


def test_one_way_to_name_an_invoice_and_tables_in_a_pipe(env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """`invoices release`, `deliveries retry` take a number or SUB@DATE — never an internal
    id (#27: `invoices show 3` printed another invoice); a table read through a pipe keeps
    whole dates (issue #10)."""
    _store(env, tmp_path)
    past = datetime(2026, 1, 1, tzinfo=UTC)
    with unit_of_work() as session:
        for sub, customer in (("s-1", "c-1"), ("s-2", "c-2")):
            do_subscribe(session, past, {"id": sub, "customer": customer, "plan": "pro",
                                         "start": "2026-01-01"})
    db.engine().dispose()
    ok(billing(env, "bill-run", "acme-eu", "--date", "2026-01-01"))
    draft = json.loads(ok(billing(env, "invoices", "list", "--status", "draft", "--json")))[0]
    assert "id" not in draft
    for internal in ("1", "2", "3"):
        wrong = billing(env, "invoices", "show", internal)
        assert wrong.returncode == 1 and wrong.stdout == "", wrong
        assert wrong.stderr.startswith(f"error: no invoice '{internal}'"), wrong.stderr
    ok(billing(env, "invoices", "release", draft["reference"]))
    numbers = [i["number"] for i in json.loads(ok(billing(env, "invoices", "list", "--json")))]
    assert numbers == ["EU-000001", "EU-000002"]
    done = billing(env, "deliveries", "retry", "EU-000001")  # by number: delivered already
    assert done.returncode == 1 and "nothing to retry" in done.stderr
    piped = cli_process.run(["invoices", "list"], timeout=120,
                            env={k: v for k, v in env.items() if k != "COLUMNS"})
    assert piped.returncode == 0, piped.stderr
    rows = [line for line in piped.stdout.splitlines() if "EU-000001" in line]
    assert len(rows) == 1 and "2026-01-01" in rows[0] and "€49.00" in rows[0]
