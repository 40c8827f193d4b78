"""Operator commands facing a bad environment or a bad command line (issue #9, items 9, 10).

Proven here, by running ``billing`` as an operator does:

- every command that uses the database exits non-zero with one line on standard error,
  never a traceback, when the database is unreachable, refuses the connection
  (``role "billing" does not exist``, from the README's example URL) or is not migrated
  (an empty SQLite file, a fresh PostgreSQL database: the line says to run
  ``billing db upgrade``);
- so do: a broker that is down, ids of 2³¹ and more, ``--limit`` out of range, an invoice
  reference ``²``, ``preview --at`` in year 9999, an ``--out`` file in a missing folder,
  and ``--status bogus`` (an error, not an empty list);
- ``deliveries list`` and ``deliveries retry`` never print a webhook URL's
  ``user:password@`` or ``?token=`` value (they show ``***``); a webhook URL with a user
  or password is refused by ``catalog apply`` and, as the deployment default, fails its
  deliveries permanently ("refused: … user or password") instead of retrying them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import cli_process
from tests.conftest import PG_URL, services_problem

BILLING = [sys.executable, "-m", "cli"]
CATALOG = """
entities: [{id: acme-eu, timezone: Europe/Oslo, invoice_prefix: EU}]
meters: [{id: tokens, aggregation: sum}]
plans:
  - id: pro
    currency: EUR
    interval: month
    charges:
      - {id: base, type: recurring, amount: "49.00"}
      - {id: tokens, type: usage, meter: tokens, model: unit, unit_price: "0.01"}
customers:
  - {id: c-1, entity: acme-eu}
  - {id: c-2, entity: acme-eu, draft_invoices: true}
"""
SCENARIO = """
entities: [{id: e, timezone: UTC}]
customers: [{id: c, entity: e}]
until: "2026-01-02T00:00:00Z"
"""
PASSWORD, TOKEN = "hunter2", "tok3n"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WITH_USER = f"https://user:{PASSWORD}@127.0.0.1:1/hook?token={TOKEN}"
WITH_TOKEN = f"https://127.0.0.1:1/hook?token={TOKEN}"
WIDE = 400


@dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        return (f"billing {' '.join(self.args)} → exit {self.returncode}\n"
                f"stderr: {self.stderr[-1500:]}\nstdout: {self.stdout[-500:]}")


def billing(env: dict[str, str], *args: str, columns: int = 80) -> Run:
    """The command, on a narrow terminal by default (a message that wraps shows as two
    lines); tables are read on a wide one (a folded cell could hide a secret's halves)."""
    done = cli_process.run(args, env={**env, "COLUMNS": str(columns)}, timeout=120)
    return Run(args, done.returncode, done.stdout, done.stderr)


# Runs many commands in one child: it imports the CLI once, then forks a process per
# command that runs it as `billing ARGS` would (its own stdout, stderr and exit status; an
# exception that escapes prints its traceback, as the interpreter does). Importing the CLI
# takes most of a command's second, and each matrix here runs fifteen commands.
MANY = r"""
import json, os, sys, traceback
from cli.main import app
commands, folder = json.loads(sys.argv[1]), sys.argv[2]
children = {}
for number, args in enumerate(commands):
    streams = [os.open(f"{folder}/{number}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
               for name in ("out", "err")]
    pid = os.fork()
    if pid == 0:
        os.dup2(streams[0], 1)
        os.dup2(streams[1], 2)
        sys.argv = ["billing", *args]
        try:
            app()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    for fd in streams:
        os.close(fd)
    children[pid] = number
    if len(children) >= 4:
        done, status = os.wait()
        print(json.dumps([children.pop(done), os.waitstatus_to_exitcode(status)]))
while children:
    done, status = os.wait()
    print(json.dumps([children.pop(done), os.waitstatus_to_exitcode(status)]))
"""


def billing_many(env: dict[str, str], todo: dict[str, tuple[str, ...]],
                 folder: Path) -> dict[str, Run]:
    """Each of ``todo``'s commands, run as by ``billing`` (see MANY), on a narrow terminal."""
    import json

    names = list(todo)
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", MANY, json.dumps([todo[n] for n in names]),
                           str(folder)], capture_output=True, text=True,
                          env={**env, "COLUMNS": "80"}, timeout=300)
    assert done.returncode == 0, done.stderr
    codes = dict(json.loads(line) for line in done.stdout.splitlines())
    return {name: Run(todo[name], codes[number],
                      (folder / f"{number}.out").read_text(errors="replace"),
                      (folder / f"{number}.err").read_text(errors="replace"))
            for number, name in enumerate(names)}


def one_line_error(run: Run, *says: str) -> str | None:
    """Why ``run`` is not a one-line error that says each of ``says`` (None when it is)."""
    if "Traceback" in run.stderr:
        return "a traceback"
    if run.returncode == 0:
        return "exit status 0"
    if len(run.lines) != 1:
        return f"{len(run.lines)} lines on stderr"
    missing = [s for s in says if s not in run.lines[0]]
    if missing:
        return f"the line does not say {missing}"
    if run.stdout:
        return "output on stdout"
    return None


def assert_one_line_error(run: Run, *says: str) -> None:
    problem = one_line_error(run, *says)
    assert problem is None, f"{problem}: {run}"


def ok(run: Run) -> Run:
    assert run.returncode == 0, str(run)
    return run


def environment(folder: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BILLING_") or k.startswith("BILLING_TEST")}
    return {**env, "BILLING_DATABASE_URL": url, "BILLING_OUTBOX_DIR": str(folder / "outbox"),
            **extra}


def webhook(url: str) -> dict[str, str]:
    """The deployment's default delivery: a webhook to ``url``."""
    return {"BILLING_DELIVERY_CHANNEL": "webhook", "BILLING_WEBHOOK_URL": url,
            "BILLING_WEBHOOK_SECRET": WEBHOOK_SECRET}


def build(folder: Path) -> dict[str, str]:
    """A small live database: the catalog, two subscriptions (one with drafts), an accepted
    and a rejected event, and the 1 February bill run, whose deliveries went to a webhook
    URL carrying a user and password — refused, so they failed."""
    from persistence import db
    from persistence.db import unit_of_work
    from services.subscriptions import do_subscribe
    from services.usage import ingest

    env = environment(folder, f"sqlite:///{folder / 'ops.db'}")
    ok(billing(env, "db", "upgrade"))
    (folder / "catalog.yaml").write_text(CATALOG)
    ok(billing(env, "catalog", "apply", str(folder / "catalog.yaml")))
    db.configure(env["BILLING_DATABASE_URL"])
    past = datetime(2026, 1, 1, tzinfo=UTC)
    with unit_of_work() as session:
        for sub, customer in (("s-1", "c-1"), ("s-2", "c-2")):
            assert do_subscribe(session, past, {"id": sub, "customer": customer, "plan": "pro",
                                                "start": "2026-01-01"}).status == "applied"
    with unit_of_work() as session:
        counts = ingest(session, [
            {"key": "e-1", "customer": "c-1", "meter": "tokens", "quantity": "150",
             "timestamp": "2026-01-10T10:00:00Z"},
            {"key": "e-2", "customer": "c-1", "meter": "tokens", "quantity": "-3",
             "timestamp": "2026-01-10T10:00:00Z"},
        ], datetime(2026, 1, 11, tzinfo=UTC), "m-1")
    assert counts["rejected"] == 1, counts
    db.engine().dispose()
    ok(billing({**env, **webhook(WITH_USER)}, "bill-run", "acme-eu", "--date", "2026-02-01"))
    return env


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a live database the tests only read."""
    return build(tmp_path_factory.mktemp("live"))


# --- every command, on a database it cannot use ---------------------------------------------

def commands(folder: Path) -> dict[str, tuple[str, ...]]:
    """Every command that uses the database (but `db upgrade`), with valid arguments."""
    (folder / "catalog.yaml").write_text(CATALOG)
    catalog = str(folder / "catalog.yaml")
    return {
        "catalog apply": ("catalog", "apply", catalog),
        "catalog diff": ("catalog", "diff", catalog),
        "catalog show": ("catalog", "show"),
        "invoices list": ("invoices", "list"),
        "invoices show": ("invoices", "show", "EU-000001"),
        "invoices release": ("invoices", "release", "s-2@2026-02-01"),
        "invoices regenerate": ("invoices", "regenerate", "s-2@2026-02-01"),
        "invoices preview": ("invoices", "preview", "s-1"),
        "usage rejected": ("usage", "rejected"),
        "usage resubmit": ("usage", "resubmit", "1"),
        "usage late": ("usage", "late"),
        "usage fold": ("usage", "fold"),
        "dead-letters list": ("dead-letters", "list"),
        "dead-letters requeue": ("dead-letters", "requeue"),
        "deliveries list": ("deliveries", "list"),
        "deliveries retry": ("deliveries", "retry"),
        "api-keys create": ("api-keys", "create", "backend-eu"),
        "api-keys list": ("api-keys", "list"),
        "api-keys revoke": ("api-keys", "revoke", "backend-eu"),
        "bill-run": ("bill-run", "acme-eu", "--date", "2026-02-01"),
        "customers list": ("customers", "list"),
        "customers show": ("customers", "show", "c-1"),
        "subscriptions list": ("subscriptions", "list"),
        "subscriptions show": ("subscriptions", "show", "s-1"),
        "usage conflicts": ("usage", "conflicts"),
        "portal link": ("portal", "link", "c-1"),
        "portal list": ("portal", "list"),
        "portal revoke": ("portal", "revoke", "--customer", "c-1"),
        "schedule": ("schedule",),
        "status": ("status",),
        "credits grant": ("credits", "grant", "c-1", "10.00", "EUR", "--id", "g-1"),
        "credits list": ("credits", "list"),
        "credits void": ("credits", "void", "g-1"),
        "credits balance": ("credits", "balance", "c-1"),
        "invoices pay": ("invoices", "pay", "EU-000001", "10.00", "EUR", "--date",
                         "2026-02-02"),
        "invoices void": ("invoices", "void", "EU-000001"),
        "invoices mark-uncollectible": ("invoices", "mark-uncollectible", "EU-000001"),
        "alerts create": ("alerts", "create", "a-1", "c-1", "usage_amount", "10.00"),
        "alerts list": ("alerts", "list"),
        "alerts delete": ("alerts", "delete", "a-1"),
        "alerts events": ("alerts", "events"),
        "subscriptions change-plan": ("subscriptions", "change-plan", "s-1", "pro", "--from",
                                      "2026-02-10"),
        "subscriptions create": ("subscriptions", "create", "s-9", "--customer", "c-1",
                                 "--plan", "pro", "--start", "2026-02-01"),
        "subscriptions cancel": ("subscriptions", "cancel", "s-1"),
        "subscriptions uncancel": ("subscriptions", "uncancel", "s-1"),
        "customers create": ("customers", "create", "c-9", "--entity", "acme-eu"),
        "customers update": ("customers", "update", "c-1", "--email", "ap@c1.example"),
    }


def test_the_matrix_has_every_command(tmp_path: Path) -> None:
    """Every command of `billing` is in the matrix below, but those that use no database
    (`replay`, `demo`) and `db upgrade` (which makes one)."""
    import typer.main

    from cli.main import app

    def leaves(command: object, path: tuple[str, ...] = ()) -> Iterator[str]:
        children = getattr(command, "commands", None)
        if not children:
            yield " ".join(path)
            return
        for name, child in children.items():
            yield from leaves(child, (*path, name))

    every = set(leaves(typer.main.get_command(app)))
    missing = every - set(commands(tmp_path)) - {"replay", "demo", "db upgrade"}
    assert not missing, f"add these commands to commands(): {sorted(missing)}"


def assert_every_command_fails_in_one_line(env: dict[str, str], folder: Path,
                                           *says: str, upgrade: bool) -> None:
    """Run every command and list those that misbehave."""
    todo = commands(folder)
    if upgrade:
        todo["db upgrade"] = ("db", "upgrade")
    runs = billing_many(env, todo, folder / "runs")
    wrong = {name: f"{problem}: {runs[name]}" for name in runs
             if (problem := one_line_error(runs[name], *says))}
    assert not wrong, "\n\n".join(f"{name}: {why}" for name, why in wrong.items())


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path, "postgresql://postgres@127.0.0.1:1/x")
    assert_every_command_fails_in_one_line(env, tmp_path, "cannot use the database",
                                           "127.0.0.1:1", upgrade=True)


def test_a_refusing_database_is_one_line(tmp_path: Path) -> None:
    if services_problem():
        pytest.skip(f"needs PostgreSQL at 127.0.0.1:5432: {services_problem()}")
    env = environment(tmp_path, "postgresql://billing@127.0.0.1:5432/billing")
    assert_every_command_fails_in_one_line(env, tmp_path, 'role "billing" does not exist',
                                           upgrade=True)


def test_an_empty_sqlite_file_says_to_upgrade(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    env = environment(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    assert_every_command_fails_in_one_line(env, tmp_path, "run `billing db upgrade`",
                                           upgrade=False)


def test_a_missing_sqlite_file_says_to_upgrade_and_is_not_created(tmp_path: Path) -> None:
    env = environment(tmp_path, f"sqlite:///{tmp_path / 'missing.db'}")
    assert_every_command_fails_in_one_line(env, tmp_path, "run `billing db upgrade`",
                                           upgrade=False)
    assert not (tmp_path / "missing.db").exists()


@pytest.fixture
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a PostgreSQL database that exists but has no tables (dropped after)."""
    if services_problem():
        pytest.skip(f"needs PostgreSQL at 127.0.0.1:5432: {services_problem()}")
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"unmigrated_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_unmigrated_postgres_database_says_to_upgrade(
        tmp_path: Path, fresh_postgres_database: str) -> None:
    env = environment(tmp_path, fresh_postgres_database)
    assert_every_command_fails_in_one_line(env, tmp_path, "run `billing db upgrade`",
                                           upgrade=False)


# --- bad arguments and a bad environment, on a live database --------------------------------

BAD = {
    "broker down: requeue": (("dead-letters", "requeue"), ("broker", "127.0.0.1:1")),
    "broker down: list": (("dead-letters", "list"), ("broker", "127.0.0.1:1")),
    "invoice id ≥ 2³¹": (("invoices", "show", "99999999999"), ("99999999999",)),
    "invoice id 2³¹": (("invoices", "show", str(2**31)), (str(2**31),)),
    "rejected id ≥ 2³¹": (("usage", "resubmit", "99999999999"), ("rejected_id",)),
    "delivery id ≥ 2³¹": (("deliveries", "retry", "99999999999"), ("99999999999",)),
    "usage --limit 0": (("usage", "rejected", "--limit", "0"), ("--limit",)),
    "usage --limit 10⁸": (("usage", "rejected", "--limit", "100000000"), ("--limit",)),
    "deliveries --limit 0": (("deliveries", "list", "--limit", "0"), ("--limit",)),
    "deliveries --limit 10⁸": (("deliveries", "list", "--limit", "100000000"), ("--limit",)),
    "invoice ²": (("invoices", "show", "²"), ("²",)),
    "preview in 9999": (("invoices", "preview", "s-1", "--at", "9999-12-31T23:00:00Z"),
                        ("--at",)),
    "html --out in a missing folder": (("invoices", "show", "EU-000001", "--html", "--out",
                                        "/no/such/folder/x.html"), ("/no/such/folder",)),
    "invoices --status bogus": (("invoices", "list", "--status", "bogus"), ("--status",)),
    "deliveries --status bogus": (("deliveries", "list", "--status", "bogus"), ("--status",)),
    "a command that does not exist": (("invoices", "frobnicate"), ("frobnicate",)),
    "a missing argument": (("usage", "resubmit"), ("rejected_id",)),
}


@pytest.fixture(scope="module")
def bad_runs(live: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every BAD command line, run on the live database (the broker ones with a broker
    URL where nothing listens)."""
    folder = tmp_path_factory.mktemp("bad")
    broker = {name: args for name, (args, _) in BAD.items() if name.startswith("broker")}
    others = {name: args for name, (args, _) in BAD.items() if name not in broker}
    return {**billing_many(live, others, folder / "others"),
            **billing_many({**live, "BILLING_BROKER_URL": "redis://127.0.0.1:1/0"}, broker,
                           folder / "broker")}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_command_line_is_one_line(name: str, bad_runs: dict[str, Run]) -> None:
    assert_one_line_error(bad_runs[name], *BAD[name][1])


def test_one_command_run_alone_is_the_same(live: dict[str, str],
                                           bad_runs: dict[str, Run]) -> None:
    """A command run by `python -m cli` says what it says when run among the others (but
    its name: `billing` there)."""
    for name, args in (("usage --limit 0", ("usage", "rejected", "--limit", "0")),
                       ("invoice ²", ("invoices", "show", "²"))):
        alone, among = billing(live, *args), bad_runs[name]
        assert (alone.returncode, alone.stderr.replace("python -m cli", "billing"),
                alone.stdout) == (among.returncode, among.stderr, among.stdout), name


def test_replay_out_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    run = billing(environment(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}"),
                  "replay", str(tmp_path / "scenario.yaml"), "--out", "/no/such/folder/x.json")
    assert_one_line_error(run, "/no/such/folder")


def test_status_filters_still_work(live: dict[str, str]) -> None:
    """The --status checks refuse only what is not a status."""
    sent = ok(billing(live, "invoices", "list", "--status", "sent", columns=WIDE)).stdout
    assert "EU-000001" in sent and "s-2@" not in sent, sent
    done = ok(billing(live, "deliveries", "list", "--status", "done", columns=WIDE)).stdout
    assert "0 deliveries" in done, done


# --- secrets in webhook URLs ----------------------------------------------------------------

def assert_no_secret(run: Run) -> None:
    for secret in (PASSWORD, TOKEN, WEBHOOK_SECRET):
        assert secret not in run.stdout + run.stderr, f"{secret!r} is shown: {run}"


def test_catalog_apply_refuses_a_webhook_url_with_a_password(tmp_path: Path,
                                                             live: dict[str, str]) -> None:
    path = tmp_path / "entity.yaml"
    path.write_text(f"entities:\n  - id: acme-eu\n    timezone: Europe/Oslo\n"
                    f"    delivery: {{channel: webhook, url: '{WITH_USER}', "
                    f"secret: {WEBHOOK_SECRET}}}\n")
    run = billing(live, "catalog", "apply", str(path))
    assert_one_line_error(run, str(path), "entities[0].delivery.url", "user or password")
    assert_no_secret(run)


def test_webhook_secrets_are_never_shown_and_a_password_url_fails_for_good(
        tmp_path: Path) -> None:
    env = build(tmp_path)

    listing = ok(billing(env, "deliveries", "list", columns=WIDE))  # what build() left
    assert_no_secret(listing)
    assert listing.stdout.count("failed") == 2, listing.stdout
    assert "user or password" in listing.stdout and "pending" not in listing.stdout, listing

    # the receiver is down: retried (pending), its URL shown with the token hidden
    retried = billing({**env, **webhook(WITH_TOKEN)}, "deliveries", "retry")
    assert retried.returncode == 1 and len(retried.lines) == 2, str(retried)
    assert_no_secret(retried)
    listing = ok(billing(env, "deliveries", "list", columns=WIDE))
    assert_no_secret(listing)
    assert listing.stdout.count("https://127.0.0.1:1/hook?token=***") == 2, listing.stdout
    assert listing.stdout.count("pending") == 2, listing.stdout

    # a URL with a user and password: refused, failed for good (not pending again)
    refused = billing({**env, **webhook(WITH_USER)}, "deliveries", "retry", "EU-000001")
    assert refused.returncode == 1, str(refused)
    assert refused.lines and all("user or password" in line for line in refused.lines), refused
    assert_no_secret(refused)
    failed = ok(billing(env, "deliveries", "list", "--status", "failed", columns=WIDE))
    assert_no_secret(failed)
    assert "1 delivery" in failed.stdout and "user or password" in failed.stdout, failed


def test_a_stored_url_with_secrets_is_shown_redacted(tmp_path: Path) -> None:
    """Whatever a delivery row holds (one written by an older version, an error that quotes
    its URL), the listing and the retry show the user, never the password or the token."""
    import sqlite3

    env = build(tmp_path)
    with sqlite3.connect(tmp_path / "ops.db") as conn:
        conn.execute("UPDATE deliveries SET status = 'pending', target = ?, last_error = ?",
                     (WITH_USER, f"POST {WITH_USER}: [Errno 111] Connection refused"))
    listing = ok(billing(env, "deliveries", "list", columns=WIDE))
    assert_no_secret(listing)
    shown = "https://user:***@127.0.0.1:1/hook?token=***"
    assert listing.stdout.count(shown) == 4, listing.stdout  # target and error, two rows
    retried = billing({**env, **webhook(WITH_TOKEN)}, "deliveries", "retry", "EU-000001")
    assert retried.returncode == 1 and len(retried.lines) == 1, str(retried)
    assert_no_secret(retried)
