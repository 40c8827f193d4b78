"""The set-wise store functions of alert evaluation (persistence/alerts.py), on SQLite and
PostgreSQL: which (alert, subscription) pairs one joined query finds, crossings recorded
once however often or in whatever chunks they are offered, and ``alert.triggered`` rows
whose ids come back in the events' order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from domain.alerts import DECREASING
from persistence import alerts as alerts_repo
from persistence.db import unit_of_work
from persistence.tables import AlertCrossingRow, AlertEventRow, SubscriptionRow
from services import alerts
from services import catalog as catalog_service
from services.commands import run_command
from services.subscriptions import do_subscribe

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
D = Decimal


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    catalog_service.apply_document({
        "entities": [{"id": "e", "timezone": "UTC"}],
        "meters": [{"id": m, "aggregation": "sum"} for m in ("calls", "pages", "rows")],
        "plans": [{"id": plan, "currency": "USD", "interval": "month", "charges": [
            {"id": meter, "type": "usage", "meter": meter, "model": "unit",
             "unit_price": "1.00"}]}
            for plan, meter in (("p", "calls"), ("q", "pages"), ("r", "rows"))],
        "customers": [{"id": c, "entity": "e"} for c in ("ana", "bo", "cy", "dee")]},
        datetime(2026, 1, 1, tzinfo=UTC))
    with unit_of_work() as session:
        for sub, customer, plan, start in (("s-ana-1", "ana", "p", "2026-03-01"),
                                           ("s-ana-2", "ana", "q", "2026-02-01"),
                                           ("s-ana-later", "ana", "r", "2026-04-01"),
                                           ("s-bo", "bo", "p", "2026-03-01"),
                                           ("s-cy", "cy", "p", "2026-01-01")):
            assert do_subscribe(session, NOW, {"id": sub, "customer": customer, "plan": plan,
                                               "start": start}).status == "applied"
        # s-cy ended before NOW
        session.execute(update(SubscriptionRow).where(col(SubscriptionRow.id) == "s-cy")
                        .values(end=date(2026, 3, 1),
                                end_at=datetime(2026, 3, 1, tzinfo=UTC)))
    for request_ in (
            {"id": "a-each", "customer": "ana", "kind": "usage_amount", "thresholds": ["10"]},
            {"id": "a-one", "customer": "ana", "subscription": "s-ana-1",
             "kind": "usage_quantity", "meter": "calls", "thresholds": ["5"]},
            {"id": "a-balance", "customer": "ana", "kind": "credit_balance",
             "currency": "USD", "thresholds": ["20"]},
            {"id": "b-spend", "customer": "bo", "subscription": "s-bo",
             "kind": "usage_amount", "thresholds": ["1", "2"], "recurring_step": "1"},
            {"id": "c-ended", "customer": "cy", "subscription": "s-cy",
             "kind": "usage_amount", "thresholds": ["1"]},
            {"id": "d-gone", "customer": "dee", "kind": "usage_amount",
             "thresholds": ["1"]}):
        assert run_command("create_alert", lambda s, now, r=request_:
                           alerts.do_create(s, now, r)).status == "applied"
    assert run_command("delete_alert", lambda s, now:
                       alerts.do_delete(s, now, "d-gone")).status == "applied"
    yield request.param


def pairs(customers: list[str], **kwargs: object) -> list[tuple[str, str | None]]:
    with unit_of_work() as session:
        return [(a.id, None if s is None else s.id) for a, s in
                alerts_repo.to_evaluate(session, customers, NOW, **kwargs)]  # type: ignore[arg-type]


def test_one_query_finds_each_alert_with_the_subscriptions_it_watches(store: str) -> None:
    assert pairs(["ana", "bo", "cy", "dee", "nobody"], no_subscription=DECREASING,
                 lock=True) == [
        ("a-balance", None),  # a balance watches no subscription
        ("a-each", "s-ana-1"), ("a-each", "s-ana-2"),  # each live one (not s-ana-later)
        ("a-one", "s-ana-1"),
        ("b-spend", "s-bo"),
        ("c-ended", None),  # its subscription ended
    ]  # d-gone is deleted
    # only balances wanted: no subscription is read
    assert pairs(["ana", "bo"], no_subscription=("usage_amount", "usage_quantity",
                                                 "credit_balance")) == [
        ("a-balance", None), ("a-each", None), ("a-one", None), ("b-spend", None)]
    assert pairs([]) == []


def test_chunks_find_the_same_pairs(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = pairs(["ana", "bo", "cy"], no_subscription=DECREASING)
    monkeypatch.setattr(alerts_repo, "CHUNK", 1)
    assert pairs(["cy", "bo", "ana", "ana"], no_subscription=DECREASING) == whole


def test_crossings_are_recorded_once(store: str) -> None:
    scope = ("b-spend", "s-bo", "2026-03-01")
    first = [(scope, D("1"), 0, D("3.50")), (scope, D("2"), 0, D("3.50")),
             (scope, D("3"), 1, D("3.50"))]
    with unit_of_work() as session:
        assert alerts_repo.record_crossings(session, first, NOW) == {
            (*scope, D("1")), (*scope, D("2")), (*scope, D("3"))}
    later = datetime(2026, 3, 11, tzinfo=UTC)
    with unit_of_work() as session:  # offered again with a new one: only that is new
        again = [*first, (scope, D("4"), 2, D("4.00")),
                 (("a-each", "s-ana-2", "2026-02-01"), D("10"), 0, D("12"))]
        assert alerts_repo.record_crossings(session, again, later) == {
            (*scope, D("4")), ("a-each", "s-ana-2", "2026-02-01", D("10"))}
        assert alerts_repo.record_crossings(session, [], later) == set()
    with unit_of_work() as session:
        rows = session.scalars(select(AlertCrossingRow).order_by(
            col(AlertCrossingRow.alert_id), col(AlertCrossingRow.threshold))).all()
        assert [(r.alert_id, r.subscription_id, r.period, r.threshold, r.recurring, r.value,
                 r.crossed_at) for r in rows] == [
            ("a-each", "s-ana-2", "2026-02-01", D("10"), 0, D("12"), later),
            ("b-spend", "s-bo", "2026-03-01", D("1"), 0, D("3.50"), NOW),
            ("b-spend", "s-bo", "2026-03-01", D("2"), 0, D("3.50"), NOW),
            ("b-spend", "s-bo", "2026-03-01", D("3"), 1, D("3.50"), NOW),
            ("b-spend", "s-bo", "2026-03-01", D("4"), 2, D("4.00"), later)]
        fired = alerts_repo.fired(session, [scope])
        assert (fired[scope].fixed, fired[scope].recurring) == ({D("1"), D("2")}, 2)


def test_events_come_back_in_order(store: str) -> None:
    events = [(alert, {"alert": alert, "n": i, "thresholds": [str(i)]})
              for i, alert in enumerate(["b-spend", "a-each", "a-each", "a-one"] * 3)]
    with unit_of_work() as session:
        assert alerts_repo.add_events(session, "alert.triggered", [], NOW) == []
        ids = alerts_repo.add_events(session, "alert.triggered", events, NOW)
    assert len(ids) == len(events) and ids == sorted(ids) and len(set(ids)) == len(ids)
    with unit_of_work() as session:
        rows = {r.id: r for r in session.scalars(select(AlertEventRow))}
    for event_id, (alert, payload) in zip(ids, events, strict=True):
        row = rows[event_id]
        assert (row.alert_id, row.type, row.payload, row.status, row.attempts,
                row.last_error, row.created_at, row.updated_at) == (
            alert, "alert.triggered", payload, "pending", 0, "", NOW, NOW)


def test_the_folder_waits_the_rest_of_its_period_only() -> None:
    from scheduler.loop import fold_pause

    assert fold_pause(1.0, 0.25) == 0.75
    assert fold_pause(1.0, 1.0) == 0.0
    assert fold_pause(1.0, 7.5) == 0.0  # a long turn: the next one at once


def test_alerts_are_evaluated_at_most_every_alert_seconds() -> None:
    from scheduler.loop import evaluation_due

    assert evaluation_due(None, 5.0, 3.0, 1.0)  # the first turn evaluates
    assert not evaluation_due(5.0, 6.0, 3.0, 1.0) and not evaluation_due(5.0, 7.0, 3.0, 1.0)
    assert evaluation_due(5.0, 8.0, 3.0, 1.0)
    assert evaluation_due(5.0, 7.6, 3.0, 1.0)  # a turn that started a little early
    assert evaluation_due(5.0, 5.05, 0.05, 0.05)  # as often as the folds


def test_the_fold_loop_evaluates_at_its_own_cadence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folds every turn; evaluations (each taking everything folded since the last) at most
    every ``alert_every`` seconds — and after every fold without one."""
    import threading
    import time

    from scheduler import loop
    from services import rollups

    for alert_every, low, high in ((0.3, 3, 6), (0.0, 10, 26)):
        folds: list[float] = []
        evaluations: list[float] = []

        def fold(folds: list[float] = folds) -> rollups.FoldReport:
            folds.append(time.perf_counter())
            return rollups.FoldReport(folds=True)

        def evaluate(now: datetime, evaluations: list[float] = evaluations) -> list[int]:
            evaluations.append(time.perf_counter())
            return []

        monkeypatch.setattr(loop.rollups, "fold", fold)
        monkeypatch.setattr(loop.alerts, "evaluate_folded", evaluate)
        stop = threading.Event()
        thread = threading.Thread(target=loop.fold_loop, args=(stop, 0.05, alert_every))
        thread.start()
        time.sleep(1.25)
        stop.set()
        thread.join(5)
        assert low <= len(evaluations) <= high, (alert_every, len(evaluations), len(folds))
        if alert_every:
            gaps = [b - a for a, b in pairwise(evaluations)]
            assert min(gaps) >= alert_every - 0.05 / 2 - 0.02, gaps
            assert len(folds) >= 3 * len(evaluations)
