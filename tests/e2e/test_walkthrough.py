"""The operator's walk-through of the README (issue #27), as a process per command, with
``--json`` read at each step: a customer made and changed, subscribed today, its invoice
pending then issued at once by ``bill-run --now``, seen, regenerated and released by its
public reference, the subscription cancelled and uncancelled; and the exit-code table —
0 done, 1 refused or not found, 2 bad input, 3 a server does not answer — with every
refusal one ``error:`` line and nothing before it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests import cli_process

pytestmark = pytest.mark.e2e

ZONE = "Asia/Kolkata"
CATALOG = """
taxes: [{id: gst-in, rate: "18"}]
entities: [{id: acme-in, timezone: Asia/Kolkata, invoice_prefix: IN}]
meters: [{id: tokens, aggregation: sum}]
plans:
  - id: pro
    currency: INR
    interval: month
    charges:
      - {id: base, type: recurring, amount: "1000.00"}
      - {id: tokens, type: usage, meter: tokens, model: unit, unit_price: "0.0015"}
"""


def billing(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return cli_process.run(args, env={**env, "COLUMNS": "200"}, timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def data(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(done))


def refused(done: subprocess.CompletedProcess[str], code: int, *says: str) -> str:
    """A refusal: exit ``code``, nothing on stdout, one line on stderr that starts with
    ``error:`` (no log line before it) and says each of ``says``."""
    assert done.returncode == code, (done.returncode, done.stderr)
    assert done.stdout == "", done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert all(s in lines[0] for s in says), done.stderr
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("BILLING_") or k.startswith("BILLING_TEST")}
    environment.update(BILLING_DATABASE_URL=f"sqlite:///{tmp_path / 'desk.db'}",
                       BILLING_OUTBOX_DIR=str(tmp_path / "outbox"))
    ok(billing(environment, "db", "upgrade"))
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    ok(billing(environment, "catalog", "apply", str(tmp_path / "catalog.yaml")))
    return environment


def test_the_walk_through(env: dict[str, str]) -> None:
    today = datetime.now(UTC).astimezone(ZoneInfo(ZONE)).date()
    if datetime.now(UTC).astimezone(ZoneInfo(ZONE)).hour == 23:
        pytest.skip("the local date may change during the test")
    draft = f"sub-ganga@{today}"

    # a customer, made then changed (the rest of it kept)
    made = data(billing(env, "customers", "create", "ganga", "--entity", "acme-in",
                        "--email", "ap@ganga.example", "--tax", "gst-in", "--drafts",
                        "--json"))
    assert (made["entity"], made["taxes"], made["draft_invoices"], made["tax_exempt"]) == (
        "acme-in", ["gst-in"], True, False)
    refused(billing(env, "customers", "create", "ganga", "--entity", "acme-in"), 1,
            "exists already")
    exempt = data(billing(env, "customers", "update", "ganga", "--tax-exempt", "--json"))
    assert exempt["tax_exempt"] is True and exempt["email"] == "ap@ganga.example"
    back = data(billing(env, "customers", "update", "ganga", "--no-tax-exempt",
                        "--legal-name", "Ganga Traders Pvt Ltd", "--json"))
    assert (back["tax_exempt"], back["taxes"], back["legal_name"]) == (
        False, ["gst-in"], "Ganga Traders Pvt Ltd")
    refused(billing(env, "customers", "update", "nobody", "--email", "a@b.example"), 1,
            "not a known customer")
    refused(billing(env, "customers", "update", "ganga", "--email", "not-an-email"), 2,
            "email")
    refused(billing(env, "customers", "update", "ganga", "--tax", "vat-xx"), 1, "vat-xx")

    # subscribed this morning
    sub = data(billing(env, "subscriptions", "create", "sub-ganga", "--customer", "ganga",
                       "--plan", "pro", "--start", today.isoformat(), "--json"))
    assert (sub["id"], sub["status"], sub["next_boundary"]) == (
        "sub-ganga", "active", today.isoformat())
    refused(billing(env, "subscriptions", "create", "sub-other", "--customer", "ganga",
                    "--plan", "pro", "--start", today.isoformat()), 1, "overlaps",
            "field: plan")
    refused(billing(env, "subscriptions", "create", "sub-x", "--customer", "ganga",
                    "--plan", "pro", "--start", "soon"), 2, "YYYY-MM-DD")
    refused(billing(env, "subscriptions", "create", "sub-y", "--customer", "ganga",
                    "--plan", "ghost", "--start", today.isoformat()), 1, "ghost")

    # its opening invoice is due (the boundary is today) but no run issued it: pending
    preview = data(billing(env, "invoices", "preview", "sub-ganga", "--json"))
    assert [(p["reference"], p["status"], p["total"]) for p in preview["pending"]] == [
        (draft, "pending", "1180.00")]  # 1,000 + 18 % GST
    assert date.fromisoformat(preview["boundary"]) > today  # the open period comes after
    shown = ok(billing(env, "invoices", "preview", "sub-ganga"))
    assert "pending" in shown and "₹1,180.00" in shown and "estimate" in shown
    assert shown.index("pending") < shown.index("estimate")
    # headed as what it is (#27: "(draft) · … · issued … · estimate"), in the entity's zone
    assert "(draft)" not in shown and not re.search(r"issued \d", shown)
    assert "Asia/Kolkata" in shown

    # issued now, once
    run = data(billing(env, "bill-run", "acme-in", "--now", "--json"))
    assert run["issued"] == 1 and [(i["reference"], i["status"], i["total"])
                                   for i in run["invoices"]] == [(draft, "draft", "1180.00")]
    again = data(billing(env, "bill-run", "acme-in", "--now", "--json"))
    assert again["issued"] == 0 and again["invoices"] == []
    refused(billing(env, "bill-run", "acme-in"), 2, "--date", "--now")
    refused(billing(env, "bill-run", "nowhere", "--now"), 1, "not a known entity")
    assert data(billing(env, "invoices", "preview", "sub-ganga", "--json"))["pending"] == []

    # seen, regenerated and released by its reference
    invoice = data(billing(env, "invoices", "show", draft, "--json"))
    assert (invoice["reference"], invoice["status"], invoice["number"]) == (draft, "draft",
                                                                           None)
    assert "id" not in invoice
    regenerated = billing(env, "invoices", "regenerate", draft, "--json")
    assert regenerated.returncode == 0 and "₹1,180.00" in regenerated.stderr, \
        regenerated.stderr
    assert json.loads(regenerated.stdout)["total"] == "1180.00"
    released = data(billing(env, "invoices", "release", draft, "--json"))
    sent = data(billing(env, "invoices", "show", draft, "--json"))
    assert released == sent
    assert (sent["reference"], sent["number"], sent["status"]) == ("IN-000001", "IN-000001",
                                                                   "sent")
    assert data(billing(env, "invoices", "show", "IN-000001", "--json")) == sent
    table = ok(billing(env, "invoices", "show", "IN-000001"))
    assert "IN-000001" in table and "Asia/Kolkata" in table and "₹1,180.00" in table
    refused(billing(env, "invoices", "release", "IN-000001"), 1, "not a draft")
    refused(billing(env, "invoices", "show", "1"), 1, "no invoice '1'")  # no internal id
    refused(billing(env, "invoices", "show", "sub-ganga@someday"), 2, "YYYY-MM-DD")
    listing = data(billing(env, "invoices", "list", "--json"))
    assert [i["reference"] for i in listing] == ["IN-000001"] and "id" not in listing[0]
    deliveries = data(billing(env, "deliveries", "list", "--json"))
    assert [(d["invoice"], d["status"]) for d in deliveries] == [("IN-000001", "done")]

    # cancelled: it says when it ends; then uncancelled
    cancelled = data(billing(env, "subscriptions", "cancel", "sub-ganga", "--json"))
    assert cancelled["status"] == "cancelled" and cancelled["end"] is not None
    assert f"ends {cancelled['end']}" in ok(billing(env, "subscriptions", "show",
                                                    "sub-ganga"))
    uncancelled = data(billing(env, "subscriptions", "uncancel", "sub-ganga", "--json"))
    assert uncancelled["status"] == "active" and uncancelled["end"] is None
    refused(billing(env, "subscriptions", "cancel", "sub-nobody"), 1, "not a known")

    # counts in words (#27: "1 API keys", "1 subscriptions")
    ok(billing(env, "api-keys", "create", "desk"))
    assert re.search(r"^ *1 API key *$", ok(billing(env, "api-keys", "list")), re.M)
    assert re.search(r"^ *1 subscription *$", ok(billing(env, "subscriptions", "list")),
                     re.M)


def test_a_server_that_does_not_answer_is_exit_3(env: dict[str, str]) -> None:
    refused(billing({**env, "BILLING_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
                    "invoices", "list"), 3, "cannot use the database")
    down = billing({**env, "BILLING_BROKER_URL": "redis://127.0.0.1:1/0"}, "status")
    assert down.returncode == 3, down.stderr
    assert down.stderr.splitlines()[-1].startswith("error: the broker does not answer")


def test_a_replay_names_the_database_it_could_not_use(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """#27 item 6: it named BILLING_DATABASE_URL instead of --database-url."""
    url = "postgresql://postgres@127.0.0.1:1/nope_db_x"
    done = billing(env, "replay", str(Path(__file__).parents[2] / "examples" /
                                      "quickstart.yaml"), "--database-url", url)
    refused(done, 3, "cannot use the database at postgresql://postgres@127.0.0.1:1/nope_db_x")
