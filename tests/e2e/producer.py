"""The producer of ``test_crash_recovery``: a separate process that sends 100,000 usage
events through ``workers.client.UsageBatcher`` to the Redis broker named by the
``BILLING_*`` environment, and writes a JSON manifest of what it sent.

    python -m tests.e2e.producer --seed 20261121 --manifest /tmp/manifest.json

The events are a pure function of the seed (``generate``), so the test computes the
expected outcome of every event on its own. They are sent in two stages:

1. originals, exact re-sends of earlier originals (and a few re-sends spelled differently
   but equal by value: ``3`` = ``3.0``, the same instant at another offset — duplicates
   per SPEC §3), and invalid events, in a seeded shuffle;
2. conflicts: an earlier key with another payload — mostly keys of stage 1, and a few
   originals followed by their conflict in the same message.

Between the two stages the producer waits until every batch holding an original that a
conflict repeats is processed (its ``ingest_batches`` row is committed). SPEC §3 keeps the
*first ingested* payload of a key; with several workers, and a killed worker's messages
redelivered seconds later, the order of sending is not the order of ingestion, so without
this wait "the first one sent stays" would not be a property of the engine to check.

The module has no side effect on import: the test imports ``generate`` and the world's
constants from it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

TOTAL_EVENTS = 100_000
BATCH_SIZE = 500
N_CUSTOMERS = 2_000
N_RESENDS = 5_000  # exact re-sends (same key, same payload)
N_EQUIVALENT = 500  # re-sends equal by value, spelled differently
N_CONFLICTS = 1_000
N_SAME_BATCH_CONFLICTS = 50  # of which: an original and its conflict in one message
N_INVALID = 2_000
N_ORIGINALS = TOTAL_EVENTS - N_RESENDS - N_EQUIVALENT - N_CONFLICTS - N_INVALID
# Conflicts repeat originals of the first half, so the producer rarely waits for them.
CONFLICT_STRIDE = 45

# entity id -> (time zone, invoice prefix)
ENTITIES = {"alpha": ("UTC", "ALP"), "beta": ("Europe/Oslo", "BET")}
METERS = ("tokens", "calls")
OFFSETS = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)),
           timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-9, minutes=-30)))

# invalid kind -> the field its rejection reason must name
INVALID_FIELDS = {
    "negative": "quantity",
    "nan": "quantity",
    "not-a-number": "quantity",
    "unknown-meter": "meter",
    "unknown-customer": "customer",
    "naive-timestamp": "timestamp",
    "future-timestamp": "timestamp",
    "long-key": "key",
}


def customer_id(i: int) -> str:
    return f"cust-{i:04d}"


def entity_of(i: int) -> str:
    return "alpha" if i % 2 == 0 else "beta"


@dataclass
class Sent:
    """One event as sent, with what the engine must make of it."""

    event: dict[str, Any]
    kind: str  # original | resend | equivalent | conflict | invalid
    batch: int  # index of the message (batch) it is sent in
    invalid_field: str | None = None
    original_key: str | None = None  # for re-sends and conflicts


@dataclass
class Events:
    stage1: list[Sent] = field(default_factory=list)
    stage2: list[Sent] = field(default_factory=list)

    @property
    def all(self) -> list[Sent]:
        return self.stage1 + self.stage2

    def originals(self) -> dict[str, dict[str, Any]]:
        return {s.event["key"]: s.event for s in self.all if s.kind == "original"}

    def batches_holding_conflict_targets(self) -> list[int]:
        targets = {s.original_key for s in self.stage2}
        return sorted({s.batch for s in self.stage1
                       if s.kind == "original" and s.event["key"] in targets})


def _instant(rng: random.Random, start: datetime, end: datetime) -> datetime:
    seconds = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(seconds))


def _spell(instant: datetime, rng: random.Random) -> str:
    text = instant.astimezone(rng.choice(OFFSETS)).isoformat()
    return text.replace("+00:00", "Z") if rng.random() < 0.5 else text


def _quantity(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.03:
        return "0"
    if roll < 0.70:
        return str(rng.randint(1, 2_000))
    places = rng.choice((1, 2, 3, 6))
    return str(Decimal(rng.randint(1, 10**6)).scaleb(-places))


def _timestamp(rng: random.Random, customer: int) -> str:
    tz = ZoneInfo(ENTITIES[entity_of(customer)][0])
    oct1 = datetime(2026, 10, 1, tzinfo=tz).astimezone(UTC)
    nov1 = datetime(2026, 11, 1, tzinfo=tz).astimezone(UTC)
    roll = rng.random()
    if roll < 0.85:  # October, in the customer's entity's time zone
        at = _instant(rng, oct1, nov1)
    elif roll < 0.92:  # late September
        at = _instant(rng, oct1 - timedelta(days=10), oct1)
    elif roll < 0.98:  # November, before the run
        at = _instant(rng, nov1, datetime(2026, 11, 20, tzinfo=UTC))
    else:  # on and next to the boundaries of the local month
        at = rng.choice((oct1, nov1, nov1 - timedelta(microseconds=1), oct1 - timedelta(seconds=1)))
    return _spell(at, rng)


def _original(rng: random.Random, n: int) -> dict[str, Any]:
    customer = rng.randrange(N_CUSTOMERS)
    event: dict[str, Any] = {
        "key": f"evt-{n:06d}",
        "customer": customer_id(customer),
        "meter": "tokens" if rng.random() < 0.8 else "calls",
        "quantity": _quantity(rng),
        "timestamp": _timestamp(rng, customer),
    }
    if rng.random() < 0.3:
        event["properties"] = {"model": rng.choice(("small", "large")),
                               "region": rng.choice(("eu", "us"))}
    return event


def _equivalent(rng: random.Random, event: dict[str, Any]) -> dict[str, Any]:
    """The same event by value (SPEC §3): quantity with a trailing zero, the instant at
    another offset."""
    other = dict(event)
    q = event["quantity"]
    other["quantity"] = q + "0" if "." in q else q + ".0"
    instant = datetime.fromisoformat(event["timestamp"])
    other["timestamp"] = instant.astimezone(timezone(timedelta(hours=3))).isoformat()
    return other


def _invalid(rng: random.Random, n: int, kind: str) -> dict[str, Any]:
    event = _original(rng, 0)
    event["key"] = f"bad-{n:05d}"
    if kind == "negative":
        event["quantity"] = "-" + str(rng.randint(1, 500))
    elif kind == "nan":
        event["quantity"] = "NaN"
    elif kind == "not-a-number":
        event["quantity"] = "12 tokens"
    elif kind == "unknown-meter":
        event["meter"] = "no-such-meter"
    elif kind == "unknown-customer":
        event["customer"] = f"ghost-{n:05d}"
    elif kind == "naive-timestamp":
        event["timestamp"] = "2026-10-05T10:00:00"
    elif kind == "future-timestamp":
        event["timestamp"] = "2099-06-01T00:00:00Z"
    elif kind == "long-key":
        event["key"] = f"bad-{n:05d}-" + "x" * 300
    return event


def _conflict(rng: random.Random, n: int, event: dict[str, Any]) -> dict[str, Any]:
    other = dict(event)
    variant = n % 3
    if variant == 0:
        other["quantity"] = str(Decimal(event["quantity"]) + 1)
    elif variant == 1:
        instant = datetime.fromisoformat(event["timestamp"]) + timedelta(hours=1)
        other["timestamp"] = instant.isoformat()
    else:
        other["properties"] = {"model": "conflicting"}
    return other


def generate(seed: int) -> Events:
    """The events of a run, in sending order, as a pure function of ``seed``."""
    rng = random.Random(seed)
    cross_batch = N_CONFLICTS - N_SAME_BATCH_CONFLICTS
    kinds = (["resend"] * N_RESENDS + ["equivalent"] * N_EQUIVALENT + ["invalid"] * N_INVALID
             + ["original"] * (N_ORIGINALS - N_SAME_BATCH_CONFLICTS - 100))
    rng.shuffle(kinds)
    kinds = ["original"] * 100 + kinds
    invalid_kinds = list(INVALID_FIELDS)
    events = Events()
    originals: list[dict[str, Any]] = []
    resendable: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    invalid_count = 0
    for position, kind in enumerate(kinds):
        batch = position // BATCH_SIZE
        if kind == "original":
            event = _original(rng, len(originals))
            is_target = (len(originals) % CONFLICT_STRIDE == 7
                         and len(targets) < cross_batch)
            originals.append(event)
            (targets if is_target else resendable).append(event)
            events.stage1.append(Sent(event, kind, batch))
        elif kind in ("resend", "equivalent"):
            source = rng.choice(resendable)
            event = dict(source) if kind == "resend" else _equivalent(rng, source)
            events.stage1.append(Sent(event, kind, batch, original_key=source["key"]))
        else:
            what = invalid_kinds[invalid_count % len(invalid_kinds)]
            event = _invalid(rng, invalid_count, what)
            invalid_count += 1
            events.stage1.append(Sent(event, kind, batch, invalid_field=INVALID_FIELDS[what]))
    assert len(targets) == cross_batch, len(targets)
    first_batch = -(-len(kinds) // BATCH_SIZE)

    def add(event: dict[str, Any], kind: str, original_key: str | None = None) -> None:
        batch = first_batch + len(events.stage2) // BATCH_SIZE
        events.stage2.append(Sent(event, kind, batch, original_key=original_key))

    for n in range(N_SAME_BATCH_CONFLICTS):  # all in the first message of stage 2
        event = _original(rng, len(originals))
        originals.append(event)
        add(event, "original")
        add(_conflict(rng, n, event), "conflict", event["key"])
    for n, target in enumerate(targets):
        add(_conflict(rng, n, target), "conflict", target["key"])
    assert len(events.all) == TOTAL_EVENTS
    return events


def expected_invoice_boundaries(start: date, tz: str, run_at: datetime,
                                has_recurring: bool) -> list[tuple[int, date]]:
    """(k, b_k) of a monthly subscription starting on the 1st that the run at ``run_at``
    issues (SPEC §7), computed here without the engine."""
    due: list[tuple[int, date]] = []
    k = 0
    while True:
        month = start.month - 1 + k
        b = date(start.year + month // 12, month % 12 + 1, 1)
        if datetime(b.year, b.month, b.day, tzinfo=ZoneInfo(tz)) > run_at:
            return due
        if k >= 1 or has_recurring:
            due.append((k, b))
        k += 1


def _wait_for_batches(url: str, message_ids: list[str], timeout: float) -> float:
    import psycopg

    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            done = conn.execute("SELECT count(*) FROM ingest_batches WHERE message_id = ANY(%s)",
                                (message_ids,)).fetchone()
            if done is not None and done[0] == len(message_ids):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise SystemExit(f"producer: {len(message_ids) - (done or [0])[0]} batches "
                                 f"still unprocessed after {timeout:.0f} s")
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--wait-timeout", type=float, default=240.0)
    args = parser.parse_args()

    import dramatiq
    from dramatiq import Middleware

    from workers.client import UsageBatcher

    sent_ids: list[str] = []

    class Capture(Middleware):
        def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: Any) -> None:
            sent_ids.append(message.message_id)

    dramatiq.get_broker().add_middleware(Capture())
    events = generate(args.seed)
    started = time.monotonic()

    def send(items: list[Sent]) -> None:
        with UsageBatcher(batch_size=BATCH_SIZE) as batcher:
            for item in items:
                batcher.add(**item.event)
        if len(sent_ids) != items[-1].batch + 1:
            raise SystemExit(f"producer: {len(sent_ids)} messages sent, expected "
                             f"{items[-1].batch + 1}")

    send(events.stage1)
    stage1_messages = len(sent_ids)
    stage1_sent = time.monotonic() - started
    awaited = [sent_ids[b] for b in events.batches_holding_conflict_targets()]
    waited = _wait_for_batches(os.environ["BILLING_DATABASE_URL"], awaited, args.wait_timeout)
    send(events.stage2)
    manifest = {
        "seed": args.seed,
        "broker_id": getattr(dramatiq.get_broker(), "broker_id", None),
        "events": len(events.all),
        "messages": sent_ids,
        "stage1_messages": stage1_messages,
        "stage1_sent_seconds": round(stage1_sent, 3),
        "waited_for_conflict_targets_seconds": round(waited, 3),
        "total_seconds": round(time.monotonic() - started, 3),
    }
    with open(args.manifest, "w") as out:
        json.dump(manifest, out)
    print(json.dumps({k: v for k, v in manifest.items() if k != "messages"}), file=sys.stderr)


if __name__ == "__main__":
    main()
