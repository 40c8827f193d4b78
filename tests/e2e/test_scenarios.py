"""Scenarios replay to their ``.expected.json`` on the embedded default, and identically on
PostgreSQL + Redis and PostgreSQL + RabbitMQ: each stack's output is the file to the character
(so the stacks agree with each other without replaying a scenario twice).

The project's own scenarios (tests/e2e/scenarios/ and examples/) always run; the shared
conformance scenarios run when they are present and are skipped, with the reason, when
they are not (a clone of the repository on its own)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest

from scheduler.replay import replay
from scheduler.scenario import load_scenario
from services.settings import settings
from tests.conftest import (
    PG_URL,
    REDIS_URL,
    ROOT,
    SHARED_MISSING,
    SHARED_SCENARIOS,
    flush_redis_namespace,
    rabbitmq_test_broker,
    require_services,
)
from workers.broker import redis_broker


def expected_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".yaml") + ".expected.json")


OWN = sorted((Path(__file__).parent / "scenarios").glob("*.yaml")) + sorted(
    p for p in (ROOT / "examples").glob("*.yaml") if expected_path(p).exists())
SHARED = sorted(SHARED_SCENARIOS.glob("*.yaml"))
SCENARIOS = [pytest.param(p, id=p.stem) for p in OWN] + (
    [pytest.param(p, id=f"shared-{p.stem}") for p in SHARED] or
    [pytest.param(None, id="shared", marks=pytest.mark.skip(reason=SHARED_MISSING))])


def by_value(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: by_value(v) for k, v in x.items()}
    if isinstance(x, list):
        return [by_value(v) for v in x]
    if isinstance(x, str):
        try:
            return Decimal(x)
        except InvalidOperation:
            return x
    return x


def expected(path: Path) -> Any:
    return json.loads(expected_path(path).read_text())


def test_the_projects_own_scenarios_are_present() -> None:
    assert len(OWN) > 20


@pytest.mark.parametrize("path", SCENARIOS)
def test_replay_matches_expected(path: Path) -> None:
    result = replay(load_scenario(path))
    assert by_value(result) == by_value(expected(path))
    # exact formatting too: amounts carry the currency's minor digits, and the output is the
    # expected file to the character — which makes the stacks below, held to the same file
    # to the character, identical to this one without replaying it again
    assert json.loads(json.dumps(result)) == result
    assert result == expected(path)


@pytest.mark.postgres
@pytest.mark.parametrize("path", SCENARIOS)
def test_replay_on_postgres_and_redis_is_identical(path: Path) -> None:
    require_services()
    namespace = f"billing-test-{uuid.uuid4().hex[:8]}"
    try:
        broker = redis_broker(settings(), url=REDIS_URL, namespace=namespace, max_retries=0)
        result = replay(load_scenario(path), database_url=PG_URL, broker=broker)
    finally:
        flush_redis_namespace(namespace)
    # identical to the embedded default's replay, which test_replay_matches_expected holds
    # to the same file to the character
    assert result == expected(path)


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.parametrize("path", SCENARIOS)
def test_replay_on_postgres_and_rabbitmq_is_identical(path: Path, rabbitmq_vhost: str) -> None:
    require_services()
    result = replay(load_scenario(path), database_url=PG_URL,
                    broker=rabbitmq_test_broker(rabbitmq_vhost))
    assert result == expected(path)  # and so identical to the embedded default's replay


UNTIL = """
entities: [{id: e, timezone: UTC}]
meters: [{id: calls, aggregation: sum}]
plans:
  - {id: p, currency: EUR, interval: month,
     charges: [{id: calls, type: usage, meter: calls, model: unit, unit_price: "1.00"}]}
customers: [{id: c, entity: e}]
timeline:
  - at: "2026-01-01T09:00:00Z"
    subscribe: {id: s, customer: c, plan: p, start: "2026-01-01"}
  - at: "2026-01-10T09:00:00Z"
    usage: [{key: a, customer: c, meter: calls, quantity: 2, timestamp: "2026-01-10T08:00:00Z"}]
  - at: "2026-02-01T08:15:00Z"   # the bill run's instant: applied before it
    usage: [{key: b, customer: c, meter: calls, quantity: 3, timestamp: "2026-01-31T08:00:00Z"}]
  - at: "2026-02-01T08:15:01Z"   # after until: not applied
    usage: [{key: c, customer: c, meter: calls, quantity: 5, timestamp: "2026-01-31T09:00:00Z"}]
until: "2026-02-01T08:15:00Z"
"""


def test_until_ends_the_replay(tmp_path: Path) -> None:
    """REPLAY.md: the last bill run is the one at ``until``; a later action is not applied."""
    path = tmp_path / "until.yaml"
    path.write_text(UNTIL)
    result = replay(load_scenario(path))
    assert [(i["boundary"], i["total"]) for i in result["invoices"]] == [("2026-02-01", "5.00")]
    assert result["usage"]["accepted"] == 2
    assert result["credit_grants"] == []
