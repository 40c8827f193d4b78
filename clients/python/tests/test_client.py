"""The client against httpx.MockTransport only: no network, no server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

import billing_client.client as client_module
from billing_client import Batch, BillingClient, BillingError, UsageBatcher

BASE = "http://billing.test"
KEY = "sk_test_123"
AT = datetime(2025, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=1)))
SUB = {"id": "sub-1", "customer": "acme", "plan": "pro", "plan_version": 1,
       "start": "2025-03-01", "end": None, "status": "active",
       "next_boundary": "2025-04-01", "next_run": "2025-04-01T08:15:00+02:00"}

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Records every request; answers each from a queue of responses (the last repeats)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.replies: list[httpx.Response | Exception | Handler] = []

    def reply(self, *replies: httpx.Response | Exception | Handler) -> None:
        """Answer the next requests with these, in order; the last one answers the rest."""
        self.replies = list(replies)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def ok(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={} if body is None else body, headers=headers)


def error(status: int, code: str, message: str = "nope", field: str | None = None,
          **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers,
                          json={"error": {"code": code, "message": message, "field": field}})


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", slept.append)
    return slept


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def client(server: Server, sleeps: list[float]) -> Iterator[BillingClient]:
    with BillingClient(BASE, KEY, transport=httpx.MockTransport(server)) as c:
        yield c


def event(n: int = 1, **over: Any) -> dict[str, Any]:
    return {"key": f"evt-{n}", "customer": "acme", "meter": "api-calls",
            "quantity": Decimal("1.50"), "timestamp": AT, **over}


# -- requests: method, path, body, headers -------------------------------------------------

def test_send_usage_posts_events_with_decimal_strings(client: BillingClient,
                                                      server: Server) -> None:
    server.reply(ok(202, {"batch": "b-1", "events": 3}))
    batch = client.send_usage([
        event(1),
        event(2, quantity=7, properties={"model": "large"}),
        event(3, quantity="0.000001", timestamp="2025-03-01T11:30:00Z"),
    ])
    assert batch == Batch("b-1", 3)
    req = server.last
    assert (req.method, req.url.path) == ("POST", "/v1/usage")
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Idempotency-Key"]
    assert server.body() == {"events": [
        {"key": "evt-1", "customer": "acme", "meter": "api-calls", "quantity": "1.50",
         "timestamp": "2025-03-01T12:30:00+01:00"},
        {"key": "evt-2", "customer": "acme", "meter": "api-calls", "quantity": "7",
         "timestamp": "2025-03-01T12:30:00+01:00", "properties": {"model": "large"}},
        {"key": "evt-3", "customer": "acme", "meter": "api-calls", "quantity": "0.000001",
         "timestamp": "2025-03-01T11:30:00Z"},
    ]}


def test_send_usage_uses_the_callers_idempotency_key(client: BillingClient,
                                                     server: Server) -> None:
    server.reply(ok(202, {"batch": "b-1", "events": 1}))
    client.send_usage([event()], idempotency_key="usage-2025-03-01")
    assert server.last.headers["Idempotency-Key"] == "usage-2025-03-01"


def test_each_call_gets_its_own_generated_key(client: BillingClient, server: Server) -> None:
    server.reply(ok(202, {"batch": "b-1", "events": 1}))
    client.send_usage([event()])
    client.send_usage([event()])
    keys = {r.headers["Idempotency-Key"] for r in server.requests}
    assert len(keys) == 2


@pytest.mark.parametrize("quantity", [1.5, 0.0])
def test_a_float_quantity_is_refused_naming_the_field(client: BillingClient, server: Server,
                                                      quantity: float) -> None:
    with pytest.raises(TypeError, match=r"events\[1\]\.quantity.*float"):
        client.send_usage([event(1), event(2, quantity=quantity)])
    assert server.requests == []


@pytest.mark.parametrize(("bad", "exc"), [
    (True, TypeError), (None, ValueError), ("1,5", ValueError), (" 1", ValueError),
    (Decimal("NaN"), ValueError), (Decimal("Infinity"), ValueError), ([1], TypeError),
])
def test_other_bad_quantities_are_refused(client: BillingClient, bad: object,
                                          exc: type[Exception]) -> None:
    with pytest.raises(exc, match=r"events\[0\]"):
        client.send_usage([event(quantity=bad)])


def test_a_naive_timestamp_is_refused(client: BillingClient) -> None:
    with pytest.raises(ValueError, match=r"events\[0\]\.timestamp.*naive"):
        client.send_usage([event(timestamp=datetime(2025, 3, 1, 12))])


def test_event_counts_outside_1_to_1000_are_refused(client: BillingClient,
                                                    server: Server) -> None:
    with pytest.raises(ValueError, match="1 to 1000"):
        client.send_usage([])
    with pytest.raises(ValueError, match="1 to 1000"):
        client.send_usage([event(i) for i in range(1001)])
    assert server.requests == []


def test_missing_event_fields_are_named(client: BillingClient) -> None:
    with pytest.raises(ValueError, match=r"events\[0\]: missing meter, quantity"):
        client.send_usage([{"key": "k", "customer": "c", "timestamp": AT}])


def test_batch_status_and_path_escaping(client: BillingClient, server: Server) -> None:
    status = {"batch": "b/1", "status": "queued", "events": 2, "accepted": None,
              "duplicate": None, "conflict": None, "rejected": None, "rejections": []}
    server.reply(ok(200, status))
    assert client.batch("b/1") == status
    assert server.last.method == "GET"
    assert server.last.url.raw_path == b"/v1/usage/batches/b%2F1"
    client.batch(Batch("b-2", 1))
    assert server.last.url.path == "/v1/usage/batches/b-2"


def test_wait_for_batch_polls_until_processed(client: BillingClient, server: Server,
                                              sleeps: list[float]) -> None:
    queued = {"batch": "b-1", "status": "queued", "events": 2, "accepted": None}
    done = {"batch": "b-1", "status": "processed", "events": 2, "accepted": 1,
            "duplicate": 1, "conflict": 0, "rejected": 0, "rejections": []}
    server.reply(ok(200, queued), ok(200, queued), ok(200, done))
    assert client.wait_for_batch("b-1", interval=0.05) == done
    assert len(server.requests) == 3
    assert sleeps == [0.05, 0.05]


def test_wait_for_batch_times_out(client: BillingClient, server: Server) -> None:
    server.reply(ok(200, {"batch": "b-1", "status": "queued"}))
    with pytest.raises(TimeoutError, match="b-1"):
        client.wait_for_batch("b-1", timeout=0)


def test_put_and_get_customer(client: BillingClient, server: Server) -> None:
    customer = {"id": "acme", "entity": "EU", "email": "ap@acme.test", "draft_invoices": True}
    server.reply(ok(201, customer))
    assert client.put_customer("acme", "EU", email="ap@acme.test",
                               draft_invoices=True) == customer
    assert (server.last.method, server.last.url.path) == ("PUT", "/v1/customers/acme")
    assert server.body() == {"entity": "EU", "email": "ap@acme.test", "draft_invoices": True}
    assert "Idempotency-Key" not in server.last.headers
    client.put_customer("acme", "EU")
    assert server.body() == {"entity": "EU"}
    assert client.customer("acme") == customer
    assert (server.last.method, server.last.url.path) == ("GET", "/v1/customers/acme")


def test_subscribe(client: BillingClient, server: Server) -> None:
    server.reply(ok(201, SUB))
    assert client.subscribe("sub-1", "acme", "pro", date(2025, 3, 1),
                            discount={"percent": Decimal("12.5"), "cycles": 3},
                            idempotency_key="sub-1-create") == SUB
    assert (server.last.method, server.last.url.path) == ("POST", "/v1/subscriptions")
    assert server.last.headers["Idempotency-Key"] == "sub-1-create"
    assert server.body() == {"id": "sub-1", "customer": "acme", "plan": "pro",
                             "start": "2025-03-01",
                             "discount": {"percent": "12.5", "cycles": 3}}
    client.subscribe("sub-2", "acme", "pro", "2025-03-01", discount={"amount": 10})
    assert server.body()["discount"] == {"amount": "10"}
    assert server.last.headers["Idempotency-Key"]


def test_subscribe_refuses_float_discounts_and_datetime_starts(client: BillingClient) -> None:
    with pytest.raises(TypeError, match=r"discount\.amount"):
        client.subscribe("s", "acme", "pro", "2025-03-01", discount={"amount": 9.99})
    with pytest.raises(TypeError, match="start"):
        client.subscribe("s", "acme", "pro", datetime(2025, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize("action", ["cancel", "uncancel"])
def test_cancel_and_uncancel(client: BillingClient, server: Server, action: str) -> None:
    server.reply(ok(200, SUB))
    assert getattr(client, action)("sub-1", idempotency_key="k1") == SUB
    assert (server.last.method, server.last.url.path) == (
        "POST", f"/v1/subscriptions/sub-1/{action}")
    assert server.last.headers["Idempotency-Key"] == "k1"
    assert server.last.content == b""
    getattr(client, action)("sub-1")
    assert server.last.headers["Idempotency-Key"] not in ("", "k1")


def test_subscription(client: BillingClient, server: Server) -> None:
    server.reply(ok(200, SUB))
    assert client.subscription("sub-1") == SUB
    assert (server.last.method, server.last.url.path) == ("GET", "/v1/subscriptions/sub-1")


def test_invoices_follow_next_cursors(client: BillingClient, server: Server) -> None:
    pages = {None: ([{"number": "EU-000001"}, {"number": "EU-000002"}], "c2"),
             "c2": ([{"number": "EU-000003"}], "c3"),
             "c3": ([], None)}

    def page(request: httpx.Request) -> httpx.Response:
        invoices, cursor = pages[request.url.params.get("after")]
        return ok(200, {"invoices": invoices, "next": cursor})

    server.reply(page)
    numbers = [i["number"] for i in client.invoices(customer="acme", status="issued", limit=2)]
    assert numbers == ["EU-000001", "EU-000002", "EU-000003"]
    assert [dict(r.url.params) for r in server.requests] == [
        {"customer": "acme", "status": "issued", "limit": "2"},
        {"customer": "acme", "status": "issued", "limit": "2", "after": "c2"},
        {"customer": "acme", "status": "issued", "limit": "2", "after": "c3"},
    ]
    assert {(r.method, r.url.path) for r in server.requests} == {("GET", "/v1/invoices")}


def test_invoices_is_lazy_and_sends_only_given_filters(client: BillingClient,
                                                       server: Server) -> None:
    server.reply(ok(200, {"invoices": [{"number": "EU-1"}], "next": None}))
    pages = client.invoices(subscription="sub-1")
    assert server.requests == []
    assert list(pages) == [{"number": "EU-1"}]
    assert dict(server.last.url.params) == {"subscription": "sub-1"}


def test_a_cursor_that_does_not_advance_stops_the_listing(client: BillingClient,
                                                          server: Server) -> None:
    server.reply(ok(200, {"invoices": [], "next": "same"}))
    with pytest.raises(BillingError, match="did not advance"):
        list(client.invoices())


def test_invoice_by_number_id_and_period(client: BillingClient, server: Server) -> None:
    invoice = {"number": "EU-000002", "total": "1234.567800", "status": "issued"}
    server.reply(ok(200, invoice))
    assert client.invoice("EU-000002") == invoice
    assert (server.last.method, server.last.url.path) == ("GET", "/v1/invoices/EU-000002")
    assert server.last.headers["Accept"] == "application/json"
    client.invoice(42)
    assert server.last.url.path == "/v1/invoices/42"
    client.invoice("sub-1@2025-03-01")
    assert server.last.url.raw_path == b"/v1/invoices/sub-1@2025-03-01"


def test_invoice_html(client: BillingClient, server: Server) -> None:
    server.reply(httpx.Response(200, html="<html><h1>Invoice EU-000002</h1></html>"))
    assert "EU-000002" in client.invoice_html("EU-000002")
    assert server.last.headers["Accept"] == "text/html"
    assert server.last.url.path == "/v1/invoices/EU-000002"


@pytest.mark.parametrize("action", ["release", "regenerate"])
def test_release_and_regenerate(client: BillingClient, server: Server, action: str) -> None:
    server.reply(ok(200, {"number": "EU-000003", "status": "issued"}))
    assert getattr(client, action)("sub-1@2025-03-01")["number"] == "EU-000003"
    assert (server.last.method, server.last.url.path) == (
        "POST", f"/v1/invoices/sub-1@2025-03-01/{action}")
    assert server.last.headers["Idempotency-Key"]


def test_estimate(client: BillingClient, server: Server) -> None:
    server.reply(ok(200, {"total": "12.30", "lines": []}))
    assert client.estimate(subscription="sub-1") == {"total": "12.30", "lines": []}
    assert (server.last.method, server.last.url.path) == (
        "GET", "/v1/subscriptions/sub-1/estimate")
    client.estimate(customer="acme")
    assert server.last.url.path == "/v1/customers/acme/estimate"
    with pytest.raises(ValueError, match="exactly one"):
        client.estimate()
    with pytest.raises(ValueError, match="exactly one"):
        client.estimate(subscription="sub-1", customer="acme")


def test_portal_link(client: BillingClient, server: Server) -> None:
    link = {"url": "http://billing.test/portal/abc", "expires_at": "2025-03-02T00:00:00Z"}
    server.reply(ok(201, link))
    assert client.portal_link("acme", ttl="12h") == link
    assert (server.last.method, server.last.url.path) == ("POST", "/v1/portal-links")
    assert server.body() == {"customer": "acme", "ttl": "12h"}
    client.portal_link("acme")
    assert server.body() == {"customer": "acme"}


def test_healthz_sends_no_key_and_is_tried_once(client: BillingClient, server: Server) -> None:
    server.reply(ok(200, {"status": "ok", "version": "1"}))
    assert client.healthz()["status"] == "ok"
    assert server.last.url.path == "/healthz"
    assert "Authorization" not in server.last.headers
    server.reply(error(503, "unavailable"))
    with pytest.raises(BillingError):
        client.healthz()
    assert len(server.requests) == 2


def test_every_other_call_sends_the_api_key(client: BillingClient, server: Server) -> None:
    server.reply(ok(200, {"invoices": [], "next": None}))
    list(client.invoices())
    client.customer("acme")
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in server.requests)


def test_responses_keep_numbers_exact(client: BillingClient, server: Server) -> None:
    server.reply(httpx.Response(200, content=b'{"total": "0.10", "odd": 0.1, "n": 3}'))
    data = client.invoice("EU-1")
    assert data == {"total": "0.10", "odd": Decimal("0.1"), "n": 3}


# -- retries -------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [
    error(503, "unavailable"),
    error(500, "internal"),
    httpx.Response(502, text="<html>Bad Gateway</html>"),
    error(429, "rate_limited"),
    httpx.ReadTimeout("read timed out"),
    httpx.ConnectError("connection refused"),
    httpx.RemoteProtocolError("server disconnected"),
])
def test_a_post_is_retried_with_the_same_idempotency_key(
        client: BillingClient, server: Server, sleeps: list[float],
        failure: httpx.Response | Exception) -> None:
    server.reply(failure, failure, ok(201, SUB))
    assert client.subscribe("sub-1", "acme", "pro", "2025-03-01") == SUB
    assert len(server.requests) == 3
    keys = {r.headers["Idempotency-Key"] for r in server.requests}
    assert len(keys) == 1 and keys != {""}
    assert len({r.content for r in server.requests}) == 1
    assert len(sleeps) == 2


def test_a_get_is_retried_too(client: BillingClient, server: Server) -> None:
    server.reply(httpx.ConnectTimeout("slow"), ok(200, SUB))
    assert client.subscription("sub-1") == SUB
    assert len(server.requests) == 2


def test_usage_retries_resend_the_same_batch_and_key(client: BillingClient,
                                                     server: Server) -> None:
    server.reply(error(503, "unavailable"), ok(202, {"batch": "b-9", "events": 2}))
    assert client.send_usage([event(1), event(2)]) == Batch("b-9", 2)
    first, second = server.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.content == second.content


@pytest.mark.parametrize(("status", "code"), [
    (400, "bad_request"), (401, "unauthorized"), (403, "forbidden"), (404, "not_found"),
    (409, "overlap"), (413, "too_large"), (422, "invalid"),
])
def test_other_4xx_are_not_retried(client: BillingClient, server: Server, sleeps: list[float],
                                   status: int, code: str) -> None:
    server.reply(error(status, code, "refused", "start"), ok(201, SUB))
    with pytest.raises(BillingError) as caught:
        client.subscribe("sub-1", "acme", "pro", "2025-03-01")
    assert (caught.value.status, caught.value.code, caught.value.field) == (status, code,
                                                                            "start")
    assert len(server.requests) == 1
    assert sleeps == []


def test_retry_after_is_honoured_and_capped(client: BillingClient, server: Server,
                                            sleeps: list[float]) -> None:
    server.reply(error(429, "rate_limited", **{"Retry-After": "3"}),
                 error(503, "unavailable", **{"Retry-After": "3600"}),
                 error(503, "unavailable", **{"Retry-After": "0"}),
                 ok(200, SUB))
    client.subscription("sub-1")
    assert sleeps == [3.0, 30.0, 0.0]


def test_backoff_is_exponential_with_jitter_and_capped(server: Server,
                                                       sleeps: list[float]) -> None:
    server.reply(error(503, "unavailable"))
    c = BillingClient(BASE, KEY, max_attempts=9, backoff=0.5,
                      transport=httpx.MockTransport(server))
    with pytest.raises(BillingError):
        c.subscription("sub-1")
    assert len(server.requests) == 9
    assert len(sleeps) == 8
    for attempt, slept in enumerate(sleeps):
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= slept <= ceiling


def test_exhausted_retries_raise_the_last_http_error(client: BillingClient,
                                                     server: Server) -> None:
    server.reply(error(503, "unavailable"), error(503, "unavailable"),
                 error(503, "unavailable"), error(503, "unavailable"),
                 error(500, "internal", "database down"))
    with pytest.raises(BillingError) as caught:
        client.cancel("sub-1")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        500, "internal", "database down")
    assert len(server.requests) == 5
    assert len({r.headers["Idempotency-Key"] for r in server.requests}) == 1


def test_exhausted_transport_retries_raise_unreachable(client: BillingClient,
                                                       server: Server) -> None:
    server.reply(httpx.ConnectError("connection refused"))
    with pytest.raises(BillingError) as caught:
        client.subscription("sub-1")
    err = caught.value
    assert (err.status, err.code, err.field) == (None, "unreachable", None)
    assert "connection refused" in err.message and "5 attempts" in str(err)
    assert isinstance(err.__cause__, httpx.ConnectError)
    assert len(server.requests) == 5


def test_a_transport_error_that_is_not_transient_is_not_retried(client: BillingClient,
                                                                server: Server) -> None:
    server.reply(httpx.UnsupportedProtocol("no such scheme"))
    with pytest.raises(BillingError, match="unreachable"):
        client.subscription("sub-1")
    assert len(server.requests) == 1


# -- errors --------------------------------------------------------------------------------

def test_billing_error_fields_and_text(client: BillingClient, server: Server) -> None:
    server.reply(error(409, "overlap", "sub-1 overlaps sub-0 from 2025-03-01", "start"))
    with pytest.raises(BillingError) as caught:
        client.subscribe("sub-1", "acme", "pro", "2025-03-01")
    err = caught.value
    assert (err.status, err.code, err.message, err.field) == (
        409, "overlap", "sub-1 overlaps sub-0 from 2025-03-01", "start")
    assert str(err) == "HTTP 409 overlap: sub-1 overlaps sub-0 from 2025-03-01 (field: start)"


def test_an_error_without_a_field(client: BillingClient, server: Server) -> None:
    server.reply(error(404, "not_found", "no customer 'x'"))
    with pytest.raises(BillingError) as caught:
        client.customer("x")
    assert caught.value.field is None
    assert str(caught.value) == "HTTP 404 not_found: no customer 'x'"


def test_a_non_json_502_still_gives_a_billing_error(client: BillingClient,
                                                    server: Server) -> None:
    server.reply(httpx.Response(502, text="<html>\n<h1>502 Bad Gateway</h1>\n</html>"))
    with pytest.raises(BillingError) as caught:
        client.customer("acme")
    err = caught.value
    assert (err.status, err.code, err.message) == (502, "http_502", "<html>")
    server.reply(httpx.Response(502))
    with pytest.raises(BillingError, match="Bad Gateway"):
        client.customer("acme")


def test_json_of_another_shape_gives_a_billing_error(client: BillingClient,
                                                     server: Server) -> None:
    server.reply(httpx.Response(400, json={"detail": "Not Found"}))
    with pytest.raises(BillingError) as caught:
        client.customer("acme")
    assert (caught.value.status, caught.value.code) == (400, "http_400")


def test_a_success_that_is_not_json_is_an_error(client: BillingClient, server: Server) -> None:
    server.reply(httpx.Response(200, text="ok"))
    with pytest.raises(BillingError, match="invalid_response"):
        client.customer("acme")


# -- the batcher ---------------------------------------------------------------------------

def accept_batches(request: httpx.Request) -> httpx.Response:
    events = json.loads(request.content)["events"]
    return ok(202, {"batch": f"b-{events[0]['key']}", "events": len(events)})


def test_batcher_splits_1234_events_into_500_500_234(client: BillingClient,
                                                     server: Server) -> None:
    server.reply(accept_batches)
    with UsageBatcher(client) as batcher:
        for i in range(1234):
            batcher.add(key=f"e{i}", customer="acme", meter="api-calls", quantity=i,
                        timestamp=AT)
        assert len(server.requests) == 2
    assert [len(server.body(i)["events"]) for i in range(3)] == [500, 500, 234]
    assert [b.events for b in batcher.batches] == [500, 500, 234]
    assert [b.id for b in batcher.batches] == ["b-e0", "b-e500", "b-e1000"]
    assert batcher.pending == []
    sent = [e["key"] for i in range(3) for e in server.body(i)["events"]]
    assert sent == [f"e{i}" for i in range(1234)]
    assert server.body(2)["events"][-1]["quantity"] == "1233"


def test_batch_size_is_capped_at_1000(client: BillingClient, server: Server) -> None:
    server.reply(accept_batches)
    batcher = UsageBatcher(client, batch_size=5000)
    assert batcher.batch_size == 1000
    for i in range(2001):
        batcher.add(key=f"e{i}", customer="acme", meter="m", quantity="1", timestamp=AT)
    assert batcher.flush() == Batch("b-e2000", 1)
    assert [b.events for b in batcher.batches] == [1000, 1000, 1]
    with pytest.raises(ValueError):
        UsageBatcher(client, batch_size=0)


def test_batcher_flush_with_nothing_pending(client: BillingClient, server: Server) -> None:
    assert UsageBatcher(client).flush() is None
    assert server.requests == []


def test_batcher_checks_each_event_when_added(client: BillingClient) -> None:
    batcher = UsageBatcher(client)
    with pytest.raises(TypeError, match=r"event\.quantity"):
        batcher.add(key="e", customer="acme", meter="m", quantity=1.0,  # type: ignore[arg-type]
                    timestamp=AT)
    with pytest.raises(ValueError, match=r"event\.timestamp"):
        batcher.add(key="e", customer="acme", meter="m", quantity=1,
                    timestamp=datetime(2025, 3, 1))
    assert batcher.pending == []


def test_batcher_keeps_a_batch_that_could_not_be_sent(client: BillingClient,
                                                      server: Server) -> None:
    server.reply(error(422, "invalid", "bad batch"), accept_batches)
    batcher = UsageBatcher(client, batch_size=10)
    batcher.add(key="e1", customer="acme", meter="m", quantity=Decimal("2"), timestamp=AT,
                properties={"region": "eu"})
    with pytest.raises(BillingError):
        batcher.flush()
    assert len(batcher.pending) == 1 and batcher.batches == []
    assert batcher.flush() == Batch("b-e1", 1)
    assert server.body(0) == server.body(1)
    assert server.body()["events"][0]["properties"] == {"region": "eu"}


def test_batcher_flushes_when_the_block_raises(client: BillingClient, server: Server) -> None:
    server.reply(accept_batches)
    with pytest.raises(RuntimeError), UsageBatcher(client) as batcher:
        batcher.add(key="e1", customer="acme", meter="m", quantity=1, timestamp=AT)
        raise RuntimeError("app crashed")
    assert [b.id for b in batcher.batches] == ["b-e1"]


@pytest.mark.parametrize("bad", ["", "sk_live_…", "sk\n123"])
def test_an_api_key_that_cannot_be_a_header_is_refused_up_front(bad: str) -> None:
    with pytest.raises(ValueError, match="api_key"):
        BillingClient(BASE, bad)
