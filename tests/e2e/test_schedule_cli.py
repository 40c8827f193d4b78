"""``billing schedule`` and ``billing status`` as an operator runs them, against a database
the real scheduler process has woken on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import cli_process
from tests.servers import free_port

pytestmark = pytest.mark.e2e

CATALOG = """
entities:
  - {id: acme-us, timezone: America/New_York, invoice_prefix: US}
  - {id: acme-in, timezone: Asia/Kolkata, invoice_prefix: IN}
"""


def billing(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return cli_process.run(args, env={**env, "COLUMNS": "200"}, timeout=120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {**os.environ, "BILLING_DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}",
                   "BILLING_SCHEDULER_METRICS_PORT": "0"}
    environment.pop("BILLING_BROKER_URL", None)
    environment.pop("BILLING_REDIS_URL", None)
    assert billing(environment, "db", "upgrade").returncode == 0
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    assert billing(environment, "catalog", "apply", str(tmp_path / "catalog.yaml")
                   ).returncode == 0
    return environment


def test_schedule_lists_local_and_utc_runs_with_dst_changes(env: dict[str, str]) -> None:
    done = billing(env, "schedule", "--days", "366", "--json")
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    us = [r for r in runs if r["entity"] == "acme-us"]
    assert len(us) == 366 and all(r["local_time"] == "08:15" for r in us)
    changes = [r for r in us if r["dst_change"]]
    assert {r["dst_change"] for r in changes} == {"-05:00 → -04:00", "-04:00 → -05:00"}
    assert not [r for r in runs if r["entity"] == "acme-in" and r["dst_change"]]
    table = billing(env, "schedule", "--entity", "acme-us", "--days", "3")
    assert table.returncode == 0 and "acme-us" in table.stdout and "08:15" in table.stdout
    assert "acme-in" not in table.stdout


def test_status_shows_the_scheduler_after_it_woke(env: dict[str, str]) -> None:
    before = billing(env, "status")
    assert before.returncode == 0, before.stderr
    assert "none has run" in before.stdout and "not configured" in before.stdout
    # the embedded default: the web process runs the scheduler in a thread, with its own
    # in-process broker and worker
    port = str(free_port())
    web = subprocess.Popen([sys.executable, "-m", "web"], env={**env, "PORT": port,
                                                                "HOST": "127.0.0.1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = json.loads(billing(env, "status", "--json").stdout)
            if found["schedulers"]:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the scheduler never beat")
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(30)
    beat = found["schedulers"][0]
    assert beat["entities"] == 2 and beat["next_entity"] in ("acme-us", "acme-in")
    assert found["database"] == "ok" and found["dead_letters"] == 0
    text = billing(env, "status")
    assert text.returncode == 0 and "woke" in text.stdout and "2 entities" in text.stdout


def test_status_with_the_broker_down_reports_and_fails(env: dict[str, str]) -> None:
    done = billing({**env, "BILLING_BROKER_URL": "redis://127.0.0.1:1/0"}, "status")
    assert done.returncode != 0
    assert "database     ok" in done.stdout and "unreachable" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "broker" in lines[0], done.stderr
