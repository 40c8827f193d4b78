"""schemathesis against the HTTP API's own OpenAPI document (issue #12): whatever it sends,
no 5xx, and every response matches the schema (status, content type, headers, body), a
method a path does not have gets 405 with the right ``Allow``.

Left out: the checks that a schema-valid request is accepted and a schema-invalid one
refused. The engine validates beyond what a schema can say (an unknown customer, an
overlap, a date out of range: 404/409/422 with the reason), and a usage batch takes any
event, refusing the bad ones one by one with a reason once processed (nothing is lost)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from persistence import db
from services import api_keys, clock
from services import catalog as catalog_service
from services.settings import settings as settings_of
from tests.integration.helpers import CATALOG
from web.app import create_app
from workers.broker import stub_broker, use

app = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
KEY: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    folder: Path = tmp_path_factory.mktemp("schema")
    patch = pytest.MonkeyPatch()
    patch.setenv("BILLING_PORTAL_SECRET", "schemathesis-portal-secret")
    settings_of.cache_clear()
    db.configure(f"sqlite:///{folder / 'api.db'}")
    db.create_schema()
    use(stub_broker())  # usage is queued in process; nothing consumes it here
    clock.use(clock.SimulatedClock(datetime(2026, 2, 1, tzinfo=UTC)))
    catalog_service.apply_document(CATALOG, datetime(2026, 1, 1, tzinfo=UTC))
    _, KEY["value"] = api_keys.create("schemathesis", datetime(2026, 1, 1, tzinfo=UTC))
    yield
    clock.reset()
    db.engine().dispose()
    patch.undo()
    settings_of.cache_clear()


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_no_server_error_and_every_response_matches_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY['value']}"},
                           excluded_checks=[positive_data_acceptance, negative_data_rejection])
