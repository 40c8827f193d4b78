"""Delivery channels against real servers on loopback: an HTTP receiver that verifies
Standard Webhooks signatures with the ``standardwebhooks`` package, an aiosmtpd SMTP server,
and a directory outbox. Every server listens on 127.0.0.1 on an ephemeral port, every client
call has a short timeout, and every server is shut down by its fixture."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.delivery import (
    Result,
    SmtpSettings,
    email_subject,
    render_html,
    render_text,
    send_email,
    send_webhook,
    sign,
    webhook_body,
    webhook_id_for,
    write_outbox,
)
from tests.documents import sample_document

pytestmark = pytest.mark.timeout(60)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; loopback servers must be reached directly."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


make_document = sample_document


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# =============================================================================================
# Webhook receiver


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str | None


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answers in order; the last one repeats
    received: list[Received] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering (interrupted at teardown)
    release: threading.Event = field(default_factory=threading.Event)
    extra_headers: dict[str, str] = field(default_factory=dict)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    verifier = Webhook(SECRET)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verifier.verify(body, headers)
                verified, error = True, None
            except WebhookVerificationError as exc:
                verified, error = False, str(exc)
            receiver.received.append(Received(headers, body, verified, error))
            if receiver.delay:
                receiver.release.wait(receiver.delay)
            n = len(receiver.received) - 1
            status = receiver.statuses[min(n, len(receiver.statuses) - 1)]
            payload = b'{"error":"nope"}' if status >= 300 else b"{}"
            try:
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (the timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(url="", statuses=[200])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/billing?token=s3cr3t"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


BODY = webhook_body(make_document(), "invoice.issued")
WID = webhook_id_for(make_document(), "invoice.issued")


def test_webhook_is_delivered_signed_per_standard_webhooks(receiver: Receiver) -> None:
    result = send_webhook(receiver.url, SECRET, WID, BODY, timeout=5)

    assert result == Result(ok=True, retry=False, detail=result.detail)
    assert "HTTP 200" in result.detail
    assert "s3cr3t" not in result.detail  # the query string is not echoed
    [got] = receiver.received
    assert got.verified, got.error
    assert got.body == BODY
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == WID
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    payload = json.loads(got.body)
    assert payload["type"] == "invoice.issued"
    assert payload["data"]["number"] == "AC-0007"
    assert payload["data"]["total"] == "49.00"


def test_500_is_retried_then_delivered_with_the_same_webhook_id(receiver: Receiver) -> None:
    receiver.statuses = [500, 200]
    now = int(time.time())

    first = send_webhook(receiver.url, SECRET, WID, BODY, timeout=5, now=now)
    second = send_webhook(receiver.url, SECRET, WID, BODY, timeout=5, now=now + 30)

    assert (first.ok, first.retry) == (False, True)
    assert "HTTP 500" in first.detail and "nope" in first.detail
    assert (second.ok, second.retry) == (True, False)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [WID, WID]
    assert [r.headers["webhook-timestamp"] for r in receiver.received] == [str(now),
                                                                           str(now + 30)]
    assert all(r.verified for r in receiver.received)


def test_400_is_permanent(receiver: Receiver) -> None:
    receiver.statuses = [400]
    result = send_webhook(receiver.url, SECRET, WID, BODY, timeout=5)
    assert (result.ok, result.retry) == (False, False)
    assert "HTTP 400" in result.detail


@pytest.mark.parametrize("status", [408, 429, 502, 503])
def test_408_429_and_5xx_are_retried(receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    receiver.extra_headers = {"Retry-After": "7"}
    result = send_webhook(receiver.url, SECRET, WID, BODY, timeout=5)
    assert (result.ok, result.retry) == (False, True)
    assert f"HTTP {status}" in result.detail and "Retry-After 7" in result.detail


@pytest.mark.parametrize("status", [401, 404, 410, 422])
def test_other_4xx_are_permanent(receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    result = send_webhook(receiver.url, SECRET, WID, BODY, timeout=5)
    assert (result.ok, result.retry) == (False, False)


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.statuses = [307]
    receiver.extra_headers = {"Location": "http://127.0.0.1:1/elsewhere"}
    result = send_webhook(receiver.url, SECRET, WID, BODY, timeout=5)
    assert (result.ok, result.retry) == (False, False)
    assert "not followed" in result.detail
    assert len(receiver.received) == 1


def test_a_slow_receiver_times_out_and_is_retried(receiver: Receiver) -> None:
    receiver.delay = 10.0
    started = time.monotonic()
    result = send_webhook(receiver.url, SECRET, WID, BODY, timeout=0.5)
    elapsed = time.monotonic() - started
    assert (result.ok, result.retry) == (False, True)
    assert "timed out" in result.detail
    assert elapsed < 5
    assert len(receiver.received) == 1


def test_nothing_listening_is_retried() -> None:
    result = send_webhook(f"http://127.0.0.1:{free_port()}/hook", SECRET, WID, BODY, timeout=2)
    assert (result.ok, result.retry) == (False, True)


@pytest.mark.parametrize(("url", "secret", "webhook_id"), [
    ("ftp://127.0.0.1/hook", SECRET, WID),
    ("file:///etc/passwd", SECRET, WID),
    ("not a url", SECRET, WID),
    ("http://127.0.0.1:99999/hook", SECRET, WID),
    ("http://127.0.0.1/hook", "whsec_not*base64!", WID),
    ("http://127.0.0.1/hook", "whsec_", WID),
    ("http://127.0.0.1/hook", SECRET, "two words"),
    ("http://127.0.0.1/hook", SECRET, "inj\r\nX-Evil: 1"),
])
def test_bad_configuration_is_permanent(url: str, secret: str, webhook_id: str) -> None:
    result = send_webhook(url, secret, webhook_id, BODY, timeout=2)
    assert (result.ok, result.retry) == (False, False)


def test_sign_matches_the_specification_example_and_the_reference_library() -> None:
    # The example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, msg_id, ts, body) == expected
    assert sign(secret.removeprefix("whsec_"), msg_id, ts, body) == expected  # no prefix
    assert sign(secret.rstrip("="), msg_id, ts, body) == expected
    reference = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())
    assert reference == expected
    # And an independent HMAC from the spec's text.
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    assert expected == "v1," + base64.b64encode(mac).decode()


def test_webhook_ids_are_stable_and_distinct() -> None:
    doc = make_document()
    assert webhook_id_for(doc, "invoice.issued") == webhook_id_for(dict(doc),
                                                                   "invoice.issued")
    assert webhook_id_for(doc, "invoice.issued") != webhook_id_for(doc, "invoice.draft")
    other = dict(doc, boundary="2026-04-01")
    assert webhook_id_for(doc, "invoice.issued") != webhook_id_for(other, "invoice.issued")
    assert webhook_body(doc) == webhook_body(json.loads(json.dumps(doc)))


# =============================================================================================
# SMTP


class Inbox:
    """An aiosmtpd handler: keeps what it receives; refuses some recipients."""

    def __init__(self, rcpt_reply: str | None = None) -> None:
        self.messages: list[Envelope] = []
        self.rcpt_reply = rcpt_reply

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"billing"
          and auth_data.password == b"hunter2")
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    inbox: Inbox
    settings: SmtpSettings


def _start_smtp(inbox: Inbox, **kwargs: Any) -> tuple[Controller, int]:
    for _ in range(5):  # a free port can be taken between finding and binding it
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=5,
                                **kwargs)
        try:
            controller.start()
        except (OSError, RuntimeError):  # includes TimeoutError
            with contextlib.suppress(Exception):
                controller.stop()
            continue
        return controller, port
    raise RuntimeError("could not start the SMTP server")


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    inbox = Inbox(rcpt_reply=getattr(request, "param", None))
    controller, port = _start_smtp(inbox)
    try:
        yield SmtpServer(inbox, SmtpSettings(host="127.0.0.1", port=port, timeout=5))
    finally:
        controller.stop()


def _parts(envelope: Envelope) -> tuple[EmailMessage, str, str]:
    raw = envelope.original_content or envelope.content
    assert isinstance(raw, bytes)
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    return msg, text_part.get_content(), html_part.get_content()


def _invoice_email(server: SmtpServer, to: str = "Customer Seven <ap@customer.example>",
                   **kwargs: Any) -> tuple[Result, dict[str, Any]]:
    doc = make_document()
    result = send_email(
        server.settings, "Acme Billing <billing@acme.example>", to,
        email_subject(doc, entity_name="Acme"), render_text(doc, entity_name="Acme"),
        render_html(doc, entity_name="Acme"), **kwargs)
    return result, doc


def test_email_arrives_with_a_text_and_an_html_part(smtp_server: SmtpServer) -> None:
    result, _ = _invoice_email(smtp_server, message_id="invoice-7@acme.example")

    assert (result.ok, result.retry) == (True, False), result.detail
    [envelope] = smtp_server.inbox.messages
    assert envelope.mail_from == "billing@acme.example"
    assert envelope.rcpt_tos == ["ap@customer.example"]
    msg, text, html = _parts(envelope)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Invoice AC-0007 from Acme: €49.00"
    assert msg["Message-ID"] == "<invoice-7@acme.example>"
    assert msg["To"] == "Customer Seven <ap@customer.example>"
    for part in (text, html):
        assert "AC-0007" in part
        assert "€49.00" in part
    assert "<table" in html


@pytest.mark.parametrize("smtp_server", ["550 5.1.1 no such user"], indirect=True)
def test_a_refused_recipient_is_permanent(smtp_server: SmtpServer) -> None:
    result, _ = _invoice_email(smtp_server)
    assert (result.ok, result.retry) == (False, False)
    assert "550" in result.detail and "no such user" in result.detail
    assert smtp_server.inbox.messages == []


@pytest.mark.parametrize("smtp_server", ["451 4.3.0 try again later"], indirect=True)
def test_a_temporary_refusal_is_retried(smtp_server: SmtpServer) -> None:
    result, _ = _invoice_email(smtp_server)
    assert (result.ok, result.retry) == (False, True)
    assert "451" in result.detail


def test_nothing_listening_on_smtp_is_retried() -> None:
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2)
    result = send_email(settings, "billing@acme.example", "ap@customer.example", "s", "t",
                        "<p>h</p>")
    assert (result.ok, result.retry) == (False, True)


def test_a_silent_smtp_server_times_out_and_is_retried() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never says hello
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        settings = SmtpSettings(host="127.0.0.1", port=listener.getsockname()[1], timeout=0.5)
        started = time.monotonic()
        result = send_email(settings, "billing@acme.example", "ap@customer.example", "s", "t",
                            "<p>h</p>")
    assert (result.ok, result.retry) == (False, True)
    assert time.monotonic() - started < 5


def test_starttls_on_a_server_without_it_is_permanent(smtp_server: SmtpServer) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=smtp_server.settings.port, starttls=True,
                            timeout=5)
    result = send_email(settings, "billing@acme.example", "ap@customer.example", "s", "t",
                        "<p>h</p>")
    assert (result.ok, result.retry) == (False, False)
    assert "STARTTLS" in result.detail


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpServer]:
    inbox = Inbox()
    controller, port = _start_smtp(inbox, authenticator=_authenticator, auth_require_tls=False)
    try:
        yield SmtpServer(inbox, SmtpSettings(host="127.0.0.1", port=port, timeout=5))
    finally:
        controller.stop()


def test_login_then_send(smtp_auth_server: SmtpServer) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=smtp_auth_server.settings.port,
                            username="billing", password="hunter2", timeout=5)
    result = send_email(settings, "billing@acme.example", "ap@customer.example", "s", "t",
                        "<p>h</p>")
    assert result.ok, result.detail
    assert len(smtp_auth_server.inbox.messages) == 1
    assert "hunter2" not in repr(settings)


def test_a_wrong_password_is_permanent(smtp_auth_server: SmtpServer) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=smtp_auth_server.settings.port,
                            username="billing", password="wrong", timeout=5)
    result = send_email(settings, "billing@acme.example", "ap@customer.example", "s", "t",
                        "<p>h</p>")
    assert (result.ok, result.retry) == (False, False)
    assert "535" in result.detail
    assert smtp_auth_server.inbox.messages == []


@pytest.mark.parametrize(("sender", "to", "subject"), [
    ("not-an-address", "ap@customer.example", "s"),
    ("billing@acme.example", "", "s"),
    ("billing@acme.example", "ap@customer.example", "two\r\nBcc: evil@example.com"),
])
def test_bad_addresses_and_headers_are_permanent(sender: str, to: str, subject: str) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=1)
    result = send_email(settings, sender, to, subject, "t", "<p>h</p>")
    assert (result.ok, result.retry) == (False, False)


# =============================================================================================
# Outbox


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_outbox_writes_the_document_and_the_html(tmp_path: Path) -> None:
    doc = make_document()
    html = render_html(doc)

    result = write_outbox(tmp_path, doc, html)

    assert result.ok, result.detail
    assert _files(tmp_path) == ["acme/AC-0007.html", "acme/AC-0007.json"]
    text = (tmp_path / "acme" / "AC-0007.json").read_text(encoding="utf-8")
    assert json.loads(text) == doc
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert (tmp_path / "acme" / "AC-0007.html").read_text(encoding="utf-8") == html


def test_outbox_redelivery_overwrites_the_same_files(tmp_path: Path) -> None:
    doc = make_document()
    assert write_outbox(tmp_path, doc, "<p>first</p>").ok
    first = (tmp_path / "acme" / "AC-0007.json").read_bytes()

    assert write_outbox(tmp_path, doc, "<p>second</p>").ok
    assert write_outbox(tmp_path, doc, "<p>second</p>").ok

    assert _files(tmp_path) == ["acme/AC-0007.html", "acme/AC-0007.json"]  # no temp file left
    assert (tmp_path / "acme" / "AC-0007.json").read_bytes() == first
    assert (tmp_path / "acme" / "AC-0007.html").read_text() == "<p>second</p>"


def test_outbox_names_a_draft_by_subscription_and_boundary(tmp_path: Path) -> None:
    doc = make_document(number=None)
    assert write_outbox(tmp_path, doc, render_html(doc)).ok
    assert _files(tmp_path) == ["acme/sub-42@2026-03-01.html", "acme/sub-42@2026-03-01.json"]


def test_outbox_keeps_ids_inside_the_directory(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    doc = dict(make_document(), entity="../escape", number="../../x/y")
    result = write_outbox(outbox, doc, "<p>h</p>")
    assert result.ok, result.detail
    assert _files(tmp_path) == ["outbox/%2E.%2Fescape/%2E.%2F..%2Fx%2Fy.html",
                                "outbox/%2E.%2Fescape/%2E.%2F..%2Fx%2Fy.json"]


def test_outbox_failures(tmp_path: Path) -> None:
    missing_entity = {k: v for k, v in make_document().items() if k != "entity"}
    bad = write_outbox(tmp_path, missing_entity, "<p>h</p>")
    assert (bad.ok, bad.retry) == (False, False)

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    result = write_outbox(blocked, make_document(), "<p>h</p>")
    assert (result.ok, result.retry) == (False, True)

    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        denied = write_outbox(locked, make_document(), "<p>h</p>")
        assert (denied.ok, denied.retry) == (False, False)
