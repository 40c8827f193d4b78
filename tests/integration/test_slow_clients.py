"""Slow clients are timed out (issue #20, "also seen"): the web process closes a connection
whose request line and headers have not all arrived ``BILLING_HTTP_HEADER_TIMEOUT_S``
after it opened (or after the first byte of a next request on a kept-alive one), and one
whose body has not all arrived ``BILLING_HTTP_BODY_TIMEOUT_S`` after its headers — with a
408 in the API's error shape when part of a request came. Half-sent requests then cannot
hold the server's file descriptors; other requests are answered meanwhile, and a client
that is slow but within the limits is served."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from services import api_keys
from services.settings import settings
from tests.integration.http_server import serving
from workers.broker import stub_broker, use

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0


@pytest.fixture
def base(sqlite_store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("BILLING_HTTP_HEADER_TIMEOUT_S", str(HEADER_TIMEOUT))
    monkeypatch.setenv("BILLING_HTTP_BODY_TIMEOUT_S", str(BODY_TIMEOUT))
    settings.cache_clear()
    use(stub_broker())
    try:
        with serving() as url:
            yield url
    finally:
        settings.cache_clear()


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def one_response(sock: socket.socket) -> bytes:
    """One whole response (its headers, and as many bytes of body as they announce)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def answer_then_closed(sock: socket.socket, wait: float) -> bytes | None:
    """What the server sent before it closed the connection, or None if it was still open
    after ``wait`` seconds."""
    sock.settimeout(wait)
    received = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
        sock.settimeout(max(0.01, deadline - time.monotonic()))
    return None


def test_half_sent_requests_are_closed_after_the_timeouts(base: str) -> None:
    silent = [connect(base) for _ in range(20)]
    headers = [connect(base) for _ in range(50)]
    for sock in headers:
        sock.sendall(b"POST /v1/usage HTTP/1.1\r\nHost: billing\r\nContent-Type: applic")
    _, key = api_keys.create("slow", datetime(2026, 1, 1, tzinfo=UTC))
    bodies = [connect(base) for _ in range(50)]
    for i, sock in enumerate(bodies):  # read before the key is checked, or after
        sock.sendall(b"POST /v1/subscriptions HTTP/1.1\r\n" if i % 2 else
                     b"POST /v1/usage HTTP/1.1\r\nAuthorization: Bearer " + key.encode() +
                     b"\r\n")
        sock.sendall(b"Host: billing\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"events\": [")
    kept_alive = [connect(base) for _ in range(5)]
    for sock in kept_alive:  # one whole request, then half of the next
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: billing\r\n\r\n")
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    started = time.monotonic()

    # meanwhile, other requests are answered
    assert httpx.get(f"{base}/healthz", timeout=5).json()["database"] == "ok"

    wait = HEADER_TIMEOUT + BODY_TIMEOUT + 3
    still_open = {"silent": 0, "headers": 0, "bodies": 0, "kept alive": 0}
    answers: dict[str, list[bytes]] = {name: [] for name in still_open}
    for name, group in (("silent", silent), ("headers", headers), ("bodies", bodies),
                        ("kept alive", kept_alive)):
        for sock in group:
            got = answer_then_closed(sock, max(0.1, wait - (time.monotonic() - started)))
            if got is None:
                still_open[name] += 1
            else:
                answers[name].append(got)
            sock.close()
    assert still_open == {"silent": 0, "headers": 0, "bodies": 0, "kept alive": 0}, \
        f"connections still open {wait:.0f} s after a half-sent request: {still_open}"
    assert all(a == b"" for a in answers["silent"])  # nothing came: nothing to answer
    for name in ("headers", "bodies", "kept alive"):
        for got in answers[name]:
            assert got.startswith(b"HTTP/1.1 408"), (name, got[:100])
            error = json.loads(got.split(b"\r\n\r\n", 1)[1])["error"]
            assert error["code"] == "timeout" and set(error) == {"code", "message", "field"}


def test_a_slow_client_within_the_limits_is_served(base: str) -> None:
    sock = connect(base)
    for part in (b"GET /heal", b"thz HTTP/1.1\r\nHost: bil", b"ling\r\n\r\n"):
        sock.sendall(part)
        time.sleep(HEADER_TIMEOUT / 4)
    assert one_response(sock).startswith(b"HTTP/1.1 200")
    # a body sent in parts, within its time: answered (401: no key — but it was read)
    sock.sendall(b"POST /v1/usage HTTP/1.1\r\nHost: billing\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 14\r\n\r\n")
    for part in (b'{"events"', b": []}"):
        time.sleep(BODY_TIMEOUT / 4)
        sock.sendall(part)
    assert one_response(sock).startswith(b"HTTP/1.1 401")
    sock.close()


def test_a_body_timed_out_is_answered_quietly(base: str, caplog: pytest.LogCaptureFixture) -> None:
    """A client that stops mid-body gets its 408 and a closed connection, and the server's
    log has no "Exception in ASGI application" for it: the app reading the body is told the
    client left (starlette's ClientDisconnect), which is not an error of the server — before
    the fix, each such request logged a traceback at ERROR."""
    caplog.set_level("WARNING")
    _, key = api_keys.create("quiet", datetime(2026, 1, 1, tzinfo=UTC))
    socks = [connect(base) for _ in range(6)]
    for i, sock in enumerate(socks):  # before the key is checked, after, and a 401 path
        head = (b"POST /v1/subscriptions HTTP/1.1\r\n" if i % 3 == 0 else
                b"POST /v1/usage HTTP/1.1\r\nAuthorization: Bearer " + key.encode() + b"\r\n"
                if i % 3 == 1 else b"PUT /v1/customers/c1 HTTP/1.1\r\n")
        sock.sendall(head + b"Host: billing\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 500\r\n\r\n{\"events\": [")
    for sock in socks:
        got = answer_then_closed(sock, BODY_TIMEOUT + 3)
        sock.close()
        assert got is not None and got.startswith(b"HTTP/1.1 408"), got
    time.sleep(0.3)  # the app's side of each timed-out request has ended
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    errors = [r for r in caplog.records if r.levelno >= 40 or "Exception in ASGI" in r.getMessage()]
    assert not errors, [f"{r.name}: {r.getMessage()} {r.exc_info and r.exc_info[1]!r}"
                        for r in errors]
