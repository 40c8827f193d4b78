"""The body of ``POST /v1/usage``, parsed once: the value of its ``events`` member, and that
member's exact JSON text, which goes to the broker as it came (``simplejson.RawJSON``) —
the web process checks and counts the events but never encodes them a second time.

The top-level object is walked member by member with simplejson's own scanner (numbers
exact, long integers as decimals, as the broker's decoder reads them), so the text
forwarded is exactly what was checked, and a worker decodes the same values: a property
test holds ``parse`` equal to ``simplejson.loads``, for valid and invalid bodies alike.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import simplejson
from simplejson import JSONDecodeError

_LONG_INT = 300  # digits; longer JSON integers are read as decimals (as the broker does)


def _int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _LONG_INT else Decimal(text)


DECODER = simplejson.JSONDecoder(parse_float=Decimal, parse_int=_int)
NOT_AN_OBJECT = object()  # the body is JSON, but not an object


def _skip(text: str, i: int) -> int:
    """The index of the first character at or after ``i`` that is not JSON whitespace."""
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def loads(text: str) -> Any:
    """What ``parse`` must agree with: the whole body decoded."""
    return simplejson.loads(text, use_decimal=True, parse_int=_int)


def parse(text: str) -> tuple[Any, str | None]:
    """(the value of the body's ``events`` member, its JSON text) — (None, None) without
    one, (NOT_AN_OBJECT, None) for JSON that is not an object. As ``simplejson.loads``, a
    later duplicate member wins; ValueError (or RecursionError) for text that is not JSON."""
    i = _skip(text, 1 if text.startswith("\ufeff") else 0)  # a byte-order mark, as loads
    if not text.startswith("{", i):
        loads(text)  # the error of invalid JSON, or valid JSON that is not an object
        return NOT_AN_OBJECT, None
    events: Any = None
    raw: str | None = None
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        i += 1
    else:
        while True:
            if not text.startswith('"', i):
                raise JSONDecodeError("Expecting property name enclosed in double quotes",
                                      text, i)
            name, i = DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if not text.startswith(":", i):
                raise JSONDecodeError("Expecting ':' delimiter", text, i)
            start = _skip(text, i + 1)
            value, end = DECODER.scan_once(text, start)
            if name == "events":
                events, raw = value, text[start:end]
            i = _skip(text, end)
            if text.startswith(",", i):
                i = _skip(text, i + 1)
                continue
            if text.startswith("}", i):
                i += 1
                break
            raise JSONDecodeError("Expecting ',' delimiter", text, i)
    if _skip(text, i) != len(text):
        raise JSONDecodeError("Extra data", text, i)
    return events, raw
