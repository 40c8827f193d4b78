"""Usage is never lost, corrupted or stalled by what it carries (issue #9, findings 1, 2, 4,
5 and 6), on every broker and store: a retried message stores the same events; one bad
event is rejected on its own; any payload can be stored as a dead letter; a message no one
can decode is a dead letter once; a huge number is refused at once; sending without a
broker fails loudly."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from persistence import deadletters
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import RejectedUsageRow, UsageEventRow
from services import usage
from tests.conftest import Runtime
from tests.integration.helpers import apply_catalog
from workers import actors
from workers.broker import QUEUE, UNDECODABLE

ROOT = Path(__file__).resolve().parents[2]


def event(key: str, **kw: Any) -> dict[str, Any]:
    return {"key": key, "customer": "c-1", "meter": "tokens", "quantity": "1",
            "timestamp": "2026-01-05T10:00:00Z", **kw}


def stored() -> dict[str, UsageEventRow]:
    with unit_of_work() as session:
        return {r.key: r for r in session.scalars(select(UsageEventRow))}


def rejected() -> dict[str | None, RejectedUsageRow]:
    with unit_of_work() as session:
        return {r.key: r for r in session.scalars(select(RejectedUsageRow))}


def test_a_retried_message_stores_the_events_it_was_sent_with(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first attempt fails on a database blip and is tried again; the events stored keep
    their properties as the numbers they were (a retry never re-encodes a number as text),
    and an exact re-send of the events afterwards is a duplicate, not a conflict."""
    from services.settings import settings
    from workers import broker as broker_module

    apply_catalog()
    runtime.at("2026-01-06T00:00:00Z")
    fast = settings().model_copy(update={"min_backoff_ms": 1, "max_backoff_ms": 5})
    monkeypatch.setattr(broker_module, "settings", lambda: fast)
    real, calls = usage.ingest, []

    def blip(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(usage, "ingest", blip)
    batch = [event("a", properties={"user": Decimal("7.0"), "ratio": 0.5, "tag": "x"}),
             event("b", quantity=Decimal("2.50"), properties={"user": 7})]
    actors.record_usage.send(batch)
    runtime.drain()
    assert len(calls) == 2
    rows = stored()
    assert rows["a"].properties == {"user": 7, "ratio": 0.5, "tag": "x"}
    assert rows["b"].quantity == Decimal("2.5") and rows["b"].properties == {"user": 7}
    monkeypatch.undo()
    actors.record_usage.send(batch)  # the application sends the same events again
    runtime.drain()
    with unit_of_work() as session:
        assert usage_repo.outcome_counts(session) == {
            "accepted": 2, "duplicate": 2, "conflict": 0, "rejected": 0}


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800"])
def test_an_unstorable_character_rejects_its_event_alone(runtime: Runtime, bad: str) -> None:
    apply_catalog()
    runtime.at("2026-01-06T00:00:00Z")
    good = [event(f"g-{i}") for i in range(5)]
    poison = [event(f"key-{bad}"), event("p-1", properties={"note": bad}),
              event("p-2", properties={bad: 1}), event("p-3", customer=f"c{bad}"),
              event("p-4", meter=bad)]
    actors.record_usage.send(good[:2] + poison + good[2:])
    runtime.drain()
    assert sorted(stored()) == [f"g-{i}" for i in range(5)]
    with unit_of_work() as session:
        counts = usage_repo.outcome_counts(session)
        reasons = [r.reason for r in session.scalars(select(RejectedUsageRow))]
        payloads = [json.loads(r.payload) for r in session.scalars(select(RejectedUsageRow))]
    assert counts == {"accepted": 5, "duplicate": 0, "conflict": 0, "rejected": 5}
    assert all("must not contain the character" in r or "is not a known" in r for r in reasons)
    assert {p["key"] for p in payloads} == {f"key-{bad}", "p-1", "p-2", "p-3", "p-4"}


def test_any_payload_can_be_stored_as_a_dead_letter(runtime: Runtime) -> None:
    message = actors.record_usage.message([event("k\x00\ud800", properties={"\x00": "\udfff"})])
    with unit_of_work() as session:
        deadletters.add(session, message.message_id, QUEUE, "record_usage",
                        message.encode().decode("ascii"), "RuntimeError: \x00 in error",
                        runtime.clock.now())
    with unit_of_work() as session:
        (row,) = deadletters.all(session)
    assert json.loads(row.message)["args"][0][0]["key"] == "k\x00\ud800"


def test_a_huge_number_is_refused_at_once(runtime: Runtime) -> None:
    apply_catalog()
    runtime.at("2026-01-06T00:00:00Z")
    started = time.monotonic()
    actors.record_usage.send([
        event("p", properties={"n": Decimal("1e500000")}), event("q", quantity="1e500000"),
        event("r", quantity=Decimal("7" * 5000)), event("s", quantity=10**4000),
        event("ok")])
    runtime.drain()
    assert time.monotonic() - started < 5
    reasons = {k: r.reason for k, r in rejected().items()}
    assert reasons["p"].startswith("properties.n: must be less than 1E+100")
    assert reasons["q"].startswith("quantity: must be less than 1E+100")
    assert reasons["r"].startswith("quantity: must be less than 1E+100")
    assert reasons["s"].startswith("quantity: must be less than 1E+100")
    assert list(stored()) == ["ok"]


def test_a_message_no_one_can_decode_is_a_dead_letter_once(runtime: Runtime) -> None:
    """Raw bytes put on the broker by a foreign producer: not UTF-8, not JSON, or not a
    message. Each is kept once with the reason and acknowledged; the good message sent with
    them is processed."""
    if not runtime.name.endswith("redis"):
        pytest.skip("raw bytes are put on Redis by hand")
    apply_catalog()
    runtime.at("2026-01-06T00:00:00Z")
    client = runtime.broker.client  # type: ignore[attr-defined]
    ns = runtime.broker.namespace  # type: ignore[attr-defined]
    raws = {"a0b1-0001": b"\xff\xfe\x00 garbage", "a0b1-0002": b'{"message_id": "m-2", '
            b'"options": {"redis_message_id": "a0b1-0002"}, truncated',
            "a0b1-0003": b"[" * 100_000}
    for redis_id, raw in raws.items():
        client.hset(f"{ns}:{QUEUE}.msgs", redis_id, raw)
        client.rpush(f"{ns}:{QUEUE}", redis_id)
    actors.record_usage.send([event("after")])
    runtime.drain()
    assert "after" in stored()
    with unit_of_work() as session:
        letters = deadletters.all(session)
    assert len(letters) == 3
    assert all(r.actor_name == "(undecodable)" for r in letters)
    kept = {base64.b64decode(json.loads(r.message)["raw_base64"]) for r in letters}
    assert kept == set(raws.values())
    assert not client.hlen(f"{ns}:{QUEUE}.msgs")  # all acknowledged, none left
    assert UNDECODABLE in {a.actor_name for a in runtime.broker.actors.values()}


def test_sending_usage_without_a_broker_fails_loudly(tmp_path: Path) -> None:
    """An application that forgot BILLING_BROKER_URL gets an error, not a silent
    in-process queue that nothing consumes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    code = ("from workers.client import UsageBatcher\n"
            "with UsageBatcher() as usage:\n"
            "    usage.add(key='e-1', customer='c', meter='m', quantity=1,\n"
            "              timestamp='2026-01-01T00:00:00Z')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode != 0
    assert "no message broker is configured: set BILLING_BROKER_URL" in done.stderr
