"""Telling an outage from a bug."""

from __future__ import annotations


def is_infrastructure(exc: BaseException) -> bool:
    """An outage rather than a bug: the database or the broker is unreachable or dropped
    the connection. A message that meets one is retried for as long as the outage lasts;
    any other error is a bug of the message (retried a few times, then a dead letter)."""
    import psycopg
    import redis
    from sqlalchemy import exc as sa

    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.OperationalError | sa.InterfaceError):
            return True
        exc = exc.orig or exc
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError
                      | redis.ConnectionError | redis.TimeoutError | ConnectionError
                      | sa.TimeoutError | sa.DisconnectionError | TimeoutError)
