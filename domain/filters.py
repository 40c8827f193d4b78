"""Pricing by dimension (SPEC §13): a usage charge's filters, and the group of an event.

A filter is a group of a meter's events with a price of its own: ``match`` names
properties and the string values they may have. An event belongs to the matching filter
with the most names in ``match`` (ties: the one listed first), or, when none matches, to
the charge's default group. Each group is aggregated and priced on its own.

``group_of`` is the rule; ``persistence.usage`` writes the same rule as one SQL ``CASE``
(the clauses in ``ranked`` order), so the aggregation stays in the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from domain.validation import Invalid, describe

if TYPE_CHECKING:
    from domain.catalog import UsageCharge

DEFAULT_GROUP = ""  # the group of the events no filter matches (``filter: null``)
FILTER_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

Match = tuple[tuple[str, tuple[str, ...]], ...]  # (property name, values), sorted by name


@dataclass(frozen=True)
class Filter:
    id: str
    match: Match
    pricing: UsageCharge  # its model and parameters; its id is the filter's

    def matches(self, properties: Mapping[str, Any] | None) -> bool:
        """Every name in ``match`` holds a string equal to one of its values."""
        props = properties or {}
        return all(isinstance(props.get(name), str) and props[name] in values
                   for name, values in self.match)


def ranked(filters: Sequence[Filter]) -> list[Filter]:
    """The filters in the order an event tries them: most names first, then as listed."""
    order = {f.id: i for i, f in enumerate(filters)}
    return sorted(filters, key=lambda f: (-len(f.match), order[f.id]))


def group_of(properties: Mapping[str, Any] | None, filters: Sequence[Filter]) -> str:
    """The group of an event with these properties: a filter's id, or DEFAULT_GROUP."""
    for f in ranked(filters):
        if f.matches(properties):
            return f.id
    return DEFAULT_GROUP


def parse_match(value: Any, path: str) -> Match:
    """``{name: [string, …]}``: a non-empty mapping of non-empty lists of strings."""
    if not isinstance(value, Mapping) or not value:
        raise Invalid(path, f"must be a non-empty mapping of property names to lists of "
                            f"strings, got {describe(value)}")
    result = []
    for name, values in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not name:
            raise Invalid(path, f"property names must be non-empty strings, got "
                                f"{describe(name)}")
        if not isinstance(values, list) or not values:
            raise Invalid(where, f"must be a non-empty list of strings, got {describe(values)}")
        for index, item in enumerate(values):
            if not isinstance(item, str):
                raise Invalid(f"{where}[{index}]", f"must be a string (only string property "
                                                   f"values match), got {describe(item)}")
        result.append((name, tuple(sorted(set(values)))))
    return tuple(sorted(result))


def check_filters(filters: Sequence[Filter], paths: Sequence[str]) -> None:
    """Ids unique within the charge; no two filters with the same ``match``."""
    seen_ids: set[str] = set()
    seen_matches: dict[Match, str] = {}
    for f, path in zip(filters, paths, strict=True):
        if f.id in seen_ids:
            raise Invalid(f"{path}.id", f"duplicate filter id {f.id!r}")
        seen_ids.add(f.id)
        if f.match in seen_matches:
            raise Invalid(f"{path}.match", f"the same match as filter {seen_matches[f.match]!r}")
        seen_matches[f.match] = f.id


def match_to_dict(match: Match) -> dict[str, list[str]]:
    return {name: list(values) for name, values in match}
