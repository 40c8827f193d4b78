"""Reading a scenario file (REPLAY.md): YAML or JSON, numbers as exact decimals.

A malformed scenario raises ``ScenarioError`` whose one-line message says what is wrong
and where (the file, and the field path or the YAML line).
"""

from __future__ import annotations

import json
import re
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
# Others than these and OPTIONAL are ignored, with a warning.
REQUIRED = {
    "subscribe": ("id", "customer", "plan", "start"),
    "cancel": ("subscription",),
    "uncancel": ("subscription",),
    "set_draft_invoices": ("customer", "value"),
    "release": ("subscription", "boundary"),
    "regenerate": ("subscription", "boundary"),
}
OPTIONAL = {"subscribe": ("discount",)}


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


MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64  # nesting of mappings and lists: a catalog needs 6
_LONG_INT = 300  # longer digit strings are read as Decimal (int() of them is quadratic)


class _ExactLoader(yaml.SafeLoader):
    """YAML for catalogs and scenarios, read safely from any file:

    - numbers are exact decimals from their text; only plain decimal spellings are numbers
      (``0x1F``, ``1_000``, ``1:30`` stay strings, which the fields then refuse), and no
      implicit dates or timestamps (an unquoted 2026-03-01 stays the string the engine
      validates);
    - aliases (``*name``) are refused, so a few hundred bytes cannot expand into gigabytes
      ("billion laughs"); nesting deeper than MAX_DEPTH is refused;
    - a key repeated in a mapping is an error, not a silent overwrite."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nests deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | Decimal:
    text = str(loader.construct_scalar(node)).lstrip("+")
    return int(text) if len(text) <= _LONG_INT else Decimal(text)


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).lower()
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    return Decimal(special.get(text, text.lstrip("+")))


_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_ExactLoader.add_constructor("tag:yaml.org,2002:int", _int)
_ExactLoader.add_constructor("tag:yaml.org,2002:float", _decimal)
_ExactLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int",
                           "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "-+0123456789.":
    _ExactLoader.yaml_implicit_resolvers.setdefault(_first, [])
    _ExactLoader.yaml_implicit_resolvers[_first] += [("tag:yaml.org,2002:int", _INT),
                                                     ("tag:yaml.org,2002:float", _FLOAT)]


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _json_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _LONG_INT else Decimal(text)


def read_document(path: Path) -> Any:
    """The parsed file — YAML (the default) or JSON (``.json``) — or a ``ScenarioError``
    whose one line names the file and what is wrong, in bounded time and memory."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(f"{path}: is {size:,} bytes; at most "
                                f"{MAX_FILE_BYTES // (1024 * 1024)} MiB are read")
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                            f"offset {exc.start})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, parse_float=Decimal, parse_int=_json_int,
                              object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise ScenarioError(
                f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
            ) from None
        except RecursionError:
            raise ScenarioError(f"{path}: invalid JSON: nests too deep") from None
        except ValueError as exc:
            raise ScenarioError(f"{path}: invalid JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=_ExactLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(f"{path}: {where}invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: invalid YAML: nests too deep") from None


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
    for name in OPTIONAL.get(kind, ()):
        p.raw(name)
    p.check_unknown()  # an unknown parameter is ignored, with a warning
    known = (*REQUIRED[kind], *OPTIONAL.get(kind, ()))
    return Action(at, kind, {k: v for k, v in params.items() if k in known}, index)


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
