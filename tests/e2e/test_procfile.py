"""``honcho start`` runs the Procfile as the README says — with the virtual environment's
``bin`` first on PATH, as ``. .venv/bin/activate`` puts it — against PostgreSQL + Redis:
web, worker and scheduler come up, usage sent over HTTP is ingested and a failing message
is retried; and — the Procfile sets ``BILLING_LOG_FORMAT=json`` unless it is set —
**every line** each process writes
(the engine's, dramatiq's, uvicorn's, a traceback) is one JSON object (issue #10)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from dramatiq import Message

from tests.conftest import REDIS_URL, ROOT
from tests.e2e.test_crash_recovery import Processes
from tests.servers import free_port

pytestmark = pytest.mark.postgres
CATALOG = {
    "entities": [{"id": "proc", "timezone": "UTC", "invoice_prefix": "P"}],
    "meters": [{"id": "calls", "aggregation": "sum"}],
    "plans": [{"id": "api", "currency": "USD", "interval": "month", "charges": [
        {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
         "unit_price": "0.01"}]}],
    "customers": [{"id": "c-1", "entity": "proc"}],
}


def wait_until(what: str, check: Callable[[], bool], timeout: float, log: Path) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def honcho_lines(log: Path) -> list[tuple[str, str]]:
    """(process, line) of honcho's output ``HH:MM:SS name.1 | line``; honcho's own
    ``system`` lines are not the engine's."""
    found = []
    for raw in log.read_text(errors="replace").splitlines():
        head, sep, line = raw.partition(" | ")
        if not sep:
            continue
        name = head.split()[-1]
        if name != "system":
            found.append((name, line))
    return found


def test_honcho_start_runs_the_procfile_and_every_line_is_json(
        processes: Processes, database: str, namespace: str, tmp_path: Path) -> None:
    from persistence import migrate
    from services import catalog

    migrate.upgrade()
    catalog.apply_document(CATALOG)
    env = {**processes.env, "BILLING_LOG_LEVEL": "INFO", "BILLING_WORKER_PROCESSES": "1",
           "BILLING_WORKER_THREADS": "2", "BILLING_MAX_RETRIES": "1",
           "BILLING_MIN_BACKOFF_MS": "100", "BILLING_MAX_BACKOFF_MS": "200"}
    key = subprocess.run([sys.executable, "-m", "cli", "api-keys", "create", "procfile"],
                         env={**env, "BILLING_LOG_FORMAT": "console"}, capture_output=True,
                         text=True, timeout=120)
    assert key.returncode == 0, key.stderr
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env.update(PORT=str(port), PATH=venv_bin + os.pathsep + env.get("PATH", ""))
    # the Procfile logs JSON lines by itself (#27: run as the README says, every process
    # logged the console format unless BILLING_LOG_FORMAT was set)
    env.pop("BILLING_LOG_FORMAT", None)
    log = tmp_path / "honcho.log"
    with log.open("ab") as out:
        honcho = subprocess.Popen([str(Path(venv_bin) / "honcho"), "start"], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key.stdout.strip()}"}

        def web_up() -> bool:
            try:
                return bool(httpx.get(f"{base}/healthz", timeout=2).status_code == 200)
            except httpx.HTTPError:
                return False

        wait_until("the web process answers", web_up, 90, log)
        created = httpx.post(f"{base}/v1/subscriptions", headers=headers, timeout=10, json={
            "id": "s-1", "customer": "c-1", "plan": "api", "start": "2026-11-01"})
        assert created.status_code == 201, created.text
        sent = httpx.post(f"{base}/v1/usage", headers=headers, timeout=10, json={"events": [
            {"key": "e-1", "customer": "c-1", "meter": "calls", "quantity": "5",
             "timestamp": "2026-11-05T00:00:00Z"},
            {"key": "e-2", "customer": "c-1", "meter": "calls", "quantity": "-1",
             "timestamp": "2026-11-05T00:00:00Z"}]})
        assert sent.status_code == 202, sent.text
        batch = sent.json()["batch"]

        def processed() -> bool:
            status = httpx.get(f"{base}/v1/usage/batches/{batch}", headers=headers,
                               timeout=5).json()
            return bool(status.get("status") == "processed")

        wait_until("the worker ingests the batch", processed, 60, log)

        def folded() -> bool:  # the scheduler folds usage into the estimates' rollups
            from services import rollups

            report = rollups.lag()
            return report.drawn > 0 and report.folded >= report.drawn

        wait_until("the scheduler folds the batch into the rollups", folded, 30, log)
        # a message no actor can run (wrong arguments): dramatiq logs the failure with its
        # traceback, retries it once, then dead-letters it — all of it JSON
        from services.settings import settings
        from workers.broker import redis_broker

        broker = redis_broker(settings(), url=REDIS_URL, namespace=namespace)
        try:
            broker.enqueue(Message(queue_name="billing", actor_name="record_usage",
                                   args=(1, 2, 3), kwargs={}, options={}))
        finally:
            broker.close()

        def failed_twice() -> bool:
            return log.read_text().count("Failed to process message") >= 2

        wait_until("the bad message fails and is retried", failed_twice, 60,
                   log)
        time.sleep(2)  # the scheduler ticks every second
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(timeout=30)
    lines = honcho_lines(log)
    by_process: dict[str, list[dict[str, Any]]] = {}
    for name, line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{name} wrote a line that is not JSON: {line!r}\n\n{log.read_text()}")
        assert isinstance(record, dict) and "event" in record and "level" in record, line
        by_process.setdefault(name.split(".")[0], []).append(record)
    assert set(by_process) == {"web", "worker", "scheduler"}, by_process.keys()
    worker = by_process["worker"]
    assert any(r.get("logger", "").startswith("dramatiq") for r in worker), worker[:5]
    failures = [r for r in worker if "Failed to process message" in r["event"]]
    assert failures and all(r["level"] == "error" and r.get("exception") for r in failures)
    assert any(r.get("event") == "usage recorded" and r.get("rejected") == 1 for r in worker)
    assert any(r.get("event") == "scheduler started" for r in by_process["scheduler"])
