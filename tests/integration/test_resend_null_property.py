"""A re-send that adds (or drops) a property whose value is ``null`` is a duplicate, not a
conflict (issue #20, "also seen"): ``null`` reads as absent everywhere else — a missing,
``null`` or ``{}`` ``properties``, and ``unique_count`` — so it does for duplicates too,
through both doors: an actor message and ``POST /v1/usage``. A nested ``null`` is a value
(``{"a": {"b": null}}`` is not ``{"a": {}}``: ``unique_count`` tells them apart), and a
property with another value is still a conflict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from persistence.db import unit_of_work
from persistence.tables import UsageConflictRow, UsageEventRow
from services import api_keys
from tests.conftest import Runtime
from tests.integration.helpers import apply_catalog
from web.app import create_app
from workers import actors


def event(key: str, properties: Any = None, **kw: Any) -> dict[str, Any]:
    raw = {"key": key, "customer": "c-1", "meter": "tokens", "quantity": "10",
           "timestamp": "2026-01-05T10:00:00Z", **kw}
    if properties is not None:
        raw["properties"] = properties
    return raw


# (first send, re-send, outcome of the re-send)
RESENDS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (event("a", {"model": "large"}), event("a", {"model": "large", "region": None}),
     "duplicate"),
    (event("b", {"model": "large", "region": None}), event("b", {"model": "large"}),
     "duplicate"),
    (event("c"), event("c", {"region": None}), "duplicate"),
    (event("d", {"region": None}), event("d"), "duplicate"),
    (event("e", {"region": None}), event("e", {}), "duplicate"),
    (event("f", {"n": 1, "z": None}), event("f", {"y": None, "n": 1.0}), "duplicate"),
    (event("g", {"model": "large"}), event("g", {"model": None}), "conflict"),
    (event("h", {"a": {"b": None}}), event("h", {"a": {}}), "conflict"),
    (event("i", {"model": "large"}), event("i", {"model": "small", "x": None}), "conflict"),
]


def outcomes() -> tuple[set[str], set[str]]:
    with unit_of_work() as session:
        stored = set(session.scalars(select(UsageEventRow.key)))
        conflicts = set(session.scalars(select(UsageConflictRow.key)))
    return stored, conflicts


def expected() -> tuple[set[str], set[str]]:
    keys = {first["key"] for first, _, _ in RESENDS}
    return keys, {first["key"] for first, _, outcome in RESENDS if outcome == "conflict"}


def test_a_null_property_in_a_resend_is_a_duplicate_through_an_actor(
        runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-06T00:00:00Z")
    actors.record_usage.send([first for first, _, _ in RESENDS])
    runtime.drain()
    actors.record_usage.send([again for _, again, _ in RESENDS])
    runtime.drain()
    assert outcomes() == expected()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    apply_catalog()
    runtime.at("2026-01-06T00:00:00Z")
    _, key = api_keys.create("tests", datetime(2026, 1, 1, tzinfo=UTC))
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def test_a_null_property_in_a_resend_is_a_duplicate_over_http(
        client: TestClient, runtime: Runtime) -> None:
    first = client.post("/v1/usage", json={"events": [f for f, _, _ in RESENDS]})
    assert first.status_code == 202, first.text
    runtime.drain()
    again = client.post("/v1/usage", json={"events": [a for _, a, _ in RESENDS]})
    assert again.status_code == 202, again.text
    runtime.drain()
    status = client.get(f"/v1/usage/batches/{again.json()['batch']}").json()
    conflicts = sum(outcome == "conflict" for _, _, outcome in RESENDS)
    assert (status["duplicate"], status["conflict"]) == (len(RESENDS) - conflicts, conflicts)
    assert outcomes() == expected()
