"""``billing usage fold`` as an operator runs it: on PostgreSQL it folds what is new and
says how far the rollups go (``--json`` for scripts); on SQLite it says there is nothing
to fold."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import cli_process
from tests.e2e.test_crash_recovery import database  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e


def billing(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return cli_process.run(args, env={**env, "COLUMNS": "200"}, timeout=120)


@pytest.mark.postgres
def test_fold_folds_what_is_new_and_says_how_far(database: str) -> None:  # noqa: F811
    from persistence import migrate
    from persistence.db import unit_of_work
    from services import catalog, subscriptions
    from services.usage import ingest

    migrate.upgrade()
    catalog.apply_document({"meters": [{"id": "calls", "aggregation": "sum"}],
                            "entities": [{"id": "e", "timezone": "UTC", "invoice_prefix": "E"}],
                            "plans": [{"id": "p", "currency": "EUR", "interval": "month",
                                       "charges": [{"id": "calls", "type": "usage",
                                                    "meter": "calls", "model": "unit",
                                                    "unit_price": "1"}]}],
                            "customers": [{"id": "c", "entity": "e"}]})
    with unit_of_work() as session:
        outcome = subscriptions.do_subscribe(session, datetime(2026, 11, 1, tzinfo=UTC), {
            "id": "s", "customer": "c", "plan": "p", "start": "2026-11-01"})
        assert outcome.status == "applied", outcome
    with unit_of_work() as session:
        ingest(session, [{"key": f"k-{i}", "customer": "c", "meter": "calls", "quantity": i,
                          "timestamp": "2026-11-05T10:00:00Z"} for i in range(1, 11)],
               datetime(2026, 11, 6, tzinfo=UTC), "m-1")
    env = {**os.environ, "BILLING_DATABASE_URL": database}
    env.pop("BILLING_BROKER_URL", None)
    env.pop("BILLING_REDIS_URL", None)
    status = billing(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["batches_not_folded"] == 1
    done = billing(env, "usage", "fold", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["folds"] and not report["busy"] and report["events"] == 10
    assert report["folded"] == report["drawn"] >= 1
    again = billing(env, "usage", "fold")
    assert again.returncode == 0, again.stderr
    assert "folded 0 events" in again.stderr and again.stdout == ""
    status = billing(env, "status")
    assert "rollups      0 ingest batches not folded yet" in status.stdout, status.stdout


def test_on_sqlite_there_is_nothing_to_fold(tmp_path: Path) -> None:
    env = {**os.environ, "BILLING_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    assert billing(env, "db", "upgrade").returncode == 0
    done = billing(env, "usage", "fold")
    assert done.returncode == 0, done.stderr
    assert "nothing to fold" in done.stderr
    assert json.loads(billing(env, "usage", "fold", "--json").stdout)["folds"] is False
    env.pop("BILLING_BROKER_URL", None)
    env.pop("BILLING_REDIS_URL", None)
    status = billing(env, "status", "--json")
    assert json.loads(status.stdout)["batches_not_folded"] is None
