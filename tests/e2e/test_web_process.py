"""The ``web`` Procfile process for real (issue #12): ``python -m web`` on a free port
against PostgreSQL + Redis with a ``worker`` process, driven by the Python client
(``clients/python``) as an application would: API key, customer, subscription with an
idempotency key, 2,000 events in batches, their outcomes, the estimate, a cancel, the
invoices — and 401 without a key."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from billing_client import BillingClient, BillingError, UsageBatcher

from tests.e2e.test_crash_recovery import Processes
from tests.servers import free_port

pytestmark = pytest.mark.postgres
CATALOG = {
    "entities": [{"id": "web", "timezone": "UTC", "invoice_prefix": "W"}],
    "meters": [{"id": "calls", "aggregation": "sum"}],
    "plans": [{"id": "api", "currency": "USD", "interval": "month", "charges": [
        {"id": "fee", "type": "recurring", "amount": "10.00"},
        {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
         "unit_price": "0.001"}]}],
}


def test_web_process_with_workers_and_the_client(processes: Processes, database: str,
                                                 tmp_path: Path) -> None:
    from persistence import migrate
    from services import catalog

    migrate.upgrade()
    catalog.apply_document(CATALOG)
    created = subprocess.run([sys.executable, "-m", "cli", "api-keys", "create", "e2e"],
                             env={**processes.env, "BILLING_LOG_FORMAT": "console"},
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    port = free_port()
    processes.env["PORT"] = str(port)
    processes.start("web", [sys.executable, "-m", "web"])
    processes.worker("worker")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).json()["status"] == "ok":
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, processes.tails()
        time.sleep(0.2)

    assert httpx.get(f"{base}/v1/invoices").status_code == 401
    with BillingClient(base, key) as billing:
        billing.put_customer("acme", "web", email="ap@acme.example")
        start = datetime.now(UTC).date().replace(day=1)
        first = billing.subscribe("acme-api", "acme", "api", start, idempotency_key="sub-1")
        again = billing.subscribe("acme-api", "acme", "api", start, idempotency_key="sub-1")
        assert first["id"] == again["id"] == "acme-api"
        with pytest.raises(BillingError) as refused:
            billing.subscribe("acme-api-2", "acme", "api", start)
        assert refused.value.status == 409 and "overlaps" in refused.value.message

        now = datetime.now(UTC)
        with UsageBatcher(billing, batch_size=500) as usage:
            for n in range(2_000):
                usage.add(key=f"call-{n}", customer="acme", meter="calls",
                          quantity=Decimal("1.5") if n % 2 else 2, timestamp=now)
            usage.add(key="call-0", customer="acme", meter="calls", quantity=2, timestamp=now)
            usage.add(key="bad", customer="acme", meter="calls", quantity="-1", timestamp=now)
        outcomes: dict[str, int] = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for batch in usage.batches:
            done: dict[str, Any] = billing.wait_for_batch(batch, timeout=60)
            for name in outcomes:
                outcomes[name] += done[name]
        assert outcomes == {"accepted": 2_000, "duplicate": 1, "rejected": 1}

        estimate = billing.estimate(subscription="acme-api")
        calls = next(ln for ln in estimate["lines"] if ln["charge"] == "calls")
        assert calls["quantity"] == "3500" and calls["amount"] == "3.50"
        cancelled = billing.cancel("acme-api", idempotency_key="cancel-1")
        assert cancelled["status"] == "cancelled" and cancelled["end"] is not None
        assert list(billing.invoices(customer="acme")) is not None
