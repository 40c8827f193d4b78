"""A hypothesis state machine of one customer's subscriptions (issue #8, "Done when").

The application sends subscribe, cancel, uncancel, set_draft_invoices and usage messages
(each stamped with the instant it was sent), an operator releases drafts; dramatiq delivers
the messages late, in any order, and some of them twice (the same message id); bill runs
happen whenever the clock moves on. After every step the database must show:

1. no two subscriptions of the customer that are live over the same instant charge the same
   meter;
2. every accepted event is billed at most once: at most one usage line of one subscription
   covers it, each usage line counts exactly the events ingested by the time it was computed,
   and all lines of one (subscription, charge, period) add up to no more than the period's
   events;
3. every (subscription, boundary) has at most one invoice — and every boundary a run had to
   issue has one;
4. sent invoice numbers are PREFIX-000001 … PREFIX-N without gaps or repeats, the counter is N,
   drafts have no number;

and the outcome of the lifecycle commands depends only on the order they were sent: each
subscription's end is ``end_from_commands`` over the cancels and uncancels sent after its
first subscribe (a retried subscribe with the same terms is a no-op, whenever processed), in
sent order, leaving out those the engine refused for an overlap or an issued invoice; each
new invoice is draft or sent as the latest setting sent by its run instant says; the
customer's draft setting is the latest one sent.

``test_a_retried_subscribe_…`` below replays one counterexample the machine found as a fixed
sequence of its steps, so that it fails every time, not only when the search reaches it.

Embedded store (a SQLite file per example), the in-process broker, one worker thread and a
simulated clock: messages are processed at the clock's instant, never before they were sent.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import combinations
from pathlib import Path
from typing import Any

from dramatiq import Worker
from hypothesis import HealthCheck, currently_in_test_context, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import select

from domain.catalog import Plan
from domain.invoices import Terms
from domain.periods import bill_run_instant, midnight, zone
from domain.subscriptions import CANCEL, UNCANCEL, LifecycleCommand, end_from_commands
from persistence import catalog as catalog_repo
from persistence import db
from persistence.db import unit_of_work
from persistence.tables import (
    CommandLogRow,
    CustomerRow,
    DraftSettingRow,
    IngestBatchRow,
    InvoiceCounterRow,
    InvoiceLineRow,
    InvoiceRow,
    SubscriptionRow,
    UsageEventRow,
)
from scheduler.tick import tick
from services import catalog as catalog_service
from services import clock, deliveries
from workers import actors
from workers.broker import QUEUE, FailureRecorder, stub_broker, use

TZ = "Europe/Oslo"  # DST changes on 2026-03-29 and 2026-10-25, a few steps from the start
ENTITY, PREFIX, CUSTOMER = "acme", "AC", "c-1"
CATALOG: dict[str, Any] = {
    "entities": [{"id": ENTITY, "timezone": TZ, "invoice_prefix": PREFIX}],
    "meters": [
        {"id": "tokens", "aggregation": "sum"},
        {"id": "calls", "aggregation": "count"},
    ],
    "plans": [  # pro and tokens-weekly share the tokens meter: they may overlap
        {"id": "pro", "currency": "EUR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "10.00"},
            {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "0.01"}]},
        {"id": "tokens-weekly", "currency": "EUR", "interval": "week", "charges": [
            {"id": "t", "type": "usage", "meter": "tokens", "model": "unit",
             "unit_price": "1"}]},
        {"id": "calls", "currency": "EUR", "interval": "month", "charges": [
            {"id": "base", "type": "recurring", "amount": "5.00"},
            {"id": "calls", "type": "usage", "meter": "calls", "model": "unit",
             "unit_price": "0.10"}]},
    ],
    "customers": [{"id": CUSTOMER, "entity": ENTITY}],
}
AGGREGATION = {"tokens": "sum", "calls": "count"}
PLAN_METERS = {"pro": {"tokens"}, "tokens-weekly": {"tokens"}, "calls": {"calls"}}
CATALOG_AT = datetime(2000, 1, 1, tzinfo=UTC)  # the catalog's own draft setting (False)
START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
SUBSCRIPTION_IDS = ("s-1", "s-2", "s-3", "s-4")
PLANS = ("pro", "tokens-weekly", "calls")
EVENT_KEYS = tuple(f"e-{i}" for i in range(8))
REFUSED = "refused"


@dataclass
class Sent:
    """A message the application sent at ``sent_at``."""

    message: Any
    kind: str  # an actor: subscribe, cancel, uncancel, set_draft_invoices, record_usage, …
    args: tuple[Any, ...]
    sent_at: datetime
    deliveries: int = 0

    @property
    def message_id(self) -> str:
        return str(self.message.message_id)


def aggregate(meter: str, quantities: list[Decimal]) -> Decimal:
    if AGGREGATION[meter] == "count":
        return Decimal(len(quantities))
    return sum(quantities, Decimal(0))


def local_date(at: datetime) -> date:
    return at.astimezone(zone(TZ)).date()


def lifetime(row: SubscriptionRow) -> tuple[datetime, datetime | None]:
    return row.start_at, row.end_at


def live_together(a: SubscriptionRow, b: SubscriptionRow) -> bool:
    """Do ``[start_at, end_at)`` of a and b share an instant (None = no end)?"""
    (a0, a1), (b0, b1) = lifetime(a), lifetime(b)
    return (a1 is None or b0 < a1) and (b1 is None or a0 < b1)


class SubscriptionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="billing-machine-"))
        db.configure(f"sqlite:///{self.folder / 'billing.db'}")
        db.create_schema()
        catalog_service.apply_document(CATALOG, CATALOG_AT)
        self.previous_outbox = deliveries.use_outbox(self.folder / "outbox")
        self.clock = clock.SimulatedClock(START)
        clock.use(self.clock)
        self.broker = stub_broker(max_retries=0)
        use(self.broker)
        self.failures = FailureRecorder()
        self.broker.add_middleware(self.failures)
        self.worker = Worker(self.broker, worker_threads=1, worker_timeout=20)
        self.worker.start()
        self.sent: list[Sent] = []
        # subscription id -> the latest run instant it had to be invoiced up to
        self.billed_up_to: dict[str, datetime] = {}
        self.plans: dict[tuple[str, int], Plan] = {}
        self.drafts: list[tuple[str, date]] = []  # as of the last check of the invariants

    def teardown(self) -> None:
        try:
            self.worker.stop()
            self.broker.close()
            self.coverage_events()
        finally:
            clock.reset()
            deliveries.use_outbox(self.previous_outbox)
            db.engine().dispose()
            shutil.rmtree(self.folder, ignore_errors=True)

    def coverage_events(self) -> None:
        """What the example reached (``--hypothesis-show-statistics``)."""
        if not currently_in_test_context():
            return
        state = self.read()
        event(f"subscriptions: {len(state['subs'])}")
        event(f"invoices: {min(len(state['invoices']), 10)}{'+' if state['invoices'] else ''}")
        event(f"drafts: {any(i.status == 'draft' for i in state['invoices'])}")
        event(f"cancelled: {any(r.end for r in state['subs'])}")
        for row in state["log"].values():
            if row.outcome == REFUSED:
                event("refused: " + ("overlap" if "overlaps" in row.detail else
                                     "issued invoice" if "issued" in row.detail else
                                     "sent before" if "sent before" in row.detail else
                                     "other terms" if "other terms" in row.detail else "other"))
            elif row.outcome == "pending":
                event("pending command")

    # ------------------------------------------------------------------------ helpers

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def send(self, kind: str, *args: Any, deliver: bool = False) -> None:
        """The application sends a message now (one second after the previous one, so that
        sent instants are distinct and their order is the order of sending); dramatiq
        delivers it at once, or keeps it for a later step."""
        self.clock.set(self.now + timedelta(seconds=1))
        message = getattr(actors, kind).message_with_options(
            args=args, sent_at=self.now.isoformat())
        self.sent.append(Sent(message, kind, args, self.now))
        if deliver:
            self.deliver([self.sent[-1]])

    def ends(self) -> list[tuple[str, date, frozenset[str]]]:
        """(subscription, end, meters) of the cancelled subscriptions, as the app sees them."""
        with unit_of_work() as session:
            rows = session.scalars(select(SubscriptionRow).order_by(SubscriptionRow.id))
            return [(r.id, r.end, self.plan(session, r.plan_id, r.plan_version).meters)
                    for r in rows if r.end is not None]

    def drain(self) -> None:
        self.broker.join(QUEUE, fail_fast=False)
        self.worker.join()
        assert not self.failures.failures, self.failures.failures

    def deliver(self, messages: list[Sent]) -> None:
        """Deliver these messages, in this order, at the clock's instant (after they were
        sent); a message delivered before is delivered again with its message id. The
        clock moves on a second first, so that no event is ingested at the very instant an
        invoice was computed (which would make "ingested by then" ambiguous)."""
        self.clock.set(self.now + timedelta(seconds=1))
        for sent in messages:
            assert sent.sent_at <= self.now
            self.broker.enqueue(sent.message)
            sent.deliveries += 1
        self.drain()

    def pending(self) -> list[Sent]:
        return [s for s in self.sent if s.deliveries == 0]

    def delivered(self) -> list[Sent]:
        return [s for s in self.sent if s.deliveries > 0]

    # ------------------------------------------------------------------------ the application

    @initialize(plan=st.sampled_from(PLANS), days=st.integers(-35, 5))
    def a_first_subscription(self, plan: str, days: int) -> None:
        """Every example starts with s-1, delivered."""
        self.send_subscribe("s-1", plan, days, deliver=True)

    @rule(sub=st.sampled_from(SUBSCRIPTION_IDS), plan=st.sampled_from(PLANS),
          days=st.integers(-35, 35), deliver=st.booleans())
    def send_subscribe(self, sub: str, plan: str, days: int, deliver: bool) -> None:
        start = local_date(self.now) + timedelta(days=days)
        self.send("subscribe", sub, CUSTOMER, plan, start.isoformat(), deliver=deliver)

    @precondition(lambda self: any(s.kind == "subscribe" for s in self.pending()))
    @rule(data=st.data())
    def retry_subscribe(self, data: st.DataObject) -> None:
        """The application sends a subscribe that is still in flight again, with the same
        terms (a retry after a timeout: a new message), and the retry is processed first.
        The subscription began with the first one sent; the other is a no-op."""
        again = data.draw(st.sampled_from([s for s in self.pending() if s.kind == "subscribe"]),
                          label="in flight")
        self.send("subscribe", *again.args, deliver=True)

    @precondition(lambda self: self.ends())
    @rule(data=st.data(), sub=st.sampled_from(SUBSCRIPTION_IDS), deliver=st.booleans())
    def send_subscribe_at_an_end(self, data: st.DataObject, sub: str, deliver: bool) -> None:
        """Subscribe from the day a cancelled subscription ends, on a plan charging the same
        meter: it must not overlap that one, whatever uncancel races with it."""
        _, end, meters = data.draw(st.sampled_from(self.ends()), label="ends")
        plan = data.draw(st.sampled_from([p for p in PLANS if PLAN_METERS[p] & meters]),
                         label="plan")
        self.send("subscribe", sub, CUSTOMER, plan, end.isoformat(), deliver=deliver)

    @rule(data=st.data(), commands=st.lists(st.tuples(
        st.sampled_from((CANCEL, UNCANCEL)), st.integers(0, 60 * 24 * 20), st.booleans()),
        min_size=1, max_size=3))
    def send_lifecycle(self, data: st.DataObject, commands: list[tuple[str, int, bool]]) -> None:
        """A few cancels and uncancels of one subscription the application subscribed
        (processed or not), minutes to 20 days apart, each delivered at once or kept for
        later."""
        subscribed = sorted({s.args[0] for s in self.sent if s.kind == "subscribe"})
        sub = data.draw(st.sampled_from(subscribed), label="subscription")
        for kind, minutes, deliver in commands:
            self.clock.set(self.now + timedelta(minutes=minutes))
            self.send(kind, sub, deliver=deliver)

    @rule(value=st.booleans(), deliver=st.booleans())
    def send_set_draft_invoices(self, value: bool, deliver: bool) -> None:
        self.send("set_draft_invoices", CUSTOMER, value, deliver=deliver)

    @rule(events=st.lists(st.tuples(
        st.sampled_from(EVENT_KEYS), st.sampled_from(("tokens", "calls")),
        st.integers(0, 9), st.integers(-60 * 24 * 45, 120)), min_size=1, max_size=4),
        deliver=st.booleans())
    def send_usage(self, events: list[tuple[str, str, int, int]], deliver: bool) -> None:
        """A batch of events whose keys come from a small pool (duplicates, conflicts),
        stamped from 45 days ago to 2 hours ahead (some rejected as in the future)."""
        batch = [{"key": key, "customer": CUSTOMER, "meter": meter, "quantity": str(q),
                  "timestamp": (self.now + timedelta(minutes=m)).isoformat()}
                 for key, meter, q, m in events]
        self.send("record_usage", batch, deliver=deliver)

    @precondition(lambda self: self.drafts)
    @rule(data=st.data(), deliver=st.booleans())
    def send_release(self, data: st.DataObject, deliver: bool) -> None:
        """An operator releases a draft: it is numbered when it is sent."""
        sub, boundary = data.draw(st.sampled_from(self.drafts), label="draft")
        self.send("release_invoice", sub, boundary.isoformat(), deliver=deliver)

    # ------------------------------------------------------------------------ dramatiq

    @precondition(lambda self: self.pending())
    @rule(data=st.data())
    def deliver_one(self, data: st.DataObject) -> None:
        self.deliver([data.draw(st.sampled_from(self.pending()), label="message")])

    @precondition(lambda self: self.delivered())
    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        """A duplicate delivery: the same message, the same message id."""
        self.deliver([data.draw(st.sampled_from(self.delivered()), label="duplicate")])

    @precondition(lambda self: self.pending())
    @rule(data=st.data())
    def deliver_all(self, data: st.DataObject) -> None:
        """Every pending message, and some delivered ones again, in a random order."""
        again = data.draw(st.lists(st.sampled_from(self.delivered()), max_size=3)
                          if self.delivered() else st.just([]), label="duplicates")
        order = data.draw(st.permutations([*self.pending(), *again]), label="order")
        self.deliver(order)

    # ------------------------------------------------------------------------ bill runs

    @rule(hours=st.integers(1, 40 * 24))
    def bill_run(self, hours: int) -> None:
        """The clock moves on (hours, or many days while the scheduler was down) and the
        scheduler ticks: the day's run is claimed (if its 08:15 has come and it was not
        claimed yet) and issues every invoice due, catching up the days missed."""
        self.clock.set(self.now + timedelta(hours=hours))
        with unit_of_work() as session:
            before = {r.id for r in session.scalars(select(InvoiceRow))}
            settings_now = [(r.sent_at, r.value) for r in session.scalars(
                select(DraftSettingRow).order_by(DraftSettingRow.sent_at, DraftSettingRow.id))]
            existing = {r.id: r.created_at for r in session.scalars(select(SubscriptionRow))}
        claimed = tick(self.now)
        self.drain()
        assert [e for e, _ in claimed] in ([], [ENTITY])
        if not claimed:
            return
        run_at = bill_run_instant(claimed[0][1], TZ)
        for sub, created_at in existing.items():
            if created_at <= run_at:
                self.billed_up_to[sub] = max(self.billed_up_to.get(sub, run_at), run_at)
        # the setting in force at the run instant, as known when the run was made
        draft = [value for at, value in settings_now if at <= run_at][-1]
        with unit_of_work() as session:
            new = [r for r in session.scalars(select(InvoiceRow)) if r.id not in before]
        for invoice in new:
            assert invoice.issued_at == run_at, (invoice.subscription_id, invoice.boundary)
            assert invoice.status == ("draft" if draft else "sent"), (
                f"{invoice.subscription_id}@{invoice.boundary} is {invoice.status} with "
                f"draft_invoices={draft} at {run_at}")

    # ------------------------------------------------------------------------ invariants

    def plan(self, session: Any, plan_id: str, version: int) -> Plan:
        key = (plan_id, version)
        if key not in self.plans:
            found = catalog_repo.plan(session, plan_id, version)
            assert found is not None
            self.plans[key] = found
        return self.plans[key]

    def read(self) -> dict[str, Any]:
        with unit_of_work() as session:
            subs = list(session.scalars(select(SubscriptionRow).order_by(SubscriptionRow.id)))
            return {
                "subs": subs,
                "plans": {r.id: self.plan(session, r.plan_id, r.plan_version) for r in subs},
                "invoices": list(session.scalars(select(InvoiceRow))),
                "lines": list(session.scalars(select(InvoiceLineRow))),
                "events": list(session.scalars(select(UsageEventRow))),
                "counter": session.get(InvoiceCounterRow, ENTITY),
                "log": {r.message_id: r for r in session.scalars(select(CommandLogRow))},
                "batches": set(session.scalars(select(IngestBatchRow.message_id))),
                "customer": session.get(CustomerRow, CUSTOMER),
            }

    @invariant()
    def billing_invariants(self) -> None:
        """Read the store once and check every invariant on it."""
        state = self.read()
        self.drafts = sorted((i.subscription_id, i.boundary) for i in state["invoices"]
                             if i.status == "draft")
        self.no_two_live_subscriptions_charge_one_meter(state)
        self.every_event_is_billed_at_most_once(state)
        self.every_boundary_is_invoiced_once(state)
        self.numbers_are_gapless(state)
        self.commands_apply_in_the_order_sent(state)

    def no_two_live_subscriptions_charge_one_meter(self, state: dict[str, Any]) -> None:
        for a, b in combinations(state["subs"], 2):
            shared = state["plans"][a.id].meters & state["plans"][b.id].meters
            assert not (shared and live_together(a, b)), (
                f"{a.id} ({a.plan_id}, {a.start}..{a.end}) and {b.id} ({b.plan_id}, "
                f"{b.start}..{b.end}) are both live on {sorted(shared)}")

    def every_event_is_billed_at_most_once(self, state: dict[str, Any]) -> None:
        invoices = {i.id: i for i in state["invoices"]}
        meter_of = {(sub, c.id): c.meter for sub, plan in state["plans"].items()
                    for c in plan.usage_charges}
        events = defaultdict(list)
        for e in state["events"]:
            assert e.customer_id == CUSTOMER
            events[e.meter_id].append(e)

        def in_period(e: UsageEventRow, line: InvoiceLineRow) -> bool:
            return midnight(line.period_start, TZ) <= e.timestamp < midnight(line.period_end, TZ)

        covering: dict[str, list[tuple[str, date]]] = defaultdict(list)
        totals: dict[tuple[str, str, date], Decimal] = defaultdict(Decimal)
        for line in state["lines"]:
            if line.type not in ("usage", "adjustment"):
                continue
            invoice = invoices[line.invoice_id]
            meter = meter_of[(invoice.subscription_id, line.charge_id)]
            in_it = [e for e in events[meter] if in_period(e, line)]
            totals[(invoice.subscription_id, line.charge_id, line.period_start)] += line.quantity
            if line.type != "usage":
                continue
            counted = [e.quantity for e in in_it if e.ingested_at <= invoice.computed_at]
            assert line.quantity == aggregate(meter, counted), (
                f"{invoice.subscription_id}@{invoice.boundary} {line.charge_id} "
                f"{line.period_start}..{line.period_end}: quantity {line.quantity}, but "
                f"{aggregate(meter, counted)} from the events ingested by its computation")
            for e in in_it:
                covering[e.key].append((invoice.subscription_id, invoice.boundary))
        for key, lines in covering.items():
            assert len(lines) <= 1, f"event {key} is covered by the usage lines of {lines}"
        for (sub, charge, period_start), billed in totals.items():
            meter = meter_of[(sub, charge)]
            period = [line for line in state["lines"] if line.charge_id == charge
                      and line.period_start == period_start
                      and invoices[line.invoice_id].subscription_id == sub]
            everything = [e.quantity for e in events[meter] if in_period(e, period[0])]
            assert billed <= aggregate(meter, everything), (
                f"{sub} {charge} from {period_start}: {billed} billed over all its lines, "
                f"the period has {aggregate(meter, everything)}")

    def every_boundary_is_invoiced_once(self, state: dict[str, Any]) -> None:
        seen: dict[tuple[str, date], int] = defaultdict(int)
        for invoice in state["invoices"]:
            seen[(invoice.subscription_id, invoice.boundary)] += 1
        assert [pair for pair, n in seen.items() if n > 1] == []
        subs = {row.id: row for row in state["subs"]}
        for sub, up_to in self.billed_up_to.items():
            row, plan = subs[sub], state["plans"][sub]
            terms = Terms(start=row.start, end=row.end, plan=plan)
            due, k = [], 0
            while midnight(terms.boundary(k), TZ) <= up_to and terms.reaches(terms.boundary(k)):
                if terms.has_lines(k):
                    due.append(terms.boundary(k))
                k += 1
            got = sorted(b for s, b in seen if s == sub)
            assert got == due, f"{sub}: invoices at {got}, runs up to {up_to} were due {due}"
            for invoice in state["invoices"]:
                if invoice.subscription_id == sub:
                    assert invoice.final == (invoice.boundary == row.end), (sub, invoice.boundary)

    def numbers_are_gapless(self, state: dict[str, Any]) -> None:
        sent = [i for i in state["invoices"] if i.status == "sent"]
        assert all(i.number is None for i in state["invoices"] if i.status == "draft")
        assert all(i.number is not None and i.sent_at is not None for i in sent)
        assert {i.status for i in state["invoices"]} <= {"draft", "sent"}
        numbers = sorted(i.number for i in sent)
        assert numbers == [f"{PREFIX}-{n:06d}" for n in range(1, len(sent) + 1)], numbers
        last = 0 if state["counter"] is None else state["counter"].last_number
        assert last == len(sent)
        by_number = sorted(sent, key=lambda i: i.number)
        assert [i.sent_at for i in by_number] == sorted(i.sent_at for i in sent)

    def commands_apply_in_the_order_sent(self, state: dict[str, Any]) -> None:
        """Each subscription's end is its cancels and uncancels sent after it began (the
        first subscribe sent with its terms), in sent order, leaving out those processed
        so far and those the engine refused for a reason of its state (an overlap, an
        issued invoice) — not for having been processed before a later-sent subscribe."""
        log = state["log"]
        outcome = {mid: row.outcome for mid, row in log.items()}

        def in_the_fold(s: Sent) -> bool:
            if s.message_id not in log:
                return False  # not processed yet
            entry = log[s.message_id]
            return entry.outcome != REFUSED or "sent before" in entry.detail

        for row in state["subs"]:
            plan = state["plans"][row.id]
            terms = (row.id, CUSTOMER, row.plan_id, row.start.isoformat())
            began = min(s.sent_at for s in self.sent if s.kind == "subscribe"
                        and s.args == terms and outcome.get(s.message_id) in (
                            "applied", "unchanged"))
            commands = [LifecycleCommand(s.kind, s.sent_at) for s in self.sent
                        if s.kind in (CANCEL, UNCANCEL) and s.args[0] == row.id
                        and s.sent_at > began and in_the_fold(s)]
            expected = end_from_commands(row.start, plan.interval, TZ, commands)
            assert row.end == expected, (
                f"{row.id} ends {row.end}; the cancels and uncancels sent after its first "
                f"subscribe ({began.isoformat()}) that were not refused for an overlap or an "
                f"issued invoice ({[(c.kind, c.sent_at.isoformat()) for c in commands]}) "
                f"give {expected}")
            assert row.end_at == (None if expected is None else midnight(expected, TZ))
        settings_sent = [(CATALOG_AT, False), *sorted(
            (s.sent_at, s.args[1]) for s in self.sent
            if s.kind == "set_draft_invoices" and s.message_id in outcome)]
        assert state["customer"].draft_invoices == settings_sent[-1][1]
        for s in self.sent:  # a delivered message has one outcome; a pending one none
            recorded = s.message_id in (state["batches"] if s.kind == "record_usage"
                                        else outcome)
            assert recorded == (s.deliveries > 0), (s.kind, s.message_id, s.deliveries)


SubscriptionMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestSubscriptions = SubscriptionMachine.TestCase


def test_a_retried_subscribe_processed_first_keeps_the_cancel_sent_after_the_first() -> None:
    """A counterexample the machine found, as a fixed sequence of its steps: the application
    sends subscribe(s-2) at t1, cancel(s-2) at t2, and — s-2 not confirmed yet — the same
    subscribe again at t3. Processed in sent order, s-2 is cancelled (the t3 subscribe is a
    no-op); processed as t2, t3, t1 (or t3, t2, t1) it must be too."""
    machine = SubscriptionMachine()
    try:
        machine.a_first_subscription("calls", 0)
        machine.send_subscribe("s-2", "pro", 0, deliver=False)  # t1: in flight
        machine.send("cancel", "s-2", deliver=True)  # t2: kept, s-2 is not known yet
        first = next(s for s in machine.pending() if s.kind == "subscribe")
        machine.send("subscribe", *first.args, deliver=True)  # t3: the retry, processed first
        machine.deliver([first])  # t1, processed last: a no-op
        machine.billing_invariants()
    finally:
        machine.teardown()
