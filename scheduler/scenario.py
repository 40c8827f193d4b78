"""Reading a scenario file (REPLAY.md): YAML or JSON, numbers as exact decimals.

A malformed scenario raises ``ScenarioError`` whose one-line message says what is wrong
and where (the file, and the field path or the YAML line).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
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
           "regenerate", "grant_credits", "void_credits", "change_plan", "create_alert",
           "delete_alert")
# The parameters an action needs to be sent at all; their values are the engine's to judge.
# Others than these and OPTIONAL are ignored, with a warning.
REQUIRED = {
    "subscribe": ("id", "customer", "plan", "start"),
    "cancel": ("subscription",),
    "uncancel": ("subscription",),
    "set_draft_invoices": ("customer", "value"),
    "release": ("subscription", "boundary"),
    "regenerate": ("subscription", "boundary"),
    "grant_credits": ("id", "customer", "currency", "amount"),
    "void_credits": ("grant",),
    "change_plan": ("subscription", "plan", "from"),
    # the project's own (docs/scenarios.md): not in the shared format
    "create_alert": ("id", "customer", "kind", "thresholds"),
    "delete_alert": ("alert",),
}
OPTIONAL = {"subscribe": ("discount",), "grant_credits": ("expires_at", "priority"),
            "create_alert": ("subscription", "meter", "currency", "recurring_step")}
LISTS = ("thresholds",)  # parameters that are lists (their items are the engine's to judge)
NUMBERS = ("amount",)  # parameters that may be written as numbers too (exact decimals)


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
# Values (scalars, lists, mappings) in a YAML file: reading YAML costs about 15 µs a value
# even with libyaml (2 s per MB of a usage timeline; the 2-year benchmark scenario has
# 24,000), so a larger file is refused in a few seconds instead of read for minutes. JSON,
# read in C, has no such bound.
MAX_YAML_VALUES = 250_000
# A JSON file's commas, brackets and braces (at least its values but one): a file of tiny
# values is refused at once instead of taking tens of seconds and gigabytes to build. A
# usage timeline of MAX_FILE_BYTES has about 4 million.
MAX_JSON_VALUES = 5_000_000
_LONG_INT = 300  # longer digit strings are read as Decimal (int() of them is quadratic)


class _ExactLoader(yaml.SafeLoader):
    """YAML for catalogs and scenarios, read safely from any file:

    - numbers are exact decimals from their text; only plain decimal spellings are numbers
      (``0x1F``, ``1_000``, ``1:30`` stay strings, which the fields then refuse), and no
      implicit dates or timestamps (an unquoted 2026-03-01 stays the string the engine
      validates);
    - aliases (``*name``) are refused, so a few hundred bytes cannot expand into gigabytes
      ("billion laughs"); nesting deeper than MAX_DEPTH and more than MAX_YAML_VALUES
      values are refused;
    - a key repeated in a mapping is an error, not a silent overwrite;
    - an explicit tag is held to the same rules (``!!int 0x1F`` and ``!!float abc`` are
      errors, ``!!timestamp`` gives its text for the field to validate, so a nanosecond
      instant is never cut), and a value a tag cannot construct is an error at its line."""

    depth = 0
    values = 0

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, ArithmeticError, LookupError, TypeError) as exc:
            what = describe(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {what} as {node.tag}: {type(exc).__name__}",
                node.start_mark) from None

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        self.values += 1
        if self.values > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"has more than {MAX_YAML_VALUES:,} values: write a file this "
                            "large as JSON", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
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
        if not isinstance(node, yaml.MappingNode):  # e.g. `!!set x`: the base class says so
            return super().construct_mapping(node, deep)
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


if yaml.__with_libyaml__:
    from yaml._yaml import CParser  # libyaml

    class _FastLoader(CParser, _ExactLoader):
        """``_ExactLoader`` with libyaml scanning and parsing the text into events (three
        to five times faster); composing, with its checks, and constructing stay its own."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

        check_node = yaml.composer.Composer.check_node
        get_node = yaml.composer.Composer.get_node
        get_single_node = yaml.composer.Composer.get_single_node

    _LOADER: type[_ExactLoader] = _FastLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _LOADER = _ExactLoader


_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


def _plain(node: yaml.ScalarNode, text: str, pattern: re.Pattern[str], what: str) -> str:
    """``text`` when it is a plain decimal ``what`` (an explicit ``!!int`` or ``!!float``
    tag does not make ``0x1F``, ``1_000`` or ``abc`` one)."""
    if not pattern.fullmatch(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"{describe(text)} is not a plain decimal {what}", node.start_mark)
    return text


def _int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | Decimal:
    text = _plain(node, str(loader.construct_scalar(node)), _INT, "integer").lstrip("+")
    return int(text) if len(text) <= _LONG_INT else Decimal(text)


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = _plain(node, str(loader.construct_scalar(node)), _FLOAT, "number").lower()
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    return Decimal(special.get(text, text.lstrip("+")))


def _timestamp_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_ExactLoader.add_constructor("tag:yaml.org,2002:int", _int)
_ExactLoader.add_constructor("tag:yaml.org,2002:float", _decimal)
_ExactLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_text)
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


def _too_deep(document: Any) -> bool:
    """Whether lists and mappings nest deeper than MAX_DEPTH (walked level by level,
    without recursion)."""
    level = [document] if type(document) in (dict, list) else []
    for _ in range(MAX_DEPTH):
        deeper: list[Any] = []
        for value in level:
            children = value.values() if type(value) is dict else value
            deeper += [v for v in children if type(v) is list or type(v) is dict]
        if not deeper:
            return False
        level = deeper
    return True


@contextmanager
def _no_gc() -> Iterator[None]:
    """No garbage collection while a parser builds millions of objects that all stay alive
    (collecting then only costs time: five times the parsing's, for a file of lists)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_bytes(path: Path) -> bytes:
    """At most MAX_FILE_BYTES of the file, or a ``ScenarioError`` (also for a device or a
    pipe that never ends, whose size says nothing)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(f"{path}: is {size:,} bytes; at most "
                                f"{MAX_FILE_BYTES // (1024 * 1024)} MiB are read")
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: is more than {MAX_FILE_BYTES // (1024 * 1024)} MiB; "
                            "at most that is read")
    return data


def read_document(path: Path) -> Any:
    """The parsed file — YAML (the default) or JSON (``.json``) — or a ``ScenarioError``
    whose one line names the file and what is wrong, in bounded time and memory."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a leading BOM is no content
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(f"{path}: line {line}: is not UTF-8 text (byte "
                            f"0x{data[exc.start]:02x} at offset {exc.start})") from None
    if path.suffix.lower() == ".json":
        values = text.count(",") + text.count("[") + text.count("{")
        if values > MAX_JSON_VALUES:
            raise ScenarioError(f"{path}: has more than {MAX_JSON_VALUES:,} values (counting "
                                "its commas, brackets and braces)")
        try:
            with _no_gc():
                document = json.loads(text, parse_float=Decimal, parse_int=_json_int,
                                      object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise ScenarioError(
                f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
            ) from None
        except RecursionError:
            raise ScenarioError(f"{path}: invalid JSON: nests too deep") from None
        except ValueError as exc:
            raise ScenarioError(f"{path}: invalid JSON: {exc}") from None
        if _too_deep(document):
            raise ScenarioError(f"{path}: invalid JSON: nests deeper than {MAX_DEPTH} levels")
        return document
    try:
        with _no_gc():
            return yaml.load(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "malformed").split())
        raise ScenarioError(f"{path}: {where}invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        # the position is in the text (Python's reader) or in its UTF-8 bytes (libyaml's)
        before = (text[:exc.position] if _LOADER is _ExactLoader else
                  text.encode("utf-8", "surrogatepass")[:exc.position].decode("utf-8", "replace"))
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise ScenarioError(f"{path}: line {line}, column {column}: invalid YAML: "
                            f"{exc.reason}: #x{exc.character:04x}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ScenarioError(f"{path}: invalid YAML: nests too deep") from None
    except (ValueError, ArithmeticError, LookupError, TypeError) as exc:  # a tag's constructor
        raise ScenarioError(f"{path}: invalid YAML: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]}") from None


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
        elif name in LISTS:
            if not isinstance(value, list):
                p.fail(name, f"must be a list, got {describe(value)}")
        elif name in NUMBERS:
            if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
                p.fail(name, f"must be a decimal number, got {describe(value)}")
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
            {k: document[k] for k in ("taxes", "entities", "meters", "plans", "customers")
             if k in document}
        )
        f = Fields(document, "")
        for name in ("taxes", "entities", "meters", "plans", "customers"):
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
