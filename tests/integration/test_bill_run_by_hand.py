"""``billing bill-run`` re-run by hand while — or after — the scheduler's run of the same
date (issue #20, "also seen"): the run's ``done_at`` stays the one of the run that
finished it first, and the command says how many invoices it issued and how many this
run had issued already (by the scheduler or an earlier ``bill-run``), never "0 invoices
issued" for a run that issued them. Real workers (2 × 8 threads on Redis) and PostgreSQL;
the command runs in this process, at the same time."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from persistence.db import unit_of_work
from persistence.tables import BillRunRow, InvoiceRow
from scheduler.tick import tick
from services import catalog as catalog_service
from services import subscriptions
from tests.conftest import Pool

pytestmark = pytest.mark.postgres

ENTITIES = 6
SUBS = 3  # per entity
RUN = date(2026, 2, 1)
RUN_AT = datetime(2026, 2, 1, 8, 15, tzinfo=UTC)  # 08:15 in UTC


def setup_world() -> None:
    catalog_service.apply_document({
        "entities": [{"id": f"e{i}", "timezone": "UTC", "invoice_prefix": f"E{i}"}
                     for i in range(ENTITIES)],
        "meters": [{"id": "calls", "aggregation": "sum"}],
        "plans": [{"id": "p", "currency": "USD", "interval": "month", "charges": [
            {"id": "fee", "type": "recurring", "amount": "10.00"}]}],
        "customers": [{"id": f"c{i}-{j}", "entity": f"e{i}"}
                      for i in range(ENTITIES) for j in range(SUBS)],
    }, datetime(2025, 12, 1, tzinfo=UTC))
    created = datetime(2026, 1, 15, tzinfo=UTC)
    with unit_of_work() as session:
        for i in range(ENTITIES):
            for j in range(SUBS):
                outcome = subscriptions.do_subscribe(session, created, {
                    "id": f"s{i}-{j}", "customer": f"c{i}-{j}", "plan": "p",
                    "start": "2026-02-01"})
                assert outcome.status == "applied", outcome


CLI = threading.Lock()  # CliRunner swaps the process's standard streams: one at a time


def bill_run_by_hand(entity: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``billing bill-run ENTITY --date 2026-02-01`` in this process, on the test's store;
    what it printed."""
    import cli.main

    monkeypatch.setattr(cli.main, "connect", lambda: None)
    with CLI:
        result = CliRunner().invoke(cli.main.app, ["bill-run", entity, "--date",
                                                   RUN.isoformat()])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def runs() -> dict[str, BillRunRow]:
    with unit_of_work() as session:
        return {r.entity_id: r for r in session.scalars(select(BillRunRow))}


def invoices_of(entity: str) -> int:
    with unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(InvoiceRow).where(
            InvoiceRow.entity_id == entity)) or 0)


def counts(said: str) -> tuple[int, int]:
    """(issued by the command, issued by this run before it) from its summary line."""
    match = re.search(r"(\d+) invoices issued, \d+ delivered(?:; (\d+) already issued by "
                      r"this run)?", said)
    assert match, said
    return int(match.group(1)), int(match.group(2) or 0)


def test_a_bill_run_by_hand_after_the_scheduled_one_keeps_its_done_at_and_says_so(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_world()
    pool.at("2026-02-01T08:16:00Z")
    tick(RUN_AT + timedelta(minutes=1))
    pool.drain()
    done = {e: r.done_at for e, r in runs().items()}
    assert all(done.values()) and len(done) == ENTITIES
    pool.at("2026-02-01T09:30:00Z")
    said = bill_run_by_hand("e0", monkeypatch)
    assert counts(said) == (0, SUBS), said
    assert runs()["e0"].done_at == done["e0"], "the scheduled run's done_at was overwritten"


def test_a_bill_run_by_hand_during_the_scheduled_one_counts_what_this_run_issued(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_world()
    pool.at("2026-02-01T08:16:00Z")
    said: dict[str, str] = {}
    errors: list[BaseException] = []

    def by_hand(entity: str) -> None:
        try:
            said[entity] = bill_run_by_hand(entity, monkeypatch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    hands = [threading.Thread(target=by_hand, args=(f"e{i}",)) for i in range(ENTITIES)]
    for thread in hands[:ENTITIES // 2]:  # an operator runs each entity's run by hand …
        thread.start()
    tick(RUN_AT + timedelta(minutes=1))  # … while the scheduled runs go to the workers
    for thread in hands[ENTITIES // 2:]:
        thread.start()
    for thread in hands:
        thread.join(timeout=120)
    pool.drain()
    assert not errors, errors
    wrong: dict[str, Any] = {}
    for entity, text in said.items():
        issued, before = counts(text)
        if issued + before != invoices_of(entity) or invoices_of(entity) != SUBS:
            wrong[entity] = (issued, before, invoices_of(entity), text)
    assert wrong == {}, f"{len(wrong)} of {ENTITIES} summaries wrong: {wrong}"
    assert all(r.status == "done" and r.done_at for r in runs().values())
