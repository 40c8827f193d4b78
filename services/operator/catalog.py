"""The catalog as operators apply, compare and list it (``billing catalog``, replays)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.catalog import Catalog, Customer, Entity, Meter, parse_catalog
from persistence import catalog as catalog_repo
from persistence.db import unit_of_work
from persistence.tables import PlanVersionRow
from services import catalog as catalog_service


def parse(document: dict[str, Any]) -> Catalog:
    """A catalog document parsed against the stored catalog (``Invalid`` when refused)."""
    with unit_of_work() as session:
        return parse_catalog(document, known=catalog_repo.stored(session))


def apply(catalog: Catalog, now: datetime) -> catalog_service.CatalogDiff:
    """Apply a parsed catalog (``CatalogRefused`` when a change is refused)."""
    with unit_of_work() as session:
        return catalog_service.apply(session, catalog, now)


def diff(catalog: Catalog) -> catalog_service.CatalogDiff:
    """What ``apply`` would change, without changing it."""
    with unit_of_work() as session:
        return catalog_service.diff(session, catalog)


@dataclass(frozen=True)
class Stored:
    entities: list[Entity]
    meters: dict[str, Meter]
    versions: list[PlanVersionRow]
    on_version: dict[tuple[str, int], int]  # subscriptions per plan version
    customers: dict[str, Customer]


def stored() -> Stored:
    """The stored catalog: entities, meters, every plan version with its subscriptions,
    customers."""
    with unit_of_work() as session:
        return Stored(catalog_repo.entities(session), catalog_repo.meters(session),
                      catalog_repo.plan_versions(session),
                      catalog_repo.subscriptions_per_version(session),
                      catalog_repo.customers(session))
