"""Shared fixtures: stores (SQLite, PostgreSQL), brokers (in-process, fakeredis, Redis) and
the PostgreSQL + Redis tier switch.

The PostgreSQL + Redis tier runs when both servers answer at
``BILLING_TEST_DATABASE_URL`` / ``BILLING_TEST_REDIS_URL`` (defaults: this machine's
127.0.0.1 servers). When they do not, those tests are skipped and the run says so — unless
``BILLING_REQUIRE_SERVICES=1`` (set by CI), where a missing server fails the run instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq import Worker

from persistence import db
from services import clock
from services.settings import settings
from workers.broker import (
    FailureRecorder,
    InFlight,
    delete_namespace,
    join,
    rabbitmq_broker,
    redis_broker,
    stub_broker,
    track,
    use,
)

PG_URL = os.environ.get("BILLING_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BILLING_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("BILLING_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REQUIRE_SERVICES = os.environ.get("BILLING_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parents[1]
# The shared conformance scenarios live beside a checkout (``../shared/scenarios``) or
# wherever BILLING_SHARED_SCENARIOS points; a clone on its own has none, and their tier is
# skipped with that reason.
SHARED_SCENARIOS = Path(os.environ.get("BILLING_SHARED_SCENARIOS",
                                       ROOT.parent / "shared" / "scenarios"))
SHARED_MISSING = f"the shared conformance scenarios are not here ({SHARED_SCENARIOS})"


@cache
def services_problem() -> str | None:
    """Why the PostgreSQL + Redis tier cannot run here, or None when it can."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} is unreachable ({type(exc).__name__})"
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} is unreachable ({type(exc).__name__})"
    return None


@cache
def rabbitmq_problem() -> str | None:
    """Why the RabbitMQ tier cannot run here, or None when it can: a broker that answers at
    BILLING_TEST_RABBITMQ_URL and ``rabbitmqctl`` to give each test run a vhost of its own."""
    try:
        import pika

        pika.BlockingConnection(pika.URLParameters(
            RABBITMQ_URL + "?socket_timeout=3&connection_attempts=1")).close()
    except Exception as exc:
        return f"RabbitMQ at {RABBITMQ_URL} is unreachable ({type(exc).__name__})"
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed (each test run needs a vhost of its own)"
    return None


def _require(tier: str, problem: str | None) -> None:
    """Run on, or skip with the reason — or, in CI (BILLING_REQUIRE_SERVICES=1), fail."""
    if problem is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{tier} tier required (BILLING_REQUIRE_SERVICES=1): {problem}")
    pytest.skip(f"{tier} tier skipped: {problem}")


def require_rabbitmq() -> None:
    _require("RabbitMQ", rabbitmq_problem())


CHROMIUM = os.environ.get("BILLING_TEST_CHROMIUM", "/usr/bin/chromium")


@cache
def browser_problem() -> str | None:
    """Why the browser tier (Playwright driving headless Chromium) cannot run here."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is not at {CHROMIUM} (apt install chromium)"
    return None


def require_browser() -> None:
    _require("browser", browser_problem())


def require_services() -> None:
    _require("PostgreSQL + Redis", services_problem())


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for tier, problem, where in (
            ("PostgreSQL + Redis", services_problem(), f"{PG_URL}, {REDIS_URL}"),
            ("RabbitMQ", rabbitmq_problem(), RABBITMQ_URL),
            ("browser", browser_problem(), CHROMIUM)):
        if problem is None:
            lines.append(f"{tier} tier: ON ({where})")
        elif REQUIRE_SERVICES:
            lines.append(f"{tier} tier: REQUIRED but unavailable: {problem}")
        else:
            lines.append(f"{tier} tier: SKIPPED — {problem}")
    return lines


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        for tier in ("unit", "integration", "e2e"):
            if f"{os.sep}tests{os.sep}{tier}{os.sep}" in path:
                item.add_marker(getattr(pytest.mark, tier))
        if {"pg_store", "pool"} & set(getattr(item, "fixturenames", ())) \
                and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)  # so that `-m "not postgres"` leaves it out
        if _expected_seconds(item) >= 10:
            item.add_marker(pytest.mark.slow)
        module = item.path.name
        if module in ONE_WORKER:  # its module-scoped fixtures are made once
            item.add_marker(pytest.mark.xdist_group(module.removesuffix(".py")))
    # The longest first, so that a parallel run starts them at once on different workers
    # instead of ending on one of them; every other test keeps its place.
    items.sort(key=lambda item: -_expected_seconds(item))


# --------------------------------------------------------------------------- parallel runs
# The README's test command runs the suite with pytest-xdist (``-n auto --dist loadgroup``).
# Every test already works in a store, Redis namespace, vhost, folder and ports of its own;
# these only make the run short.

# The slowest tests, by node id prefix, with the seconds they took in a parallel run here
# (2026-12-06, on a loaded machine: docs/performance.md, "Test suite"). They start first,
# longest first, so that the run does not end waiting on one of them. Those that take ten
# seconds or more are also marked ``slow``: the inner loop (README, "Tests") leaves them out.
SLOW: dict[str, float] = {
    "tests/e2e/test_crash_recovery.py::": 240,
    "tests/e2e/test_crash_rabbitmq.py::": 230,
    "tests/e2e/test_operator_errors.py::": 200,  # one worker runs them all (ONE_WORKER)
    "tests/e2e/test_operator_cli.py::test_operator_flow": 170,
    "tests/e2e/test_operator_cli.py::test_customers_subscriptions": 160,
    "tests/integration/test_subscription_state_machine.py::TestSubscriptions": 110,
    "tests/integration/test_late_usage_invariant.py::": 100,
    "tests/e2e/test_portal_browser.py::": 95,  # one worker runs them all (ONE_WORKER)
    "tests/integration/test_catalog_changes.py::": 50,
    "tests/e2e/test_payments_cli.py::": 50,
    "tests/e2e/test_invoice_documents_browser.py::": 15,
    "tests/e2e/test_cli.py::test_the_demo_leaves": 58,
    "tests/e2e/test_operator_cli.py::": 57,
    "tests/e2e/test_cli.py::test_demo_prints": 50,
    "tests/e2e/test_web_process.py::": 47,
    "tests/integration/test_concurrent_commands.py::": 45,
    "tests/e2e/test_outage.py::": 42,
    "tests/e2e/test_procfile.py::": 40,
    "tests/e2e/test_fold_cli.py::": 38,
    "tests/unit/test_run_times.py::test_midnights": 37,
    "tests/unit/test_fuzz.py::test_ingest_stores_any_batch": 36,
    "tests/e2e/test_scenarios.py::test_replay_on_postgres_and": 30,
    "tests/integration/test_rollups.py::test_the_rollups_give": 29,
    "tests/unit/test_run_times.py::test_the_wall_clock": 28,
    "tests/e2e/test_dead_letter_sweep.py::": 26,
    "tests/e2e/test_delivery_kill.py::": 25,
    "tests/unit/test_usage_fast_path.py::test_fast_path_agrees": 19,
    "tests/unit/test_delivery_render.py::test_the_english_fast_path": 17,
    "tests/unit/test_fuzz.py::test_validate_event_takes_any_json": 11,
    "tests/unit/test_usage_body.py::test_parse_agrees": 11,
    "tests/unit/test_messages.py::test_every_actor_message": 11,
}
# Modules whose module-scoped fixtures are costly (a live database and two batches of
# commands, a browser and a web process): all of their tests run on one worker.
ONE_WORKER = {"test_operator_errors.py", "test_portal_browser.py", "test_http_schema.py"}


def _expected_seconds(item: pytest.Item) -> float:
    """The longest match wins (a test named on its own, else its module)."""
    nodeid = item.nodeid
    found = [(len(prefix), s) for prefix, s in SLOW.items() if nodeid.startswith(prefix)]
    return max(found)[1] if found else 0.0


TIERS = ("unit", "integration", "e2e", "postgres", "rabbitmq", "browser")
_tier_times: dict[str, list[float]] = {}  # tier -> [tests run, seconds, first, last]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each tier's time (in the main process, also of a parallel run's workers)."""
    for tier in TIERS:
        if tier in report.keywords:
            times = _tier_times.setdefault(tier, [0, 0.0, report.start, report.stop])
            times[0] += report.when == "call" and not report.skipped
            times[1] += report.duration
            times[2] = min(times[2], report.start)
            times[3] = max(times[3], report.stop)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Each tier's tests, the time spent in them, and the wall time from its first test's
    start to its last test's end (tiers overlap in a parallel run; the server tiers are
    also counted in unit / integration / e2e)."""
    if not _tier_times:
        return
    terminalreporter.section("time per tier")
    for tier in TIERS:
        if tier in _tier_times:
            tests, seconds, first, last = _tier_times[tier]
            terminalreporter.write_line(
                f"{tier:<12} {int(tests):>5} tests run  {seconds:8.1f} s in tests  "
                f"{last - first:7.1f} s from first start to last end")


def pytest_configure(config: pytest.Config) -> None:
    """A pytest-xdist worker runs with ``COLUMNS=80`` and ``LINES=24`` in its environment;
    the CLI commands the tests start would inherit them and squeeze their tables to 80
    columns, where a run of pytest alone lets them see a pipe (cli/common.py). Every child
    sees the same environment in either run."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """In a pytest-xdist worker with ``--dist loadgroup``: every test marked ``xdist_group``
    must carry its group in its node id, or the groups did not take and each worker would
    make the costly module fixtures again (pytest 9.2 broke this silently:
    pytest-xdist#1386; pyproject.toml keeps pytest below it)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        why = (f"--dist loadgroup is not grouping ({len(lost)} tests, e.g. {lost[0]}): "
               "pytest-xdist#1386; install pytest below 9.2 (pyproject.toml's dev extras)")
        print(why, file=sys.__stderr__, flush=True)  # a worker's exception may not reach us
        raise pytest.UsageError(why)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three workers for every two cores (at least two, at most eight). The
    suite waits on servers and processes for part of its time (outages, kill -9, drains,
    the browser): on a 2-core machine alone, three workers ran all 1,447 tests in 10 min
    57 s where two had taken 11 min 3 s for 1,407 (docs/performance.md, "Test suite",
    2026-12-07). The tests that bound a command's time bound its CPU time, which more
    workers do not stretch (test_hostile_files, test_fuzz)."""
    cores = os.cpu_count() or 1
    return max(2, min(8, cores + cores // 2))


@pytest.fixture(autouse=True)
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Deliveries of every test (in process or in a subprocess) go to its own folder."""
    from services import deliveries

    folder = tmp_path / "outbox"
    monkeypatch.setenv("BILLING_OUTBOX_DIR", str(folder))
    deliveries.use_outbox(folder)
    yield folder
    deliveries.use_outbox(None)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    db.configure(url)
    db.create_schema()
    yield url
    db.engine().dispose()


@pytest.fixture
def pg_store() -> Iterator[str]:
    require_services()
    db.configure(PG_URL, schema=f"test_{uuid.uuid4().hex[:12]}")
    db.create_schema()
    yield PG_URL
    db.drop_private_schema()
    db.engine().dispose()


def flush_redis_namespace(namespace: str) -> None:
    delete_namespace(REDIS_URL, namespace)


@dataclass
class Runtime:
    """A store, a broker and one worker thread, on a simulated clock."""

    name: str
    broker: dramatiq.Broker
    worker: Worker
    clock: clock.SimulatedClock
    failures: FailureRecorder
    inflight: InFlight

    def drain(self) -> None:
        join(self.broker, [self.worker], self.inflight)
        assert not self.failures.failures, self.failures.failures

    def at(self, when: str) -> None:
        self.clock.set(datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(UTC))

    def deliver(self, message: Any) -> None:
        """Enqueue an exact message (same message id) and process it."""
        self.broker.enqueue(message)
        self.drain()


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of this test run (guest may use it); deleted at the end."""
    require_rabbitmq()
    vhost = f"billing-test-{uuid.uuid4().hex[:10]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   check=True, capture_output=True)
    try:
        yield RABBITMQ_URL.rstrip("/") + "/" + vhost
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)


def rabbitmq_test_broker(url: str) -> dramatiq.Broker:
    broker = rabbitmq_broker(settings(), url=url, max_retries=0)
    broker.flush_all()  # type: ignore[attr-defined]
    return broker


RUNTIMES = [
    "sqlite+stub",
    "sqlite+fakeredis",
    pytest.param("postgres+redis", marks=pytest.mark.postgres),
    pytest.param("postgres+rabbitmq", marks=[pytest.mark.postgres, pytest.mark.rabbitmq]),
]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    name: str = request.param
    namespace = None
    if name.startswith("postgres"):
        request.getfixturevalue("pg_store")
    else:
        request.getfixturevalue("sqlite_store")
    if name.endswith("+stub"):
        broker: dramatiq.Broker = stub_broker(max_retries=0)
    elif name.endswith("+rabbitmq"):
        broker = rabbitmq_test_broker(request.getfixturevalue("rabbitmq_vhost"))
    elif name.endswith("+fakeredis"):
        import fakeredis

        broker = redis_broker(settings(), client=fakeredis.FakeRedis(), max_retries=0,
                              namespace=f"billing-test-{uuid.uuid4().hex[:8]}")
    else:
        namespace = f"billing-test-{uuid.uuid4().hex[:8]}"
        broker = redis_broker(settings(), url=REDIS_URL, namespace=namespace, max_retries=0)
    use(broker)
    failures = FailureRecorder()
    broker.add_middleware(failures)
    inflight = track(broker)  # the test sends every message from this process
    sim = clock.SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.use(sim)
    worker = Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        yield Runtime(name, broker, worker, sim, failures, inflight)
    finally:
        worker.stop()
        broker.close()
        clock.reset()
        if namespace:
            flush_redis_namespace(namespace)


@dataclass
class Pool:
    """PostgreSQL + Redis and a worker with many threads: real concurrency, as in the
    Procfile's worker (processes × threads), on a simulated clock."""

    broker: dramatiq.Broker
    workers: list[Worker]
    clock: clock.SimulatedClock
    failures: FailureRecorder
    inflight: InFlight

    def drain(self) -> None:
        join(self.broker, self.workers, self.inflight)
        assert not self.failures.failures, self.failures.failures[:3]

    def at(self, when: str) -> None:
        self.clock.set(datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(UTC))


@pytest.fixture
def pool(pg_store: str) -> Iterator[Pool]:
    """Two workers of eight threads each (like ``--processes 2 --threads 8``) consuming from
    a Redis namespace of their own, against a PostgreSQL schema of its own."""
    namespace = f"billing-test-{uuid.uuid4().hex[:8]}"
    broker = redis_broker(settings(), url=REDIS_URL, namespace=namespace, max_retries=0)
    use(broker)
    failures = FailureRecorder()
    broker.add_middleware(failures)
    inflight = track(broker)  # the test sends every message from this process
    sim = clock.SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.use(sim)
    workers = [Worker(broker, worker_threads=8, worker_timeout=20) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        yield Pool(broker, workers, sim, failures, inflight)
    finally:
        for worker in workers:
            worker.stop()
        broker.close()
        clock.reset()
        flush_redis_namespace(namespace)
