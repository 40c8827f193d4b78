"""A small synchronous client for the usage-billing HTTP API.

Quantities and amounts are exact: they are sent as decimal strings and a float is refused;
responses are parsed with any JSON number that is not an integer read as a ``Decimal``.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

__all__ = ["MAX_BATCH", "Batch", "BillingClient", "BillingError", "UsageBatcher"]

__version__ = "0.1.0"

MAX_BATCH = 1000  # events in one POST /v1/usage (the API's limit)
MAX_DELAY = 30.0  # seconds: the longest wait between two attempts (backoff or Retry-After)
# The engine's plain decimal: digits, an optional point with decimals, an optional exponent.
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# Transport failures worth another attempt; others (a bad URL scheme, a proxy refusing) are not.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_sleep = time.sleep  # module-level so tests can replace it

Json = dict[str, Any]


class BillingError(Exception):
    """An error response from the API (``status`` is its HTTP status), or — with ``status``
    None and ``code`` "unreachable" — a transport failure that outlasted the retries."""

    def __init__(self, status: int | None, code: str, message: str,
                 field: str | None = None) -> None:
        super().__init__(status, code, message, field)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        prefix = f"HTTP {self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}{where}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> BillingError:
        """The API's ``{"error": {"code", "message", "field"}}``, or whatever a proxy sent."""
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
            field = error.get("field")
            if isinstance(code, str) and isinstance(message, str):
                return cls(response.status_code, code, message,
                           field if isinstance(field, str) else None)
        except (ValueError, LookupError, TypeError, AttributeError):
            pass
        text = response.text.strip().splitlines()
        message = text[0][:200] if text else (response.reason_phrase or "no message")
        return cls(response.status_code, f"http_{response.status_code}", message)


@dataclass(frozen=True)
class Batch:
    """An accepted ``POST /v1/usage``: the batch id and how many events it carried."""

    id: str
    events: int


class BillingClient:
    """Sync client for the billing API. Every call but ``healthz`` sends the API key.

    Connection errors, timeouts, 429 and 5xx are retried up to ``max_attempts`` in all,
    waiting ``Retry-After`` seconds when the response gives them, else ``backoff * 2**n``
    seconds with jitter (both capped at 30 s). Every state-changing POST carries an
    ``Idempotency-Key`` — the caller's or a fresh uuid4 — that is the same on each retry of
    one call, so a retried POST is applied once.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 max_attempts: int = 5, backoff: float = 0.5,
                 transport: httpx.BaseTransport | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if backoff < 0:
            raise ValueError("backoff must not be negative")
        if not api_key or not api_key.isascii() or not api_key.isprintable():
            raise ValueError("api_key must be non-empty printable ASCII text")
        self._api_key = api_key
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, transport=transport,
            headers={"User-Agent": f"usage-billing-client/{__version__}",
                     "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- usage ---------------------------------------------------------------------------

    def send_usage(self, events: Iterable[Mapping[str, Any]], *,
                   idempotency_key: str | None = None) -> Batch:
        """``POST /v1/usage`` with 1 to 1000 events (use ``UsageBatcher`` for more)."""
        body = [event_json(e, f"events[{i}]") for i, e in enumerate(events)]
        if not 1 <= len(body) <= MAX_BATCH:
            raise ValueError(f"events: send 1 to {MAX_BATCH} events, got {len(body)}")
        data = self._post("/v1/usage", {"events": body}, idempotency_key)
        return Batch(str(data["batch"]), int(data["events"]))

    def batch(self, batch_id: str | Batch) -> Json:
        return self._get(f"/v1/usage/batches/{_segment(batch_id)}")

    def wait_for_batch(self, batch_id: str | Batch, timeout: float = 30,
                       interval: float = 0.2) -> Json:
        """Poll the batch until its status is "processed"; ``TimeoutError`` after ``timeout``
        seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.batch(batch_id)
            if status.get("status") == "processed":
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                name = batch_id.id if isinstance(batch_id, Batch) else batch_id
                raise TimeoutError(f"batch {name} still {status.get('status')!r} "
                                   f"after {timeout} s")
            _sleep(min(interval, left))

    # -- customers and subscriptions -----------------------------------------------------

    def put_customer(self, id: str, entity: str, *, email: str | None = None,
                     draft_invoices: bool | None = None, **details: Any) -> Json:
        """Create or update a customer (PUT is idempotent by itself). ``details``: its
        billing details and taxes — ``legal_name``, ``address``, ``tax_id``, ``net_terms``,
        ``locale``, ``taxes``, ``tax_exempt``; one omitted is cleared."""
        body: Json = {"entity": entity, **{k: v for k, v in details.items() if v is not None}}
        if email is not None:
            body["email"] = email
        if draft_invoices is not None:
            body["draft_invoices"] = draft_invoices
        return _json(self._request("PUT", f"/v1/customers/{_segment(id)}", body=body))

    def customer(self, id: str) -> Json:
        return self._get(f"/v1/customers/{_segment(id)}")

    def subscribe(self, id: str, customer: str, plan: str, start: date | str, *,
                  discount: Mapping[str, Any] | None = None,
                  idempotency_key: str | None = None) -> Json:
        """``POST /v1/subscriptions``. ``discount`` is ``{"percent"|"amount": decimal,
        "cycles"?: int}``."""
        body: Json = {"id": id, "customer": customer, "plan": plan,
                      "start": _date_text(start, "start")}
        if discount is not None:
            body["discount"] = {
                k: decimal_text(v, f"discount.{k}") if k in ("percent", "amount") else v
                for k, v in discount.items()
            }
        return self._post("/v1/subscriptions", body, idempotency_key)

    def cancel(self, id: str, *, idempotency_key: str | None = None) -> Json:
        return self._post(f"/v1/subscriptions/{_segment(id)}/cancel", None, idempotency_key)

    def uncancel(self, id: str, *, idempotency_key: str | None = None) -> Json:
        return self._post(f"/v1/subscriptions/{_segment(id)}/uncancel", None, idempotency_key)

    def change_plan(self, id: str, plan: str, since: date | str, *,
                    idempotency_key: str | None = None) -> Json:
        """``POST /v1/subscriptions/{id}/change-plan``: ``plan`` in force from the local date
        ``since``; the subscription with its plan history."""
        return self._post(f"/v1/subscriptions/{_segment(id)}/change-plan",
                          {"plan": plan, "from": _date_text(since, "since")}, idempotency_key)

    def preview_plan_change(self, id: str, plan: str, since: date | str) -> Json:
        """What the change would do and the next invoice's estimate with it; nothing
        changes."""
        return self._post(f"/v1/subscriptions/{_segment(id)}/change-plan/preview",
                          {"plan": plan, "from": _date_text(since, "since")}, None)

    def subscription(self, id: str) -> Json:
        return self._get(f"/v1/subscriptions/{_segment(id)}")

    # -- invoices ------------------------------------------------------------------------

    def invoices(self, *, customer: str | None = None, subscription: str | None = None,
                 status: str | None = None, limit: int | None = None) -> Iterator[Json]:
        """Every matching invoice, page after page (``limit`` is the page size)."""
        params: dict[str, str | int] = {
            k: v for k, v in (("customer", customer), ("subscription", subscription),
                              ("status", status), ("limit", limit)) if v is not None
        }
        after: str | None = None
        while True:
            page = self._get("/v1/invoices", params if after is None
                             else {**params, "after": after})
            yield from page["invoices"]
            cursor = page.get("next")
            if not cursor:
                return
            if cursor == after:
                raise BillingError(None, "invalid_response",
                                   f"the invoice cursor {cursor!r} did not advance")
            after = str(cursor)

    def invoice(self, ref: str | int) -> Json:
        """``ref``: an invoice number ("EU-000002") or "SUB@YYYY-MM-DD"."""
        return self._get(f"/v1/invoices/{_segment(ref)}")

    def invoice_html(self, ref: str | int) -> str:
        """The readable HTML document of an invoice."""
        return self._request("GET", f"/v1/invoices/{_segment(ref)}",
                             headers={"Accept": "text/html"}).text

    def release(self, ref: str | int, *, idempotency_key: str | None = None) -> Json:
        return self._post(f"/v1/invoices/{_segment(ref)}/release", None, idempotency_key)

    def regenerate(self, ref: str | int, *, idempotency_key: str | None = None) -> Json:
        return self._post(f"/v1/invoices/{_segment(ref)}/regenerate", None, idempotency_key)

    def bill_run(self, entity: str, date: str | None = None, *,
                 idempotency_key: str | None = None) -> Json:
        """``POST /v1/bill-runs``: the entity's bill run now — of the local ``date``
        (YYYY-MM-DD), or without one a run at this instant issuing everything due. What it
        issued, each invoice by its reference; idempotent like every run."""
        body: Json = {"entity": entity}
        if date is not None:
            body["date"] = date
        return self._post("/v1/bill-runs", body, idempotency_key)

    def invoice_pdf(self, ref: str | int) -> bytes:
        """The invoice as a PDF (the same template as its HTML)."""
        return self._request("GET", f"/v1/invoices/{_segment(ref)}/pdf").content

    def record_payment(self, ref: str | int, amount: Decimal | str, currency: str,
                       paid_on: date | str, *, method: str = "other",
                       reference: str | None = None,
                       idempotency_key: str | None = None) -> Json:
        """Record a payment of a sent invoice (never more than is still due); the invoice
        as it is after it, with its ``payment_status``."""
        body: Json = {"amount": str(amount), "currency": currency, "date": str(paid_on),
                      "method": method}
        if reference is not None:
            body["reference"] = reference
        return self._post(f"/v1/invoices/{_segment(ref)}/payments", body, idempotency_key)

    def void_invoice(self, ref: str | int, *, idempotency_key: str | None = None) -> Json:
        return self._post(f"/v1/invoices/{_segment(ref)}/void", None, idempotency_key)

    def mark_uncollectible(self, ref: str | int, *,
                           idempotency_key: str | None = None) -> Json:
        return self._post(f"/v1/invoices/{_segment(ref)}/mark-uncollectible", None,
                          idempotency_key)

    def estimate(self, *, subscription: str | None = None,
                 customer: str | None = None) -> Json:
        """Estimated charges so far for one subscription or for all of a customer's."""
        if (subscription is None) == (customer is None):
            raise ValueError("estimate: give exactly one of subscription= or customer=")
        if subscription is not None:
            return self._get(f"/v1/subscriptions/{_segment(subscription)}/estimate")
        assert customer is not None
        return self._get(f"/v1/customers/{_segment(customer)}/estimate")

    def grant_credits(self, id: str, customer: str, currency: str,
                      amount: Decimal | int | str, *, expires_at: datetime | str | None = None,
                      priority: int | None = None, idempotency_key: str | None = None) -> Json:
        """``POST /v1/credit-grants``: prepaid credit for ``customer``, usable by the invoices
        sent after it; the grant with its ledger."""
        body: Json = {"id": id, "customer": customer, "currency": currency,
                      "amount": decimal_text(amount, "amount")}
        if expires_at is not None:
            body["expires_at"] = _instant_text(expires_at, "expires_at")
        if priority is not None:
            body["priority"] = priority
        return self._post("/v1/credit-grants", body, idempotency_key)

    def void_credits(self, grant: str, *, idempotency_key: str | None = None) -> Json:
        """``POST /v1/credit-grants/{id}/void``: it pays nothing sent from now on."""
        return self._post(f"/v1/credit-grants/{_segment(grant)}/void", None, idempotency_key)

    def credit_grant(self, grant: str) -> Json:
        return self._get(f"/v1/credit-grants/{_segment(grant)}")

    def credit_grants(self, customer: str) -> list[Json]:
        """A customer's grants with their ledgers."""
        grants: list[Json] = self._get(
            f"/v1/customers/{_segment(customer)}/credit-grants")["grants"]
        return grants

    def credit_balance(self, customer: str) -> dict[str, Decimal]:
        """A customer's prepaid credit per currency, as exact decimals."""
        found = self._get(f"/v1/customers/{_segment(customer)}/credit-balance")
        return {b["currency"]: Decimal(b["balance"]) for b in found["balances"]}

    def create_alert(self, id: str, customer: str, kind: str,
                     thresholds: Iterable[Decimal | int | str], *,
                     subscription: str | None = None, meter: str | None = None,
                     currency: str | None = None,
                     recurring_step: Decimal | int | str | None = None,
                     idempotency_key: str | None = None) -> Json:
        """``POST /v1/alerts``: ``kind`` is ``usage_amount`` (the estimated usage amount of
        the current period), ``usage_quantity`` (``meter``'s usage in it) or
        ``credit_balance`` (``currency``, decreasing); thresholds increasing, > 0, then
        every ``recurring_step`` after the last. Fires ``alert.triggered`` webhooks."""
        body: Json = {"id": id, "customer": customer, "kind": kind,
                      "thresholds": [decimal_text(t, f"thresholds[{i}]")
                                     for i, t in enumerate(thresholds)]}
        for name, value in (("subscription", subscription), ("meter", meter),
                            ("currency", currency)):
            if value is not None:
                body[name] = value
        if recurring_step is not None:
            body["recurring_step"] = decimal_text(recurring_step, "recurring_step")
        return self._post("/v1/alerts", body, idempotency_key)

    def alerts(self, *, customer: str | None = None,
               subscription: str | None = None) -> list[Json]:
        params = {k: v for k, v in (("customer", customer), ("subscription", subscription))
                  if v is not None}
        found: list[Json] = self._get("/v1/alerts", params)["alerts"]
        return found

    def alert(self, id: str) -> Json:
        return self._get(f"/v1/alerts/{_segment(id)}")

    def delete_alert(self, id: str, *, idempotency_key: str | None = None) -> Json:
        """``DELETE /v1/alerts/{id}``: it fires nothing more."""
        key = idempotency_key or str(uuid.uuid4())
        return _json(self._request("DELETE", f"/v1/alerts/{_segment(id)}",
                                   headers={"Idempotency-Key": key}))

    def portal_link(self, customer: str, ttl: str | None = None, *,
                    idempotency_key: str | None = None) -> Json:
        """``{"url", "expires_at"}``; ``ttl`` like "12h"."""
        body: Json = {"customer": customer}
        if ttl is not None:
            body["ttl"] = ttl
        return self._post("/v1/portal-links", body, idempotency_key)

    def healthz(self) -> Json:
        """``GET /healthz``: no API key and a single attempt (it asks about *now*)."""
        return _json(self._request("GET", "/healthz", auth=False, attempts=1))

    # -- transport -----------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> Json:
        return _json(self._request("GET", path, params=params))

    def _post(self, path: str, body: Json | None, idempotency_key: str | None) -> Json:
        key = idempotency_key or str(uuid.uuid4())
        return _json(self._request("POST", path, body=body,
                                   headers={"Idempotency-Key": key}))

    def _request(self, method: str, path: str, *, body: Json | None = None,
                 params: Mapping[str, str | int] | None = None,
                 headers: Mapping[str, str] | None = None, auth: bool = True,
                 attempts: int | None = None) -> httpx.Response:
        """One call: the same request (body bytes and headers) on every attempt."""
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {self._api_key}"
        content = None
        if body is not None:
            content = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
            sent["Content-Type"] = "application/json"
        attempts = attempts or self._max_attempts
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, content=content, params=params,
                                              headers=sent)
            except _TRANSIENT as exc:
                error = BillingError(None, "unreachable", f"{type(exc).__name__}: {exc}")
                cause: BaseException | None = exc
                delay = self._delay(attempt)
            except httpx.TransportError as exc:
                raise BillingError(None, "unreachable", f"{type(exc).__name__}: {exc}") from exc
            else:
                if response.is_success:
                    return response
                error, cause = BillingError.from_response(response), None
                if response.status_code != 429 and response.status_code < 500:
                    raise error
                wait = _retry_after(response)
                delay = self._delay(attempt) if wait is None else wait
            if attempt + 1 < attempts:
                _sleep(delay)
        if error.status is None and attempts > 1:
            error.message += f" (after {attempts} attempts)"
        raise error from cause

    def _delay(self, attempt: int) -> float:
        """``backoff * 2**attempt`` capped at 30 s, with jitter: a random half to all of it."""
        ceiling = min(MAX_DELAY, self._backoff * 2.0 ** min(attempt, 32))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class UsageBatcher:
    """Collects events and sends them in batches of ``batch_size`` (at most 1000).

    A batch is sent when it is full, on ``flush()`` and when the ``with`` block ends (also
    when it ends with an exception: usage that happened is billed). A batch that could not
    be sent stays in ``pending``; flushing again is safe, as event keys make a re-sent
    event a duplicate, never counted twice. Not thread-safe: use one batcher per thread.
    """

    def __init__(self, client: BillingClient, batch_size: int = 500) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.client = client
        self.batch_size = min(batch_size, MAX_BATCH)
        self.pending: list[Json] = []
        self.batches: list[Batch] = []

    def add(self, *, key: str, customer: str, meter: str, quantity: Decimal | int | str,
            timestamp: datetime | str, properties: Mapping[str, Any] | None = None) -> None:
        """Queue one event (checked now, so a bad one fails here, not in a later batch)."""
        raw: Json = {"key": key, "customer": customer, "meter": meter, "quantity": quantity,
                     "timestamp": timestamp}
        if properties is not None:
            raw["properties"] = properties
        self.pending.append(event_json(raw, "event"))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> Batch | None:
        """Send what is pending (in batches of ``batch_size``); the last Batch, or None if
        nothing was pending."""
        sent = None
        while self.pending:
            chunk = self.pending[:self.batch_size]
            sent = self.client.send_usage(chunk)
            del self.pending[:len(chunk)]
            self.batches.append(sent)
        return sent

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.flush()


# -- request values ----------------------------------------------------------------------

_EVENT_FIELDS = ("key", "customer", "meter", "quantity", "timestamp")


def event_json(event: Mapping[str, Any], where: str) -> Json:
    """An event as the API takes it: quantity a decimal string, timestamp ISO 8601 text."""
    if not isinstance(event, Mapping):
        raise TypeError(f"{where}: an event must be a mapping, got {type(event).__name__}")
    missing = [f for f in _EVENT_FIELDS if event.get(f) is None]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    result = dict(event)
    result["quantity"] = decimal_text(event["quantity"], f"{where}.quantity")
    result["timestamp"] = _instant_text(event["timestamp"], f"{where}.timestamp")
    if result.get("properties") is None:
        result.pop("properties", None)
    return result


def decimal_text(value: object, field: str) -> str:
    """A ``Decimal``, ``int`` or decimal string as exact decimal text; never a float."""
    if isinstance(value, float):
        raise TypeError(f"{field}: a float is not exact; pass a Decimal, an int or a string "
                        f"(got {value!r})")
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"{field}: must be a Decimal, an int or a decimal string, "
                        f"got {type(value).__name__}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{field}: must be a finite number, got {value}")
        return str(value)
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError(f"{field}: must be a plain decimal such as 12 or 0.5, got {value!r}")
    return str(value)


def _instant_text(value: object, field: str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{field}: a naive datetime is ambiguous; give it a time zone")
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"{field}: must be an aware datetime or ISO 8601 text, "
                    f"got {type(value).__name__}")


def _date_text(value: object, field: str) -> str:
    if isinstance(value, datetime):
        raise TypeError(f"{field}: must be a date, not a datetime")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"{field}: must be a date or YYYY-MM-DD text, got {type(value).__name__}")


def _segment(value: str | int | Batch) -> str:
    """One path segment: "/" and other reserved characters escaped ("@" kept readable)."""
    return quote(str(value.id if isinstance(value, Batch) else value), safe="@")


def _json(response: httpx.Response) -> Json:
    try:
        data = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BillingError(response.status_code, "invalid_response",
                           "the response is not a JSON object")
    return data


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, capped at 30 s; None if absent or not a number."""
    try:
        seconds = float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_DELAY) if seconds == seconds else None
