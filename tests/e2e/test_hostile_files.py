"""Hostile files given to ``billing catalog apply`` and ``billing replay`` (issue #9, item 8).

Proven here, by running the command as a user does, in a child limited to a 2 GiB address
space and within 10 s of CPU time (user + system, the child's own — measured with
``getrusage(RUSAGE_CHILDREN)`` before and after it, not the wall clock: on a machine
shared with other work a command waits for a core, and 10 s of wall time failed at a load
of 5-9 without the command being any slower; the intent is that a hostile file cannot make
the command *work* long). A child that hangs (waiting, using no CPU) is still killed and
fails the test after ``HANG_S`` of wall time:

- for both commands, each of these files is exit status 2 and exactly one line on standard
  error that names the file (and the field path or YAML line where there is one), nothing
  on standard output, never a traceback: a "billion laughs" YAML, nesting 100,000 deep
  (YAML and JSON), random bytes, a latin-1 file, a 5,001-digit number, a NUL in an id, a
  duplicate key, a 70 MB file, a small file of very many values (YAML and JSON) — and for
  the replay an ``until`` or ``at`` in year 1 or 9999;
- in a replay, what is not a scenario error is not one: a subscribe with an unknown field
  is a warning naming it and the subscription is made; a quantity ``"1_000"``, ``" 5 "``,
  ``1e500000`` or of 5,001 digits, a property ``1e500000`` and a timestamp with
  nanoseconds each reject their event (counted in the replay's output) with a reason
  naming the field, and the replay goes on; a timestamp whose digits beyond the
  microsecond are zeros is accepted;
- ``catalog apply`` on an un-migrated database (an empty SQLite file, or a file that does
  not exist — and is not created) says to run ``billing db upgrade``.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.usage import Rejection, validate_event
from scheduler.scenario import load_scenario

BILLING = [sys.executable, "-m", "cli"]
CPU_S = 10.0  # the child's CPU time, user + system
HANG_S = 120.0  # wall time after which a child is taken for hung (a generous bound)
ADDRESS_SPACE = 2 * 1024**3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # the child's CPU time (user + system)

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def billing(*args: str, env: dict[str, str] | None = None) -> Run:
    """The command in a child with a bounded address space; a narrow terminal (80 columns),
    so that a line that wraps shows as two. ``seconds``: the child's CPU time (the
    difference of the ended children's CPU time around it: it is the only child this test
    waits for meanwhile)."""
    before = _children_cpu()
    try:
        done = subprocess.run([*BILLING, *args], capture_output=True, text=True,
                              env={**(env or os.environ), "COLUMNS": "80"},
                              timeout=HANG_S, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"billing {' '.join(args)} still ran after {HANG_S:.0f} s (wall time)")
    return Run(done.returncode, done.stdout, done.stderr, _children_cpu() - before)


def assert_one_line_error(run: Run, path: Path, where: str) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 2, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert len(run.lines) == 1, f"expected one line on stderr, got:\n{run.stderr[-2000:]}"
    assert str(path) in run.lines[0], f"the line does not name {path}: {run.lines[0]}"
    assert where in run.lines[0], f"the line does not say {where!r}: {run.lines[0]}"
    assert run.stdout == "", f"stdout: {run.stdout[:500]}"
    assert run.seconds < CPU_S, f"took {run.seconds:.1f} s of CPU (at most {CPU_S} s)"


# --- the files ------------------------------------------------------------------------------

SCENARIO_HEAD = ("entities: [{id: e, timezone: UTC}]\n"
                 "meters: [{id: m, aggregation: sum}]\n"
                 "customers: [{id: c, entity: e}]\n")
UNTIL = 'until: "2026-09-05T00:00:00Z"\n'


def laughs() -> str:
    """Nine levels of nine aliases: 9⁹ = 387,420,489 "lol"s once expanded."""
    lines = ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join([f"*lol{level - 1}"] * 9)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    return "\n".join(lines) + "\n"


def plan(number: str) -> str:
    return ("plans:\n  - {id: p, currency: EUR, interval: month, charges: "
            f"[{{id: base, type: recurring, amount: {number}}}]}}\n")


def write_text(text: str, suffix: str = ".yaml", encoding: str = "utf-8") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / f"hostile{suffix}"
        path.write_bytes(text.encode(encoding))
        return path
    return write


def write_binary(folder: Path) -> Path:
    path = folder / "hostile.yaml"
    data = bytearray(random.Random(9).randbytes(4096))
    data[10:12] = b"\x00\xff"  # a NUL, and a byte no UTF-8 has
    path.write_bytes(bytes(data))
    return path


def write_huge(folder: Path) -> Path:
    path = folder / "hostile.yaml"
    with path.open("wb") as file:
        file.truncate(70 * 1000 * 1000)  # sparse: 70 MB of NULs that take no disk
    return path


DEEP = "[" * 100_000 + "]" * 100_000
# name: (writer, what the one line says besides the file), the same for both commands
EITHER = {
    "billion laughs": (write_text(laughs()), "line 2"),
    "nested 100,000 deep (YAML)": (write_text(DEEP), "nest"),
    "nested 100,000 deep (JSON)": (write_text(DEEP, ".json"), "nests"),
    "random bytes": (write_binary, "not UTF-8"),
    "UTF-8 with a NUL": (write_text("entities: [{id: e,\x00 timezone: UTC}]\n"), "line 1"),
    "latin-1": (write_text("entities: [{id: café, timezone: UTC}]\n", encoding="latin-1"),
                "not UTF-8"),
    "70 MB": (write_huge, "MiB"),
    "300,000 YAML values in 600 kB": (write_text("[" + "1," * 300_000 + "1]"), "values"),
    "6,000,000 JSON values in 12 MB": (write_text("[" + "1," * 6_000_000 + "1]", ".json"),
                                       "values"),
}
CATALOG = {
    **EITHER,
    "5,001-digit price": (write_text(
        "meters: [{id: m, aggregation: sum}]\nplans:\n  - {id: p, currency: EUR, interval: "
        "month, charges: [{id: c, type: usage, meter: m, model: unit, unit_price: "
        f"{'9' * 5001}}}]}}\n"), "plans[0].charges[0].unit_price"),
    "NUL in an id": (write_text('entities: [{id: "a\\0b", timezone: UTC}]\n'),
                     "entities[0].id"),
    "duplicate key": (write_text("entities:\n  - id: e\n    timezone: UTC\n"
                                 "    timezone: Europe/Oslo\n"), "line 4"),
}
REPLAY = {
    **EITHER,
    "5,001-digit plan amount": (write_text(SCENARIO_HEAD + plan("9" * 5001) + UNTIL),
                                "plans[0].charges[0].amount"),
    "NUL in an id": (write_text('entities: [{id: e, timezone: UTC}]\n'
                                'customers: [{id: "a\\0b", entity: e}]\n' + UNTIL),
                     "customers[0].id"),
    "duplicate key": (write_text(SCENARIO_HEAD + UNTIL + 'until: "2026-10-01T00:00:00Z"\n'),
                      "line 5"),
    "until in year 1": (write_text(SCENARIO_HEAD + 'until: "0001-01-01T00:00:00Z"\n'), "until"),
    "until in year 9999": (write_text(SCENARIO_HEAD + 'until: "9999-12-31T23:59:59Z"\n'),
                           "until"),
    "until overflowing UTC": (write_text(SCENARIO_HEAD + 'until: "9999-12-31T23:59:59-05:00"\n'),
                              "until"),
    **{f"at {at}": (write_text(SCENARIO_HEAD + f'timeline:\n  - {{at: "{at}", cancel: '
                               '{subscription: s}}\n' + UNTIL), "timeline[0].at")
       for at in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00",
                  "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00")},
}


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a fresh database that `billing db upgrade` made."""
    folder = tmp_path_factory.mktemp("db")
    env = {**os.environ, "BILLING_DATABASE_URL": f"sqlite:///{folder / 'billing.db'}",
           "BILLING_OUTBOX_DIR": str(folder / "outbox")}
    done = billing("db", "upgrade", env=env)
    assert done.returncode == 0, done.stderr
    return env


@pytest.mark.parametrize("name", list(CATALOG))
def test_catalog_apply_refuses_a_hostile_file_in_one_line(
        name: str, tmp_path: Path, database: dict[str, str]) -> None:
    write, where = CATALOG[name]
    path = write(tmp_path)
    assert_one_line_error(billing("catalog", "apply", str(path), env=database), path, where)


@pytest.mark.parametrize("name", list(REPLAY))
def test_replay_refuses_a_hostile_file_in_one_line(name: str, tmp_path: Path) -> None:
    write, where = REPLAY[name]
    path = write(tmp_path)
    assert_one_line_error(billing("replay", str(path)), path, where)


def test_the_billion_laughs_file_is_small() -> None:
    assert 600 <= len(laughs()) <= 800, len(laughs())


# --- what a replay does not refuse ----------------------------------------------------------

SUBSCRIBED = (SCENARIO_HEAD + plan('"10.00"') +
              "timeline:\n"
              '  - {at: "2026-09-01T00:00:00Z", subscribe: {id: s, customer: c, plan: p, '
              'start: "2026-09-01", colour: blue}}\n')


def replay_ok(path: Path) -> tuple[Run, dict]:
    run = billing("replay", str(path))
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.seconds < CPU_S, f"took {run.seconds:.1f} s of CPU (at most {CPU_S} s)"
    return run, json.loads(run.stdout)


def test_an_unknown_subscribe_field_is_a_warning_and_the_subscription_is_made(
        tmp_path: Path) -> None:
    path = tmp_path / "unknown-field.yaml"
    path.write_text(SUBSCRIBED + UNTIL)
    run, result = replay_ok(path)
    assert run.lines == [f"warning: {path}: timeline[0].subscribe.colour: is not a known "
                         "field (ignored)"], run.stderr
    assert [inv["subscription"] for inv in result["invoices"]] == ["s"], result["invoices"]


BAD_EVENTS = {
    "quantity 1_000": ('quantity: "1_000"', "quantity"),
    "quantity with spaces": ('quantity: " 5 "', "quantity"),
    "quantity 1e500000": ("quantity: 1e500000", "quantity"),
    "quantity of 5,001 digits": (f"quantity: {'9' * 5001}", "quantity"),
    # scheduler/replay.py once made it a Python int: 10 s of CPU, then the encoder failed
    "property 1e500000": ("quantity: 1, properties: {user: 1e500000}", "properties.user"),
    "timestamp with nanoseconds": ("quantity: 1, timestamp: '2026-09-02T00:00:00.123456789Z'",
                                   "timestamp"),
}


def usage_scenario(fields: str) -> str:
    event = "{key: k, customer: c, meter: m, timestamp: '2026-09-02T00:00:00Z', quantity: 1}"
    names = {part.split(":")[0].strip() for part in fields.split(", ")}
    kept = [part for part in event[1:-1].split(", ") if part.split(":")[0] not in names]
    return (SUBSCRIBED.replace(", colour: blue", "") +
            f'  - at: "2026-09-03T00:00:00Z"\n    usage:\n      - {{{", ".join(kept)}, '
            f"{fields}}}\n" + UNTIL)


@pytest.mark.parametrize(("fields", "where"), list(BAD_EVENTS.values()), ids=list(BAD_EVENTS))
def test_a_malformed_event_is_rejected_and_the_replay_goes_on(
        fields: str, where: str, tmp_path: Path) -> None:
    path = tmp_path / "event.yaml"
    path.write_text(usage_scenario(fields))
    _, result = replay_ok(path)
    counts = result["usage"]
    assert (counts["rejected"], counts["accepted"]) == (1, 0), counts
    assert [inv["subscription"] for inv in result["invoices"]] == ["s"]  # the replay went on
    # the reason the engine gives for the event as the file spells it
    (action,) = [a for a in load_scenario(path).actions if a.kind == "usage"]
    outcome = validate_event(action.params[0], datetime(2026, 9, 3, tzinfo=UTC), {"c"}, {"m"})
    assert isinstance(outcome, Rejection), outcome
    assert outcome.reason.startswith(f"{where}:"), outcome.reason


def test_a_timestamp_with_zeros_beyond_the_microsecond_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "zeros.yaml"
    path.write_text(usage_scenario("timestamp: '2026-09-02T00:00:00.123456000Z'"))
    _, result = replay_ok(path)
    assert (result["usage"]["accepted"], result["usage"]["rejected"]) == (1, 0), result["usage"]


# --- an un-migrated database ----------------------------------------------------------------

def test_catalog_apply_on_an_empty_database_says_to_upgrade(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("entities: [{id: e, timezone: UTC}]\n")
    env = {**os.environ, "BILLING_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    run = billing("catalog", "apply", str(catalog), env=env)
    assert_one_line_error(run, tmp_path / "empty.db", "run `billing db upgrade`")


def test_catalog_apply_on_a_missing_database_says_to_upgrade_and_creates_nothing(
        tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("entities: [{id: e, timezone: UTC}]\n")
    env = {**os.environ, "BILLING_DATABASE_URL": f"sqlite:///{missing}"}
    run = billing("catalog", "apply", str(catalog), env=env)
    assert_one_line_error(run, missing, "run `billing db upgrade`")
    assert not missing.exists(), "catalog apply created the database file"
