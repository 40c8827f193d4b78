"""Reading a scenario file (REPLAY.md): YAML or JSON, numbers as exact decimals.

A malformed scenario raises ``ScenarioError`` whose one-line message says what is wrong
and where (the file, and the field path or the YAML line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from domain.catalog import Catalog, parse_catalog
from domain.validation import (
    Fields,
    Invalid,
    describe,
    ignoring_unknown_fields,
    parse_instant,
)

ACTIONS = ("subscribe", "usage", "cancel", "uncancel", "set_draft_invoices", "release",
           "regenerate")
# The parameters an action needs to be sent at all; their values are the engine's to judge.
REQUIRED = {
    "subscribe": ("id", "customer", "plan", "start"),
    "cancel": ("subscription",),
    "uncancel": ("subscription",),
    "set_draft_invoices": ("customer", "value"),
    "release": ("subscription", "boundary"),
    "regenerate": ("subscription", "boundary"),
}


class ScenarioError(Exception):
    """A scenario that cannot be replayed; the message is one line."""


@dataclass(frozen=True)
class Action:
    at: datetime
    kind: str
    params: Any  # a mapping, or for "usage" the list of raw events
    index: int  # position in the file: ties at the same instant keep file order


@dataclass(frozen=True)
class Scenario:
    catalog: Catalog
    actions: tuple[Action, ...]
    until: datetime
    ignored: tuple[str, ...] = ()  # unknown fields, left alone (the replay warns)

    @property
    def start(self) -> datetime:
        return min((a.at for a in self.actions), default=self.until)


class _ExactLoader(yaml.SafeLoader):
    """YAML with floats read as exact decimals from their text and no implicit dates or
    timestamps (an unquoted 2026-03-01 stays the string the engine validates)."""


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "").lower()
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    return Decimal(special.get(text, text))


_ExactLoader.add_constructor("tag:yaml.org,2002:float", _decimal)
_ExactLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_document(path: Path) -> Any:
    """The parsed file; YAML (the default) or JSON (``.json``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise ScenarioError(
                f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
            ) from None
    try:
        return yaml.load(text, Loader=_ExactLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(f"{path}: {where}invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {exc}") from None


def _action(path: str, item: Any, index: int) -> Action:
    f = Fields(item, path, "a mapping with `at` and one action")
    at = parse_instant(f.required("at"), f.at("at"))
    kinds = [k for k in ACTIONS if k in f.data]
    if len(kinds) != 1:
        raise Invalid(path, f"must have exactly one action of {', '.join(ACTIONS)}")
    kind = kinds[0]
    params = f.raw(kind)
    f.check_unknown()
    if kind == "usage":
        if not isinstance(params, list):
            f.fail("usage", f"must be a list of events, got {describe(params)}")
        return Action(at, kind, params, index)
    p = Fields(params, f.at(kind))
    for name in REQUIRED[kind]:
        value = p.required(name)
        if name == "value":
            if not isinstance(value, bool):
                p.fail(name, f"must be true or false, got {describe(value)}")
        elif not isinstance(value, str):
            p.fail(name, f"must be a string, got {describe(value)}")
    return Action(at, kind, dict(params), index)


def parse_scenario(document: Any, source: str = "scenario") -> Scenario:
    """A scenario; a field the format does not know is ignored (and listed in
    ``Scenario.ignored``), a missing or malformed one is a ``ScenarioError``."""
    with ignoring_unknown_fields() as ignored:
        scenario = _parse_scenario(document, source)
    return Scenario(scenario.catalog, scenario.actions, scenario.until, tuple(ignored))


def _parse_scenario(document: Any, source: str) -> Scenario:
    try:
        if not isinstance(document, dict):
            raise Invalid("", f"must be a mapping with entities, meters, plans, customers, "
                              f"timeline and until, got {describe(document)}")
        catalog = parse_catalog(
            {k: document[k] for k in ("entities", "meters", "plans", "customers")
             if k in document}
        )
        f = Fields(document, "")
        for name in ("entities", "meters", "plans", "customers"):
            f.raw(name)
        until = parse_instant(f.required("until"), "until")
        actions = tuple(
            _action(path, item, index)
            for index, (path, item) in enumerate(f.items("timeline", required=False))
        )
        f.check_unknown()
    except Invalid as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    return Scenario(catalog, actions, until)


def load_scenario(path: str | Path) -> Scenario:
    file = Path(path)
    return parse_scenario(read_document(file), str(file))
