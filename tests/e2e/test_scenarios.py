"""The shared scenarios replay to their ``.expected.json`` (decimals compared by value) on
the embedded default, and identically on PostgreSQL + Redis."""

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
    SHARED,
    flush_redis_namespace,
    rabbitmq_test_broker,
    require_services,
)
from workers.broker import redis_broker

OWN = Path(__file__).parent / "scenarios"
SCENARIOS = sorted((SHARED / "scenarios").glob("*.yaml")) + sorted(OWN.glob("*.yaml"))


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
    return json.loads(path.with_name(path.name.removesuffix(".yaml") + ".expected.json")
                      .read_text())


def test_shared_scenarios_are_present() -> None:
    assert SCENARIOS, f"no scenarios under {SHARED / 'scenarios'}"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_replay_matches_expected(path: Path) -> None:
    result = replay(load_scenario(path))
    assert by_value(result) == by_value(expected(path))
    # exact formatting too: amounts carry the currency's minor digits
    assert json.loads(json.dumps(result)) == result


@pytest.mark.postgres
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_replay_on_postgres_and_redis_is_identical(path: Path) -> None:
    require_services()
    namespace = f"billing-test-{uuid.uuid4().hex[:8]}"
    try:
        broker = redis_broker(settings(), url=REDIS_URL, namespace=namespace, max_retries=0)
        result = replay(load_scenario(path), database_url=PG_URL, broker=broker)
    finally:
        flush_redis_namespace(namespace)
    assert result == replay(load_scenario(path))
    assert by_value(result) == by_value(expected(path))


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_replay_on_postgres_and_rabbitmq_is_identical(path: Path, rabbitmq_vhost: str) -> None:
    require_services()
    result = replay(load_scenario(path), database_url=PG_URL,
                    broker=rabbitmq_test_broker(rabbitmq_vhost))
    assert by_value(result) == by_value(expected(path))
