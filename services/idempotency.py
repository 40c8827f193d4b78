"""What an HTTP ``Idempotency-Key`` promises (issue #20): the key names one request — its
method, path and body, as canonical JSON (key order and spacing do not matter, values do)
— for good. The same request again gets the first answer and has no second effect; any
other request with the key is refused (``Reused``) before anything of it is stored or
sent. Only what the key's request itself does is kept under it: an answer is remembered
once the request succeeded; a refusal is answered again from the command log (its
outcome is stored with the command), and a request that failed before it ran (an
outage: 503) leaves the key to the same request's retry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from persistence import idempotency as repo
from persistence.db import unit_of_work


def _tagged(value: Any) -> Any:
    if isinstance(value, Decimal):  # a JSON number read exactly: its digits, not a float
        return {"$decimal": str(value)}
    raise TypeError(f"{type(value).__name__} is not JSON")


def fingerprint(method: str, path: str, body: Any) -> str:
    """SHA-256 of the request: method, path and the body's canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_tagged)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class First:
    """The request the key named first: None, or its answer (status, JSON text) once it
    was answered."""

    answer: tuple[int, str] | None


class Reused(Exception):
    """The key names another request: the same method and path with another body, or
    another method or path."""

    def __init__(self, key: str, first: tuple[str, str], now: tuple[str, str]) -> None:
        what = "another body" if first == now else f"{first[0]} {first[1]}"
        super().__init__(f"Idempotency-Key {key!r} was sent first with {what}: a new "
                         "request needs a new key (this one was not applied)")


def claim(api_key_id: int, key: str, method: str, path: str, print_: str,
          now: datetime) -> First:
    """Take ``key`` for this request, or find it taken by the same request (with its
    answer, once it has one); ``Reused`` when another request has it."""
    with unit_of_work() as session:
        row = repo.claim(session, api_key_id, key, method, path, print_, now)
        if row is None:
            return First(None)
        if row.fingerprint != print_:
            raise Reused(key, (row.method, row.path), (method, path))
        if row.status is None or row.response is None:
            return First(None)
        return First((row.status, row.response))


def remember(api_key_id: int, key: str, status: int, response: str) -> None:
    with unit_of_work() as session:
        repo.remember(session, api_key_id, key, status, response)
