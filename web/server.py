"""How the ``web`` process serves the app: uvicorn, configured in one place (``python -m
web`` and the tests that need a real server use the same settings).

uvicorn times out an idle kept-alive connection, but not a request that is being sent: a
client that sends half a request line, half its headers or half its body and then nothing
holds a connection (a file descriptor) for as long as it likes. ``TimedHttpProtocol`` —
uvicorn's httptools protocol with two deadlines — closes it instead:

- **headers**: the request line and headers must all arrive within
  ``BILLING_HTTP_HEADER_TIMEOUT_S`` of the connection's opening, or of the first byte of a
  next request on a kept-alive connection;
- **body**: the whole body within ``BILLING_HTTP_BODY_TIMEOUT_S`` of the headers.

When part of a request came, the client gets a 408 in the API's error shape before the
connection is closed; a connection on which nothing came is just closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.settings import settings


def _timeout_response(message: str) -> bytes:
    body = json.dumps({"error": {"code": "timeout", "message": message, "field": None}})
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body.encode())


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for the headers and one for the body
    of each request (see the module's docstring)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._started = False  # a byte of the current request has come
        self._requests = 0  # begun on this connection

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if what == "body":  # this request's answer may have started (not read its body)
            busy = cycle is not None and cycle.response_started
        else:  # a previous request's answer may still be on its way (pipelining)
            busy = cycle is not None and not cycle.response_complete
        if self._started and not busy:
            seconds = self.header_timeout if what == "headers" else self.body_timeout
            self.transport.write(_timeout_response(
                f"the request's {what} did not all arrive within {seconds:g} s"))
        if cycle is not None and what == "body":
            cycle.disconnected = True  # the app reading the body is told: disconnected
            cycle.message_event.set()
        self.transport.close()

    # the connection, and each request on it
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, "headers")  # the first request: from now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started = True
        self._requests += 1
        if self._requests > 1:  # a next request on a kept-alive connection: from its start
            self._arm(self.header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._started = False
        super().on_message_complete()


def config(app: FastAPI, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for the app on ``host:port`` (``options`` override them), with
    the slow-client deadlines of the settings."""
    current = settings()
    protocol = type("TimedHttpProtocol", (TimedHttpProtocol,), {
        "header_timeout": current.http_header_timeout_s,
        "body_timeout": current.http_body_timeout_s})
    values: dict[str, Any] = {"log_config": None, "proxy_headers": True, "http": protocol}
    values.update(options)
    return uvicorn.Config(app, host=host, port=port, **values)


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Serve until the process is told to stop."""
    uvicorn.Server(config(app, host=host, port=port)).run()
