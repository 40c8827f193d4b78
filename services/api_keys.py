"""API keys of the HTTP API: created with a name, shown once, kept only as a SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from domain.validation import Invalid, check_text
from persistence import api_keys as api_keys_repo
from persistence.db import unit_of_work
from persistence.tables import ApiKeyRow

PREFIX = "bk_"


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def _view(row: ApiKeyRow) -> ApiKey:
    assert row.id is not None
    return ApiKey(row.id, row.name, row.prefix, row.created_at, row.revoked_at,
                  row.last_used_at)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create(name: str, now: datetime) -> tuple[ApiKey, str]:
    """A new key named ``name``; the key itself is returned here only."""
    name = name.strip()
    if not name or len(name) > 255:
        raise Invalid("name", "must be 1 to 255 characters")
    check_text(name, "name")
    key = PREFIX + secrets.token_urlsafe(32)
    exists = Invalid("name", f"an API key named {name!r} exists")
    try:
        with unit_of_work() as session:
            if api_keys_repo.by_name(session, name) is not None:
                raise exists
            row = ApiKeyRow(name=name, prefix=key[:10], key_hash=digest(key), created_at=now)
            api_keys_repo.add(session, row)  # one of that name made at the same time: raises
            return _view(row), key
    except IntegrityError:
        raise exists from None


def verify(key: str, now: datetime) -> ApiKey | None:
    """The key's record if it is one and not revoked."""
    if not key.startswith(PREFIX) or len(key) > 200:
        return None
    with unit_of_work() as session:
        row = api_keys_repo.by_hash(session, digest(key))
        if row is None or row.revoked_at is not None:
            return None
        if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
            row.last_used_at = now  # at most once a minute: not a write per request
        return _view(row)


def listing() -> list[ApiKey]:
    with unit_of_work() as session:
        return [_view(r) for r in api_keys_repo.all_keys(session)]


def revoke(name_or_id: str, now: datetime) -> ApiKey | None:
    with unit_of_work() as session:
        row = api_keys_repo.by_name(session, name_or_id)
        if row is None and name_or_id.isascii() and name_or_id.isdigit() \
                and int(name_or_id) < 2**31:
            row = api_keys_repo.by_id(session, int(name_or_id))
        if row is None:
            return None
        api_keys_repo.revoke(session, row, now)
        return _view(row)
