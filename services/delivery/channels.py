"""Delivery channels: a signed webhook, an email, a directory outbox.

Each channel makes one attempt and returns a :class:`Result` instead of raising: ``ok``; or
a failure worth retrying later (timeouts, refused connections, HTTP 408/429/5xx, SMTP 4xx);
or a permanent one (other HTTP 4xx, SMTP 5xx, a bad URL, secret or address). Retrying,
backoff and bookkeeping belong to the caller.

Webhooks follow the Standard Webhooks specification (https://www.standardwebhooks.com/):
``webhook-id`` (the same on every attempt of one message, so receivers can dedupe),
``webhook-timestamp`` (unix seconds of this attempt) and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}`` under the secret's key).
They are sent with the standard library (``urllib.request``): one synchronous POST per
attempt needs no connection pool, and it keeps redirects under our control (never followed:
a redirected POST would lose its body).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import os
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

__all__ = [
    "Result",
    "SmtpSettings",
    "event_body",
    "outbox_name",
    "secret_key",
    "send_email",
    "send_webhook",
    "sign",
    "webhook_body",
    "webhook_id_for",
    "write_outbox",
]

USER_AGENT = "usage-billing-webhooks/1"
SECRET_PREFIX = "whsec_"
_DETAIL_LIMIT = 300


@dataclass(frozen=True)
class Result:
    """The outcome of one delivery attempt."""

    ok: bool
    retry: bool  # a failure that may succeed later; always False when ok
    detail: str

    @classmethod
    def success(cls, detail: str) -> Result:
        return cls(ok=True, retry=False, detail=detail)

    @classmethod
    def transient(cls, detail: str) -> Result:
        return cls(ok=False, retry=True, detail=_clip(detail))

    @classmethod
    def permanent(cls, detail: str) -> Result:
        return cls(ok=False, retry=False, detail=_clip(detail))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


# =============================================================================================
# Webhook


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` + base64, or the base64 alone
    (padding optional). Raises ValueError when it is not base64 or empty."""
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX):]
    text = text.rstrip("=")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not base64 (expected whsec_<base64>)") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64(HMAC-SHA256(key,
    ``{webhook_id}.{timestamp}.{body}``))."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_id_for(document: Mapping[str, Any], event_type: str) -> str:
    """A ``webhook-id`` for one event of one invoice: the same on every attempt and every
    re-render (it depends on entity, subscription, boundary and event type only, which
    identify an invoice), different for another invoice or event. ASCII, header-safe."""
    key = "\x00".join(str(document[k]) for k in ("entity", "subscription", "boundary"))
    return "msg_" + hashlib.sha256(f"{key}\x00{event_type}".encode()).hexdigest()[:32]


def webhook_body(document: Mapping[str, Any], event_type: str = "invoice.issued") -> bytes:
    """The Standard Webhooks payload shape: ``{"type", "timestamp", "data"}`` as compact JSON
    with sorted keys (byte-identical on every attempt); ``timestamp`` is the invoice's
    ``issued_at``, ``data`` the document."""
    payload = {"type": event_type, "timestamp": document.get("issued_at"), "data": document}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode()


def event_body(event_type: str, timestamp: str, data: Mapping[str, Any]) -> bytes:
    """The Standard Webhooks payload of an invoice's status change (``invoice.paid``, …):
    byte-identical on every attempt."""
    payload = {"type": event_type, "timestamp": timestamp, "data": data}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a GET without body."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage,
                         newurl: str) -> urllib.request.Request | None:
        return None


_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")


def _where(url: str) -> str:
    """The URL without credentials, query or fragment (they may hold tokens): for details."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _response_snippet(fp: IO[bytes] | None) -> str:
    if fp is None:
        return ""
    try:
        return fp.read(512).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        return ""


class _Headers:
    """What is read of an answer's headers (``http.client.HTTPMessage`` has it)."""

    def __init__(self, message: Any) -> None:
        self.retry_after: str | None = message.get("Retry-After") if message else None
        self.location: str | None = message.get("Location") if message else None


def _http_result(status: int, where: str, snippet: str, headers: _Headers) -> Result:
    said = f": {snippet}" if snippet else ""
    if 200 <= status < 300:
        return Result.success(f"HTTP {status} from {where}")
    if status in (408, 429) or 500 <= status < 600:
        hint = f" (Retry-After {headers.retry_after})" if headers.retry_after else ""
        return Result.transient(f"HTTP {status} from {where}{hint}{said}")
    if 300 <= status < 400:
        location = _where(headers.location) if headers.location else "?"
        return Result.permanent(
            f"HTTP {status} from {where}: redirect to {location} not followed{said}")
    return Result.permanent(f"HTTP {status} from {where}{said}")


def send_webhook(
    url: str,
    secret: str,
    webhook_id: str,
    body: bytes,
    *,
    timeout: float = 10.0,
    now: int | None = None,
) -> Result:
    """POST ``body`` (JSON) to ``url`` signed per Standard Webhooks; one attempt.

    ``webhook_id`` must be the same on every attempt of one message (see
    :func:`webhook_id_for`); ``now`` is the signing time in unix seconds (default: the
    system clock, which receivers compare with theirs, typically within 5 minutes).
    ``timeout`` bounds the connection and each read of the answer."""
    where = _where(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Result.permanent(f"bad webhook URL {where!r}: must be http:// or https://")
    try:
        _ = parts.port  # raises on a port out of range
    except ValueError as exc:
        return Result.permanent(f"bad webhook URL {where!r}: {exc}")
    if not _HEADER_VALUE.fullmatch(webhook_id):
        return Result.permanent(f"bad webhook id {webhook_id!r}: printable ASCII, no spaces")
    timestamp = int(time.time()) if now is None else int(now)
    try:
        signature = sign(secret, webhook_id, timestamp, body)
    except ValueError as exc:
        return Result.permanent(f"bad webhook secret: {exc}")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    })
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            return _http_result(response.status, where, "", _Headers(response.headers))
    except urllib.error.HTTPError as exc:  # a non-2xx answer
        with exc:
            return _http_result(exc.code, where, _response_snippet(exc.fp), _Headers(exc.headers))
    except urllib.error.URLError as exc:  # no answer: DNS, refused, TLS, connect timeout
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Result.transient(f"POST {where}: timed out after {timeout:g}s")
        return Result.transient(f"POST {where}: {reason}")
    except TimeoutError:  # waiting for the answer
        return Result.transient(f"POST {where}: timed out after {timeout:g}s")
    except (http.client.HTTPException, OSError) as exc:  # reset, closed without an answer
        return Result.transient(f"POST {where}: {type(exc).__name__}: {exc}")
    except ValueError as exc:  # a URL urllib cannot use (bad port, control characters)
        return Result.permanent(f"bad webhook URL {where!r}: {exc}")


# =============================================================================================
# Email


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout: float = 10.0


def _smtp_text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _smtp_reply(code: int, text: bytes | str, what: str) -> Result:
    detail = f"{what}: SMTP {code} {_smtp_text(text)}"
    if 500 <= code < 600:
        return Result.permanent(detail)
    return Result.transient(detail)  # 4xx, or no code at all (-1: connection trouble)


def _build_message(sender: str, to: str, subject: str, text: str, html: str,
                   message_id: str | None,
                   attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    if message_id is None:
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        message_id = make_msgid(domain=domain)
    elif not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    msg["Message-ID"] = message_id
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    if attachment is not None:  # the PDF: multipart/mixed around the alternatives
        name, data = attachment
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return msg


def send_email(
    smtp: SmtpSettings,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    *,
    message_id: str | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> Result:
    """Send one multipart/alternative email (text, then HTML) through ``smtp``, with an
    optional attachment (``(file name, PDF bytes)``); one attempt.

    ``sender`` and ``to`` may be plain addresses or ``Name <address>``. ``message_id`` (e.g.
    ``<invoice-17@billing.example>``) should be the same on every attempt of one message, so
    that a retry after a lost answer is recognisable as a duplicate; a fresh one otherwise.
    SMTP 5xx (recipient refused, authentication failed) is permanent, 4xx and connection
    trouble are retried."""
    from_addr, to_addr = parseaddr(sender)[1], parseaddr(to)[1]
    if "@" not in from_addr:
        return Result.permanent(f"bad sender address {sender!r}")
    if "@" not in to_addr:
        return Result.permanent(f"bad recipient address {to!r}")
    try:
        msg = _build_message(sender, to, subject, text, html, message_id, attachment)
    except (ValueError, TypeError) as exc:  # e.g. a line break in a header
        return Result.permanent(f"cannot build the email: {exc}")
    where = f"{smtp.host}:{smtp.port}"
    client: smtplib.SMTP | None = None
    try:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(msg, from_addr=from_addr, to_addrs=[to_addr])
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = exc.recipients.get(to_addr) or next(iter(exc.recipients.values()))
        return _smtp_reply(code, reply, f"{where} refused {to_addr}")
    except smtplib.SMTPAuthenticationError as exc:
        return _smtp_reply(exc.smtp_code, exc.smtp_error, f"{where} refused the login")
    except smtplib.SMTPResponseException as exc:  # sender, data, greeting, HELO refused
        return _smtp_reply(exc.smtp_code, exc.smtp_error, where)
    except smtplib.SMTPServerDisconnected as exc:
        return Result.transient(f"{where}: disconnected: {exc}")
    except smtplib.SMTPNotSupportedError as exc:  # STARTTLS/AUTH/SMTPUTF8 not offered
        return Result.permanent(f"{where}: {exc}")
    except smtplib.SMTPException as exc:  # e.g. no suitable authentication method
        return Result.permanent(f"{where}: {exc}")
    except TimeoutError:
        return Result.transient(f"{where}: timed out after {smtp.timeout:g}s")
    except OSError as exc:  # refused, unreachable, DNS, TLS
        return Result.transient(f"{where}: {type(exc).__name__}: {exc}")
    except (ValueError, UnicodeError) as exc:  # e.g. a non-ASCII password
        return Result.permanent(f"{where}: {type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            _quit(client)
    return Result.success(f"accepted by {where} for {to_addr}")


def _quit(client: smtplib.SMTP) -> None:
    """QUIT politely; the message is already accepted (or not): a failing QUIT changes
    nothing and must not turn a delivered email into a retried one."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


# =============================================================================================
# Outbox directory


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def outbox_name(text: str) -> str:
    """A safe, injective file name for an id: percent-encodes path separators and anything
    but letters, digits and ``@-_.+=,~``; never hidden, never ``..``; long names are cut and
    suffixed with a hash."""
    name = quote(text, safe="@-_.+=,~")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > 180:
        name = name[:150] + "~" + hashlib.sha256(text.encode()).hexdigest()[:24]
    return name or "%00"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a temporary file beside ``path``, fsync it, and rename it over ``path``: a reader
    sees the old file or the new one, never a partial one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as open() would
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_outbox(directory: Path, document: Mapping[str, Any], html: str) -> Result:
    """Write ``<directory>/<entity>/<name>.html`` then ``<name>.json`` (the document, pretty
    JSON with sorted keys), each atomically; ``name`` is the invoice number, or
    ``subscription@boundary`` for a draft. Writing again overwrites the same two files, so a
    re-delivery is harmless. The ``.json`` is written last: once it is there, so is the
    ``.html``."""
    try:
        entity = str(document["entity"])
        number = document.get("number")
        name = str(number) if number else f"{document['subscription']}@{document['boundary']}"
        data = json.dumps(dict(document), indent=2, sort_keys=True, ensure_ascii=False,
                          default=_json_default) + "\n"
    except (KeyError, TypeError, ValueError) as exc:
        return Result.permanent(f"bad invoice document: {type(exc).__name__}: {exc}")
    folder = Path(directory) / outbox_name(entity)
    stem = outbox_name(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / f"{stem}.html", html.encode("utf-8"))
        _atomic_write(folder / f"{stem}.json", data.encode("utf-8"))
        _fsync_dir(folder)
    except PermissionError as exc:
        return Result.permanent(f"outbox {folder}: {exc}")
    except OSError as exc:  # disk full, I/O error: may pass later
        return Result.transient(f"outbox {folder}: {type(exc).__name__}: {exc}")
    return Result.success(f"wrote {folder / stem}.json and .html")
