"""An ``Idempotency-Key`` reused with another request (issue #20, finding 1).

The key names one request: its method, path and body (canonical JSON: key order and
spacing do not matter). The same request again gets the first answer and has no second
effect; another request with that key is refused with 422 ``idempotency_key_reused`` and
nothing of it is stored or sent — on every endpoint that takes the header. Driven through
a real uvicorn server in this process, many clients at once, with real workers (2 × 8
threads on Redis) and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from persistence.db import unit_of_work
from persistence.tables import (
    InvoiceRow,
    RejectedUsageRow,
    SubscriptionRow,
    UsageConflictRow,
    UsageEventRow,
)
from services import api_keys
from tests.conftest import Pool
from tests.integration.helpers import CATALOG, apply_catalog
from tests.integration.http_server import serving

pytestmark = pytest.mark.postgres

REUSED = "idempotency_key_reused"


@pytest.fixture
def api(pool: Pool) -> Iterator[tuple[httpx.Client, Pool]]:
    apply_catalog()
    pool.at("2026-01-06T00:00:00Z")
    _, key = api_keys.create("tests", datetime(2026, 1, 1, tzinfo=UTC))
    with serving() as base, httpx.Client(base_url=base, timeout=60,
                                         headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, pool


def events(prefix: str, n: int = 3) -> list[dict[str, Any]]:
    return [{"key": f"{prefix}-{i}", "customer": "c-1", "meter": "tokens", "quantity": "10",
             "timestamp": "2026-01-05T10:00:00Z"} for i in range(n)]


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """The calls at the same instant, each from its own thread (its own connection)."""
    answers: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            answers[i] = calls[i]()
        except BaseException as exc:  # reported below
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for answer in answers:
        if not isinstance(answer, httpx.Response):
            raise AssertionError(answer)
    return answers


def stored_keys() -> set[str]:
    with unit_of_work() as session:
        keys = set(session.scalars(select(UsageEventRow.key)))
        keys |= {k for k in session.scalars(select(RejectedUsageRow.key)) if k}
        keys |= set(session.scalars(select(UsageConflictRow.key)))
    return keys


def is_reused(answer: httpx.Response) -> bool:
    return answer.status_code == 422 and answer.json()["error"]["code"] == REUSED \
        and answer.json()["error"]["field"] == "Idempotency-Key"


ROUNDS = 20


def test_a_key_reused_with_other_usage_loses_nothing_and_stores_nothing_of_it(
        api: tuple[httpx.Client, Pool]) -> None:
    """20 rounds of two usage requests with one key and different events, at once: one is
    accepted (202) and all of its events are stored; the other is refused and none of its
    events is stored, rejected or recorded as a conflict; the batch reports the accepted
    body. Then the same key with another body after the first was processed: refused."""
    client, pool = api
    bodies: dict[tuple[int, str], list[dict[str, Any]]] = {}
    answers: dict[int, list[httpx.Response]] = {}
    for r in range(ROUNDS):
        key = f"usage-{r}"
        for side in "ab":
            bodies[(r, side)] = events(f"{side}{r}")
        answers[r] = at_once(*[
            (lambda body=bodies[(r, side)], key=key:
             client.post("/v1/usage", json={"events": body}, headers={"Idempotency-Key": key}))
            for side in "ab"])
    pool.drain()
    stored = stored_keys()
    wrong = {}
    for r in range(ROUNDS):
        first = answers[r][0]
        codes = sorted(a.status_code for a in answers[r])
        winner = "a" if first.status_code == 202 else "b"
        loser = "b" if winner == "a" else "a"
        accepted = next((a for a in answers[r] if a.status_code == 202), None)
        batch = accepted and client.get(f"/v1/usage/batches/{accepted.json()['batch']}").json()
        kept = {e["key"] for e in bodies[(r, winner)]}
        dropped = {e["key"] for e in bodies[(r, loser)]}
        if codes != [202, 422] or not any(is_reused(a) for a in answers[r]) \
                or not kept <= stored or dropped & stored or not batch \
                or (batch["events"], batch["accepted"]) != (3, 3):
            wrong[r] = (codes, sorted(kept - stored), sorted(dropped & stored), batch)
    lost = sum(len({e["key"] for e in bodies[(r, side)]} - stored) for r in range(ROUNDS)
               for side, answer in zip("ab", answers[r], strict=True)
               if answer.status_code == 202)  # accepted, yet not stored
    assert wrong == {}, (f"{len(wrong)} of {ROUNDS} rounds wrong ({lost} of {ROUNDS * 6} "
                         f"events not stored), e.g. {list(wrong.items())[:3]}")

    # later, once the first was processed: the same body gets the first answer again, and
    # another body is refused (nothing of it stored)
    first = client.post("/v1/usage", json={"events": events("late")},
                        headers={"Idempotency-Key": "late"})
    pool.drain()
    reordered = [dict(reversed(e.items())) for e in events("late")]  # the same JSON value
    same = client.post("/v1/usage", json={"events": reordered},
                       headers={"Idempotency-Key": "late"})
    other = client.post("/v1/usage", json={"events": events("later")},
                        headers={"Idempotency-Key": "late"})
    pool.drain()
    assert first.status_code == same.status_code == 202 and same.json() == first.json()
    assert is_reused(other), other.text
    assert not {e["key"] for e in events("later")} & stored_keys()
    batch = client.get(f"/v1/usage/batches/{first.json()['batch']}").json()
    assert (batch["accepted"], batch["duplicate"]) == (3, 0)


def test_the_same_usage_body_in_another_key_order_and_spacing_is_the_same_request(
        api: tuple[httpx.Client, Pool]) -> None:
    client, pool = api
    one = ('{"events": [{"key": "k-1", "customer": "c-1", "meter": "tokens", '
           '"quantity": 1.50, "timestamp": "2026-01-05T10:00:00Z"}]}')
    two = ('{ "events":[{"timestamp":"2026-01-05T10:00:00Z","quantity":1.50,'
           '"meter":"tokens","customer":"c-1","key":"k-1"}] }')
    answers = [client.post("/v1/usage", content=body, headers={
        "Idempotency-Key": "spacing", "Content-Type": "application/json"}) for body in (one, two)]
    assert [a.status_code for a in answers] == [202, 202], answers[1].text
    assert answers[0].json() == answers[1].json()
    pool.drain()


def subscription_ids() -> set[str]:
    with unit_of_work() as session:
        return set(session.scalars(select(SubscriptionRow.id)))


def test_a_key_reused_with_another_subscribe_is_refused_at_once_and_creates_nothing(
        api: tuple[httpx.Client, Pool]) -> None:
    client, _ = api
    apply_catalog({**CATALOG, "customers": [{"id": f"k-{r}-{side}", "entity": "acme"}
                                            for r in range(ROUNDS) for side in "ab"]})
    wrong = {}
    for r in range(ROUNDS):
        bodies = [{"id": f"s-{r}-{side}", "customer": f"k-{r}-{side}", "plan": "seats-only",
                   "start": "2026-02-01"} for side in "ab"]
        if r % 2:  # and one round in two: the first, then the second
            answers = [client.post("/v1/subscriptions", json=b,
                                   headers={"Idempotency-Key": f"sub-{r}"}) for b in bodies]
        else:
            answers = at_once(*[(lambda b=b, r=r: client.post(
                "/v1/subscriptions", json=b, headers={"Idempotency-Key": f"sub-{r}"}))
                for b in bodies])
        made = {b["id"] for b in bodies} & subscription_ids()
        codes = sorted(a.status_code for a in answers)
        if codes != [201, 422] or not any(is_reused(a) for a in answers) or len(made) != 1:
            wrong[r] = (codes, [a.text[:120] for a in answers], sorted(made))
    assert wrong == {}, f"{len(wrong)} of {ROUNDS} wrong: {list(wrong.items())[:3]}"


def test_every_endpoint_with_the_header_answers_a_retry_once_and_refuses_another_request(
        api: tuple[httpx.Client, Pool]) -> None:
    from scheduler.tick import tick

    client, pool = api
    pool.at("2026-01-01T06:00:00Z")
    for sub, customer in (("s-1", "c-2"), ("s-2", "c-1")):  # c-2 gets drafts
        made = client.post("/v1/subscriptions", json={"id": sub, "customer": customer,
                                                      "plan": "pro", "start": "2026-01-01"},
                           headers={"Idempotency-Key": f"make-{sub}"})
        assert made.status_code == 201, made.text
    # the same subscribe again: the first answer; the key on another endpoint: refused
    again = client.post("/v1/subscriptions", json={"id": "s-1", "customer": "c-2",
                                                   "plan": "pro", "start": "2026-01-01"},
                        headers={"Idempotency-Key": "make-s-1"})
    assert again.status_code == 201
    assert is_reused(client.post("/v1/subscriptions/s-1/cancel",
                                 headers={"Idempotency-Key": "make-s-1"}))

    # cancel: a retry is the first answer (even after an uncancel), another subscription
    # with the same key is refused and left alone
    pool.at("2026-01-10T00:00:00Z")
    cancel = client.post("/v1/subscriptions/s-1/cancel", headers={"Idempotency-Key": "c"})
    assert cancel.status_code == 200 and cancel.json()["end"] == "2026-02-01"
    other = client.post("/v1/subscriptions/s-2/cancel", headers={"Idempotency-Key": "c"})
    assert is_reused(other) and client.get("/v1/subscriptions/s-2").json()["end"] is None
    client.post("/v1/subscriptions/s-1/uncancel", headers={"Idempotency-Key": "u"})
    retried = client.post("/v1/subscriptions/s-1/cancel", headers={"Idempotency-Key": "c"})
    assert retried.status_code == 200 and retried.json() == cancel.json()
    assert client.get("/v1/subscriptions/s-1").json()["end"] is None  # applied once
    assert is_reused(client.post("/v1/subscriptions/s-2/uncancel",
                                 headers={"Idempotency-Key": "u"}))

    # release and regenerate: another invoice with the same key is refused, left a draft
    pool.at("2026-02-01T07:16:00Z")
    tick(pool.clock.now())
    pool.drain()
    refs = sorted(f"{sub}@{day}" for sub, day in statuses() if statuses()[(sub, day)] ==
                  "draft")
    assert refs == ["s-1@2026-01-01", "s-1@2026-02-01"]
    regenerated = client.post(f"/v1/invoices/{refs[0]}/regenerate",
                              headers={"Idempotency-Key": "g"})
    assert regenerated.status_code == 200
    assert is_reused(client.post(f"/v1/invoices/{refs[1]}/regenerate",
                                 headers={"Idempotency-Key": "g"}))
    released = client.post(f"/v1/invoices/{refs[0]}/release", headers={"Idempotency-Key": "r"})
    assert released.status_code == 200 and released.json()["number"]
    assert client.post(f"/v1/invoices/{refs[0]}/release",
                       headers={"Idempotency-Key": "r"}).json() == released.json()
    refused = client.post(f"/v1/invoices/{refs[1]}/release", headers={"Idempotency-Key": "r"})
    assert is_reused(refused)
    assert statuses()[("s-1", "2026-02-01")] == "draft"


def statuses() -> dict[tuple[str, str], str]:
    """(subscription, boundary) -> status of every invoice (read from the store: what the
    API answered is what is checked above)."""
    with unit_of_work() as session:
        return {(sub, day.isoformat()): status for sub, day, status in session.execute(
            select(InvoiceRow.subscription_id, InvoiceRow.boundary, InvoiceRow.status))}
