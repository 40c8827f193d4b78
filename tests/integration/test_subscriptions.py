"""Subscribe, cancel, uncancel: refusals are stored outcomes, never exceptions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from persistence.db import unit_of_work
from persistence.tables import CommandLogRow, SubscriptionRow
from services.subscriptions import do_cancel, do_subscribe, do_uncancel
from tests.integration.helpers import apply_catalog

T = datetime(2026, 1, 10, 12, tzinfo=UTC)


@pytest.fixture
def store(sqlite_store: str) -> None:
    apply_catalog()


def sub(id: str, plan: str = "pro", start: str = "2026-01-01", **kw: object) -> str:
    with unit_of_work() as session:
        return do_subscribe(session, T, {"id": id, "customer": "c-1", "plan": plan,
                                         "start": start, **kw}).status


def test_overlap_on_a_shared_meter_is_refused(store: None) -> None:
    assert sub("a") == "applied"
    assert sub("b", plan="tokens-too", start="2027-01-01") == "refused"
    assert sub("c", plan="seats-only") == "applied"  # no meter in common


def test_subscribe_after_the_end_of_a_cancelled_one(store: None) -> None:
    assert sub("a") == "applied"
    with unit_of_work() as session:
        assert do_cancel(session, T, "a").detail == "ends 2026-02-01"
    assert sub("b", plan="tokens-too", start="2026-01-31") == "refused"
    assert sub("b", plan="tokens-too", start="2026-02-01") == "applied"
    with unit_of_work() as session:  # uncancelling would overlap b now
        assert do_uncancel(session, T, "a").status == "refused"


def test_discount_limits(store: None) -> None:
    assert sub("a", discount={"percent": "0"}) == "refused"
    assert sub("a", discount={"percent": "100.01"}) == "refused"
    assert sub("a", discount={"amount": "0"}) == "refused"
    assert sub("a", discount={"percent": "100"}) == "applied"


def test_cancel_exactly_at_a_boundary_ends_at_the_next(store: None) -> None:
    sub("a")
    at_boundary = datetime(2026, 1, 31, 23, tzinfo=UTC)  # 2026-02-01 00:00 in Oslo
    with unit_of_work() as session:
        assert do_cancel(session, at_boundary, "a").detail == "ends 2026-03-01"
        assert do_cancel(session, at_boundary, "a").status == "unchanged"  # a second cancel


def test_uncancel_after_the_end_changes_nothing(store: None) -> None:
    sub("a")
    with unit_of_work() as session:
        do_cancel(session, T, "a")
    with unit_of_work() as session:
        after = datetime(2026, 2, 1, tzinfo=UTC)
        assert do_uncancel(session, after, "a").status == "unchanged"
        row = session.get(SubscriptionRow, "a")
        assert row is not None and row.end is not None


def test_refusal_is_logged_with_its_reason(runtime: object) -> None:
    from workers import actors

    apply_catalog()
    runtime.deliver(actors.subscribe.message("s-1", "c-1", "no-such-plan",  # type: ignore[attr-defined]
                                             "2026-01-01"))
    with unit_of_work() as session:
        entry = session.scalars(select(CommandLogRow)).one()
    assert entry.outcome == "refused" and "not a known plan" in entry.detail


def test_a_cancel_before_its_subscribe_is_kept_and_applies(runtime: object) -> None:
    """dramatiq may deliver a cancel before the subscribe the application sent first: the
    cancel is kept (pending) and applies when the subscription is created."""
    from datetime import timedelta

    from workers import actors

    apply_catalog()
    sent = datetime(2026, 1, 10, 12, tzinfo=UTC)
    subscribe = actors.subscribe.message_with_options(
        args=("s-1", "c-1", "pro", "2026-01-01"), sent_at=sent.isoformat())
    cancel = actors.cancel.message_with_options(
        args=("s-1",), sent_at=(sent + timedelta(seconds=1)).isoformat())
    runtime.deliver(cancel)  # type: ignore[attr-defined]
    with unit_of_work() as session:
        entry = session.scalars(select(CommandLogRow)).one()
    assert entry.outcome == "pending" and "not a known subscription" in entry.detail
    runtime.deliver(subscribe)  # type: ignore[attr-defined]
    with unit_of_work() as session:
        row = session.get(SubscriptionRow, "s-1")
        assert row is not None and row.end is not None and row.end.isoformat() == "2026-02-01"
