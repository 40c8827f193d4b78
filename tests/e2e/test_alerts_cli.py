"""``billing alerts create | list | delete | events`` as an operator runs them: --json,
and bad input as one line naming the field with exit status 1."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persistence import db
from persistence.db import unit_of_work
from services.subscriptions import do_subscribe
from services.usage import ingest
from tests import cli_process

CATALOG = """
entities: [{id: e, timezone: UTC, invoice_prefix: AL}]
meters: [{id: tokens, aggregation: sum}]
plans:
  - id: pro
    currency: EUR
    interval: month
    charges:
      - {id: tokens, type: usage, meter: tokens, model: unit, unit_price: "0.01"}
customers:
  - {id: c-1, entity: e}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    return {**os.environ, "BILLING_DATABASE_URL": url, "BILLING_BROKER_URL": "",
            "BILLING_OUTBOX_DIR": str(tmp_path / "outbox")}


def billing(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return cli_process.run(args, env={**env, "COLUMNS": "200"}, timeout=120)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], *says: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, done.stderr  # (the refusal is logged above it, as a warning)
    for text in says:
        assert text in errors[0], errors[0]


def test_alerts_from_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    ok(billing(env, "db", "upgrade"))
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    ok(billing(env, "catalog", "apply", str(tmp_path / "catalog.yaml")))
    db.configure(env["BILLING_DATABASE_URL"])
    now = datetime.now(UTC)
    with unit_of_work() as session:
        assert do_subscribe(session, now - timedelta(days=400), {
            "id": "s-1", "customer": "c-1", "plan": "pro",
            "start": "2025-01-01"}).status == "applied"
    with unit_of_work() as session:  # 1,500 tokens = 15.00 in the current period
        ingest(session, [{"key": "e-1", "customer": "c-1", "meter": "tokens",
                          "quantity": "1500",
                          "timestamp": (now - timedelta(seconds=5)).isoformat()}],
               now, "m-1")
    db.engine().dispose()

    made = json.loads(ok(billing(env, "alerts", "create", "spend", "c-1", "usage_amount",
                                 "10.00", "20.00", "--every", "50.00", "--json")))
    assert made["thresholds"] == ["10.00", "20.00"] and made["recurring_step"] == "50.00"
    fired = json.loads(ok(billing(env, "alerts", "events", "--json")))
    assert [(e["alert"], e["thresholds"], e["value"]) for e in fired] == [
        ("spend", ["10.00"], "15.00")]
    assert fired[0]["status"] == "pending"  # no broker: the scheduler sends it
    ok(billing(env, "alerts", "create", "tokens", "c-1", "usage_quantity", "100000",
               "--meter", "tokens", "--subscription", "s-1"))
    listed = json.loads(ok(billing(env, "alerts", "list", "--json")))
    assert [a["id"] for a in listed] == ["spend", "tokens"]
    assert "spend" in ok(billing(env, "alerts", "list"))

    refused(billing(env, "alerts", "create", "x", "c-1", "usage_amount", "0"),
            "thresholds[0]", "greater than 0")
    refused(billing(env, "alerts", "create", "x", "c-1", "usage_amount", "20", "10"),
            "thresholds[1]", "greater than the previous")
    refused(billing(env, "alerts", "create", "x", "c-1", "usage_quantity", "5",
                    "--meter", "nope"), "'nope' is not a known meter")
    refused(billing(env, "alerts", "create", "x", "ghost", "usage_amount", "5"),
            "'ghost' is not a known customer")
    refused(billing(env, "alerts", "create", "spend", "c-1", "usage_amount", "5"),
            "taken")
    assert [a["id"] for a in json.loads(ok(billing(env, "alerts", "list", "--json")))] == [
        "spend", "tokens"]

    assert json.loads(ok(billing(env, "alerts", "delete", "tokens", "--json"))) == {
        "id": "tokens", "deleted": True}
    refused(billing(env, "alerts", "delete", "tokens"), "'tokens' is not a known alert")
    assert [a["id"] for a in json.loads(ok(billing(env, "alerts", "list", "--json")))] == [
        "spend"]
