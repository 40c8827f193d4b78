"""``web.usage_body.parse`` walks a usage request's top-level object itself to keep the
``events`` member's text; it must agree with ``simplejson.loads`` on every body, valid or
not, and the text it keeps must decode to the very events it returns."""

from __future__ import annotations

import json
from typing import Any

import pytest
import simplejson
from hypothesis import given, settings
from hypothesis import strategies as st

from web import usage_body

pytestmark = pytest.mark.unit

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.decimals(allow_nan=False, allow_infinity=False, places=3))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
members = st.lists(st.tuples(st.sampled_from(["events", "other", "evénts", "events "]),
                             values), max_size=4)
spaces = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


def encoded(value: Any) -> str:
    return str(simplejson.dumps(value, use_decimal=True, ensure_ascii=False))


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """JSON objects written with any spacing, duplicates and member order, and then maybe
    broken by cutting, inserting or replacing a character."""
    pairs = draw(members)
    s = draw(spaces)
    text = s + "{" + s + ("," + s).join(
        f"{json.dumps(name)}{draw(spaces)}:{draw(spaces)}{encoded(value)}{draw(spaces)}"
        for name, value in pairs) + "}" + draw(spaces)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        change = draw(st.sampled_from(["cut", "insert", "replace"]))
        char = draw(st.sampled_from(list('{}[],:"\\ 0a-')))
        text = (text[:at] if change == "cut" else text[:at] + char + text[at:]
                if change == "insert" else text[:at] + char + text[at + 1:])
    return text


def outcome(text: str) -> tuple[str, Any]:
    try:
        data = usage_body.loads(text)
    except (ValueError, RecursionError):
        return "invalid", None
    if not isinstance(data, dict):
        return "not an object", None
    return "object", data.get("events")


@settings(max_examples=600)
@given(text=bodies())
def test_parse_agrees_with_loads(text: str) -> None:
    kind, events = outcome(text)
    if kind == "invalid":
        with pytest.raises((ValueError, RecursionError)):
            usage_body.parse(text)
        return
    found, raw = usage_body.parse(text)
    if kind == "not an object":
        assert found is usage_body.NOT_AN_OBJECT and raw is None
        return
    assert found == events
    if raw is not None:
        assert usage_body.loads(raw) == found  # the text forwarded is the events checked


@given(value=values)
def test_any_json_value_that_is_not_an_object(value: Any) -> None:
    if not isinstance(value, dict):
        assert usage_body.parse(encoded(value)) == (usage_body.NOT_AN_OBJECT, None)


def test_examples() -> None:
    assert usage_body.parse('{"events": [1, 2.50]}')[1] == "[1, 2.50]"
    assert usage_body.parse('{"events": [1], "events": [2]}') == ([2], "[2]")  # last wins
    assert usage_body.parse("\ufeff {} ") == (None, None)
    with pytest.raises(ValueError):
        usage_body.parse('{"events": [1]} x')
    with pytest.raises(ValueError):
        usage_body.parse('{"events": [1],}')
