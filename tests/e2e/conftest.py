"""Fixtures of the real-process tests (a database, a Redis namespace, Procfile processes),
shared by the crash-recovery and delivery-kill tests."""

from tests.e2e.test_crash_recovery import (  # noqa: F401
    broker,
    database,
    namespace,
    processes,
    sql,
)
