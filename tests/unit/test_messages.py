"""Messages survive encode → decode → encode byte for byte (issue #9, finding 1): a retry
re-encodes what a worker decoded, so any change there would change the events. Numbers
stay exact and stay numbers; what no one can decode becomes a dead letter, not a crash
of the consumer (finding 4)."""

from __future__ import annotations

import base64
import enum
import inspect
import json
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dramatiq
import simplejson
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import actors
from workers.broker import ACTORS, UNDECODABLE, ExactJSONEncoder

ENCODER = ExactJSONEncoder()

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300)
           | st.floats() | st.decimals() | st.text()
           | st.datetimes(timezones=st.just(UTC)))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=25)
events = st.lists(st.fixed_dictionaries(
    {"key": st.text(max_size=20), "customer": st.text(max_size=10), "meter": st.text(max_size=10),
     "quantity": st.decimals() | st.integers() | st.floats() | st.text(max_size=10),
     "timestamp": st.text(max_size=30),
     "properties": st.dictionaries(st.text(max_size=8), scalars, max_size=4)}), max_size=5)


def round_trip(message: dramatiq.Message[Any]) -> None:
    first = message.encode()
    decoded = dramatiq.Message.decode(first)
    assert decoded.actor_name == message.actor_name
    second = decoded.encode()
    assert second == first
    assert dramatiq.Message.decode(second).encode() == first
    json.loads(first)  # strict JSON: no NaN or Infinity tokens


@settings(max_examples=300)
@given(data=st.data())
def test_every_actor_message_survives_encode_decode_encode(data: st.DataObject) -> None:
    actor = data.draw(st.sampled_from(ACTORS))
    parameters = inspect.signature(actor.fn).parameters
    args = [data.draw(events if name == "events" else values) for name in parameters]
    round_trip(actor.message(*args))


@settings(max_examples=200)
@given(batch=events)
def test_usage_numbers_stay_exact_numbers(batch: list[dict[str, Any]]) -> None:
    decoded = dramatiq.Message.decode(actors.record_usage.message(batch).encode())
    for sent, got in zip(batch, decoded.args[0], strict=True):
        for name, value in sent["properties"].items():
            back = got["properties"][name]
            exact = Decimal(repr(value)) if isinstance(value, float) else value
            if isinstance(exact, Decimal) and exact.is_finite():
                assert isinstance(back, Decimal | int) and exact == back  # never its text
            if isinstance(value, str):
                assert back == value


def test_a_property_seven_point_zero_is_still_a_number_after_a_retry() -> None:
    message = actors.record_usage.message([{"key": "e", "properties": {"user": Decimal("7.0")}}])
    retried = dramatiq.Message.decode(dramatiq.Message.decode(message.encode()).encode())
    assert retried.args[0][0]["properties"]["user"] == Decimal("7.0")
    assert not isinstance(retried.args[0][0]["properties"]["user"], str)


def test_a_five_thousand_digit_integer_decodes() -> None:
    raw = (b'{"queue_name":"billing","actor_name":"record_usage","args":[[{"key":"k",'
           b'"quantity":' + b"7" * 5000 + b'}]],"kwargs":{},"options":{},"message_id":"m-1",'
           b'"message_timestamp":1}')
    decoded = dramatiq.Message.decode(raw)
    assert decoded.actor_name == "record_usage"
    assert decoded.args[0][0]["quantity"] == Decimal("7" * 5000)  # the field refuses it


def test_what_no_one_can_decode_goes_to_the_undecodable_actor() -> None:
    for raw in (b"\xff\xfe not utf-8", b"{not json", b"[1, 2]", b'{"actor_name": 3}',
                b"[" * 100_000 + b"]" * 100_000,
                b'{"queue_name":"billing","actor_name":"x","args":[],"kwargs":{},'
                b'"options":{"redis_message_id":"0a1b"},"message_id":"m-9","extra":1}'):
        decoded = dramatiq.Message.decode(raw)
        assert decoded.actor_name == UNDECODABLE
        stored, reason = decoded.args
        assert base64.b64decode(stored) == raw and reason
    kept = dramatiq.Message.decode(b'{"message_id":"m-9","options":{"redis_message_id":'
                                   b'"0a1b-2c"}, broken')
    assert kept.message_id == "m-9" and kept.options["redis_message_id"] == "0a1b-2c"


def test_non_finite_numbers_are_sent_as_text() -> None:
    message = actors.record_usage.message([{"quantity": float("nan")},
                                           {"quantity": Decimal("Infinity")}])
    data = json.loads(message.encode())
    assert data["args"][0] == [{"quantity": "NaN"}, {"quantity": "Infinity"}]
    round_trip(message)


def test_dates_are_iso_text() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert json.loads(actors.cancel.message(at).encode())["args"] == [at.isoformat()]


def _exact_reference(value: Any) -> Any:
    """The walk as first written (every value through every check): the encoder's faster
    walk must give the same bytes (issue #21: the walk was most of a producer's time)."""
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") \
            else repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, Decimal):
        return value if value.is_finite() else str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _exact_reference(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact_reference(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class _Kind(enum.IntEnum):
    ONE = 1


class _Name(enum.StrEnum):
    LARGE = "large"


odd_scalars = scalars | st.sampled_from([_Kind.ONE, _Name.LARGE, True, False])
odd_values = st.recursive(
    odd_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3).map(OrderedDict),
    max_leaves=25)


@settings(max_examples=300)
@given(value=odd_values)
def test_the_encoders_walk_gives_the_bytes_of_the_plain_walk(value: Any) -> None:
    message = {"queue_name": "billing", "actor_name": "x", "args": [value], "kwargs": {},
               "options": {}}
    expected = simplejson.dumps(_exact_reference(message), use_decimal=True,
                                separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    assert ENCODER.encode(message) == expected.encode("ascii")


batcher_values = odd_values | st.text(max_size=8) | st.integers() | st.booleans() | st.none()


@settings(max_examples=300)
@given(batch=st.lists(st.fixed_dictionaries({
    "key": st.text(max_size=10) | st.integers(),
    "customer": st.text(max_size=10) | st.sampled_from([_Name.LARGE]),
    "meter": st.text(max_size=10),
    "quantity": st.decimals() | st.integers() | st.floats() | st.text(max_size=10),
    "timestamp": st.text(max_size=30) | st.datetimes(timezones=st.just(UTC)),
    "properties": st.none() | st.dictionaries(st.text(max_size=8) | st.integers(),
                                               batcher_values, max_size=4)}),
    min_size=1, max_size=5))
def test_a_batch_the_batcher_vouches_for_encodes_as_the_walk_would(
        batch: list[dict[str, Any]]) -> None:
    """``UsageBatcher`` marks a batch of plain events (``Plain``) so the encoder skips its
    walk: whatever the events, the bytes are those of the walk over the same batch."""
    from workers import client

    sent: list[list[dict[str, Any]]] = []
    original = client.send_usage
    client.send_usage = sent.append  # type: ignore[assignment]
    try:
        with client.UsageBatcher(batch_size=len(batch)) as batcher:
            for event in batch:
                batcher.add(**event)
    finally:
        client.send_usage = original
    (events,) = sent
    message = {"queue_name": "billing", "actor_name": "record_usage", "args": [events],
               "kwargs": {}, "options": {}}
    expected = simplejson.dumps(_exact_reference({**message, "args": [list(events)]}),
                                use_decimal=True, separators=(",", ":"), ensure_ascii=True,
                                allow_nan=False)
    assert ENCODER.encode(message) == expected.encode("ascii")


def test_the_batcher_sends_what_record_usage_would() -> None:
    """``UsageBatcher`` sends to ``record_usage`` by name (without importing the actors):
    the same queue, actor and arguments as the actor's own message."""
    from workers import client
    from workers.broker import stub_broker, use

    before = dramatiq.get_broker()
    broker = use(stub_broker())
    try:
        with client.UsageBatcher(batch_size=2) as batcher:
            batcher.add(key="k", customer="c", meter="m", quantity=1,
                        timestamp="2026-01-01T00:00:00Z")
        (raw,) = broker.queues[actors.record_usage.queue_name].queue
        sent = dramatiq.Message.decode(raw)
        expected = actors.record_usage.message(
            [{"key": "k", "customer": "c", "meter": "m", "quantity": "1",
              "timestamp": "2026-01-01T00:00:00Z"}])
        assert (sent.queue_name, sent.actor_name, sent.args, sent.kwargs) == (
            expected.queue_name, expected.actor_name, expected.args, expected.kwargs)
    finally:
        use(before)
