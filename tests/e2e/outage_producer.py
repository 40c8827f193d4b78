"""The producer of ``test_outage``: a separate process that sends usage to the broker named
by ``BILLING_BROKER_URL``, keeps sending through a broker restart (an application retries
a send that failed), and writes a manifest of what it sent.

    python -m tests.e2e.outage_producer --events 50000 --manifest /tmp/manifest.json

The events are a pure function of ``--seed``: originals, exact re-sends, conflicts (a key
again with another quantity, in a later batch) and poison ones that must each be rejected
on their own with a reason naming their field: a NUL in the key, a lone surrogate or a NUL
in a property, a number with 500,000 digits of exponent, a 5,000-digit integer, a
nanosecond timestamp, a quantity that is not a plain decimal.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from decimal import Decimal
from typing import Any

BATCH = 500
CUSTOMERS = 200
# kind -> the field its rejection names
POISON = {"nul-key": "key", "surrogate-property": "properties.note",
          "nul-property": "properties.note", "huge-exponent": "quantity",
          "long-integer": "quantity", "property-exponent": "properties.n",
          "nanoseconds": "timestamp", "underscore": "quantity"}


def customer(i: int) -> str:
    return f"oc-{i:03d}"


def generate(total: int, seed: int) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """The batches to send, and what must come of them."""
    rng = random.Random(seed)
    events: list[tuple[str, dict[str, Any]]] = []
    originals: list[dict[str, Any]] = []
    for n in range(total):
        roll = rng.random()
        if roll < 0.04:
            kind = rng.choice(sorted(POISON))
            event = {"key": f"p-{n:06d}", "customer": customer(n % CUSTOMERS),
                     "meter": "tokens", "quantity": "5",
                     "timestamp": f"2026-06-{1 + n % 28:02d}T10:00:00Z"}
            if kind == "nul-key":
                event["key"] = f"p-{n:06d}\x00"
            elif kind == "surrogate-property":
                event["properties"] = {"note": "\ud800"}
            elif kind == "nul-property":
                event["properties"] = {"note": "a\x00b"}
            elif kind == "huge-exponent":
                event["quantity"] = Decimal("1e500000")
            elif kind == "long-integer":
                event["quantity"] = int("7" * 4000)
            elif kind == "property-exponent":
                event["properties"] = {"n": Decimal("1e500000")}
            elif kind == "nanoseconds":
                event["timestamp"] = "2026-06-01T10:00:00.123456789Z"
            else:
                event["quantity"] = "1_000"
            events.append((f"poison:{kind}", event))
        elif roll < 0.09 and originals:
            events.append(("duplicate", dict(rng.choice(originals))))
        elif roll < 0.10 and originals:
            again = dict(rng.choice(originals))
            again["quantity"] = str(Decimal(again["quantity"]) + 1)
            events.append(("conflict", again))
        else:
            event = {"key": f"o-{n:06d}", "customer": customer(n % CUSTOMERS),
                     "meter": "tokens", "quantity": str(rng.randint(1, 5000)),
                     "timestamp": f"2026-06-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
                     "properties": {"model": rng.choice(["small", "large"]),
                                    "ratio": Decimal(rng.randint(0, 99)) / 10}}
            originals.append(event)
            events.append(("original", event))
    # a conflict or a duplicate must not share a batch with its original (the first
    # ingested stays; within one batch that is the first in the batch, which we keep)
    seen_in: dict[str, int] = {}
    batches: list[list[dict[str, Any]]] = []
    counts = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
    conflicted: set[str] = set()
    duplicated: set[str] = set()
    poison: dict[str, str] = {}
    for kind, event in events:
        if not batches or len(batches[-1]) >= BATCH:
            batches.append([])
        if kind in ("duplicate", "conflict") and seen_in.get(event["key"]) == len(batches) - 1:
            continue  # would share its original's batch: not sent
        if kind == "conflict" and event["key"] in (conflicted | duplicated):
            continue  # one conflict per key, and none on a re-sent key: processed in any
        if kind == "duplicate" and event["key"] in conflicted:  # order, the counts hold
            continue
        batches[-1].append(event)
        if kind == "original":
            seen_in[event["key"]] = len(batches) - 1
            counts["accepted"] += 1
        elif kind == "duplicate":
            duplicated.add(event["key"])
            counts["duplicate"] += 1
        elif kind == "conflict":
            conflicted.add(event["key"])
            counts["conflict"] += 1
        else:
            counts["rejected"] += 1
            poison[event["key"]] = POISON[kind.split(":", 1)[1]]
    return batches, {"counts": counts, "events": sum(map(len, batches)),
                     "poison": poison}


def send(batches: list[list[dict[str, Any]]], give_up_after: float = 180.0) -> list[str]:
    """Send each batch as one message; a send the broker refuses (it is restarting) is
    tried again with the same message (same id: processed once however often it arrives)."""
    from workers import actors

    ids = []
    for batch in batches:
        message = actors.record_usage.message(batch)
        deadline = time.monotonic() + give_up_after
        while True:
            try:
                actors.record_usage.broker.enqueue(message)
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                print(f"send failed ({type(exc).__name__}), retrying", file=sys.stderr)
                time.sleep(0.2)
        ids.append(message.message_id)
        time.sleep(0.25)  # an application's pace: the outages fall mid-stream
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--manifest", required=True)
    args = parser.parse_args()
    batches, expected = generate(args.events, args.seed)
    with open(args.manifest + ".expected", "w") as out:
        json.dump(expected, out)
    ids = send(batches)
    with open(args.manifest, "w") as out:
        json.dump({**expected, "messages": ids}, out)


if __name__ == "__main__":
    main()
