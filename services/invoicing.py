"""Bill runs and invoices: what a run must issue, issuing a chunk of (subscription,
boundary) pairs, release and regeneration of drafts, and the preview (SPEC §7, §8, §10).

A run looks only at each subscription's next boundary (``next_k``), never at its history.
A subscription whose invoice cannot be computed (its data cannot be billed) is isolated:
the failure is recorded for the operator, the rest of its run is issued, and the next run
tries it again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from domain.catalog import Entity, Meter, Plan
from domain.filters import Filter
from domain.invoices import (
    IN_FORCE,
    ComposedInvoice,
    InvoiceStatus,
    Terms,
    can_become,
    compose_invoice,
    next_boundary_after,
    reached,
)
from domain.money import format_money
from domain.periods import bill_run_instant, boundary_index, midnight, next_run_at
from domain.plan_history import PlanEntry, PlanHistory
from domain.subscriptions import parse_discount
from domain.taxes import NO_TAX
from domain.validation import Invalid, parse_date
from persistence import billruns
from persistence import catalog as catalog_repo
from persistence import invoices as invoices_repo
from persistence import plan_changes as plan_changes_repo
from persistence import subscriptions as subs_repo
from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import InvoiceRow, SubscriptionRow
from persistence.usage import Period
from services import credits, deliveries, late, sending
from services.commands import NOT_FOUND, Outcome, applied, invalid, not_found, refused
from services.credits import Sent
from services.delivery import format_amount
from services.outages import is_infrastructure

CHUNK = 250  # (subscription, boundary) pairs per issue_invoices message
log = structlog.get_logger("billing")


def terms_of(row: SubscriptionRow, plan: Plan, history: PlanHistory | None = None) -> Terms:
    """``plan`` is the subscription's first plan; ``history`` its plan history (SPEC §14),
    when it has changed plans."""
    discount = parse_discount(row.discount, "discount") if row.discount else None
    return Terms(start=row.start, end=row.end, plan=plan, discount=discount,
                 history=history, version=row.plan_version)


def plan_of(session: Session, row: SubscriptionRow) -> Plan:
    """The version of the plan the subscription was sold on."""
    plan = catalog_repo.plan(session, row.plan_id, row.plan_version)
    if plan is None:
        raise Invalid("plan", f"{row.plan_id!r} version {row.plan_version} is not stored")
    return plan


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


@dataclass(frozen=True)
class ToCompose:
    row: SubscriptionRow
    plan: Plan
    k: int
    invoice_id: int | None = None  # when it exists (a regeneration)


@dataclass(frozen=True)
class Computed:
    invoice: ComposedInvoice | None  # None: the invoice would have no line
    accounts: tuple[str, ...] = ()  # the late events its adjustment lines bill


def compute_many(session: Session, entity: Entity, items: Sequence[ToCompose],
                 ingested_by: datetime | None = None, *,
                 estimate: bool = False) -> list[Computed | Exception]:
    """Compose the invoices at ``b_k`` of many subscriptions of one entity: their closing
    periods aggregated set-wise (one round of ``GROUP BY`` per distinct period) and their
    adjustment lines for late usage (SPEC §11). Everything stored counts, unless
    ``ingested_by`` (a preview of the past) limits it. An item that cannot be composed gets
    its exception instead (the others are unaffected). An ``estimate`` (SPEC §10) reads
    the hourly rollups, which give the same totals; invoices read the events themselves."""
    meters = catalog_repo.meters(session)
    histories = plan_changes_repo.histories(session, [i.row for i in items])
    terms = [terms_of(i.row, i.plan, histories.get(i.row.id)) for i in items]
    segments = [[] if i.k == 0 else t.segments(i.k - 1) for i, t in zip(items, terms,
                                                                      strict=True)]
    found = closing_usage(session, meters, [
        (i.row.customer_id, s.plan, Period(midnight(s.start, entity.timezone),
                                           midnight(s.end, entity.timezone), ingested_by))
        for i, segs in zip(items, segments, strict=True) for s in segs], estimate=estimate)
    per_segment = iter(found)  # each item's segments, in order
    usages: list[dict[tuple[date, str, str | None], Decimal]] = []
    for segs in segments:
        usage: dict[tuple[date, str, str | None], Decimal] = {}
        for s in segs:
            usage.update(((s.start, c, g), q) for (c, g), q in next(per_segment).items())
        usages.append(usage)
    advance = _advance(session, items, terms)
    adjusting = [late.ToAdjust(i.row, i.plan, i.k, i.invoice_id, history=t.plans)
                 for i, t in zip(items, terms, strict=True)]
    _adjust(session, entity, adjusting, ingested_by, meters)
    taxes = catalog_repo.tax_policies(session, {i.row.customer_id for i in items})
    composed: list[Computed | Exception] = []
    for item, term, usage, adjusted in zip(items, terms, usages, adjusting, strict=True):
        if isinstance(adjusted.error, Exception):
            composed.append(adjusted.error)
            continue
        try:
            invoice = compose_invoice(term, item.k, usage, adjusted.lines,
                                      taxes.get(item.row.customer_id, NO_TAX),
                                      advance.get(item.row.id, IN_FORCE))
            composed.append(Computed(invoice, tuple(adjusted.accounts)))
        except Exception as exc:  # this subscription's data cannot be billed
            composed.append(exc)
    return composed


def _advance(session: Session, items: Sequence[ToCompose], terms: Sequence[Terms]
             ) -> dict[str, PlanEntry | None]:
    """SPEC §14: for the subscriptions that ever changed plans, the plan whose recurring
    lines the invoice at ``b_(k−1)`` carried (None: it carried none, or was not issued) —
    what the proration of period k−1 is against (a change on ``b_(k−1)`` made after that
    invoice, or called off since, is prorated too). The others bill the plan in force all
    along."""
    wanted = {(i.row.id, t.boundary(i.k - 1)) for i, t in zip(items, terms, strict=True)
              if i.k >= 1 and t.plans.changes}
    if not wanted:
        return {}
    carried = invoices_repo.advance_plans(session, wanted)
    plans = catalog_repo.plans(session, {key for key in carried.values() if key is not None})
    return {sub: None if (key := carried.get((sub, day))) is None
            else PlanEntry(day, plans[key], key[1]) for sub, day in wanted}


def closing_usage(session: Session, meters: Mapping[str, Meter],
                  items: Sequence[tuple[str, Plan, Period]], *,
                  estimate: bool = False) -> list[dict[tuple[str, str | None], Decimal]]:
    """The usage of each ``(customer, plan, period)`` per usage charge and group,
    aggregated set-wise: per distinct period, one round of ``GROUP BY``s for the charges
    without filters, and one per distinct set of filters on a meter (SPEC §13) for those
    with."""
    plain: dict[Period, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    grouped: dict[tuple[Period, str, tuple[Filter, ...]], set[str]] = defaultdict(set)
    for customer, plan, period in items:
        for charge in plan.usage_charges:
            if charge.filters:
                grouped[(period, charge.meter, charge.filters)].add(customer)
            else:
                plain[period][0].add(customer)
                plain[period][1].add(charge.meter)
    totals = {period: usage_repo.aggregate_many(session, period, customers,
                                                [meters[m] for m in sorted(meter_ids)],
                                                rolled_up=estimate)
              for period, (customers, meter_ids) in plain.items()}
    by_group = {key: usage_repo.aggregate_groups(session, key[0], customers, meters[key[1]],
                                                 key[2], rolled_up=estimate)
                for key, customers in grouped.items()}
    result: list[dict[tuple[str, str | None], Decimal]] = []
    for customer, plan, period in items:
        usage: dict[tuple[str, str | None], Decimal] = {}
        for c in plan.usage_charges:
            if c.filters:
                found = by_group[(period, c.meter, c.filters)]
                usage.update(((c.id, g), found[(customer, g)]) for g, _ in c.groups)
            else:
                usage[(c.id, None)] = totals[period][(customer, c.meter)]
        result.append(usage)
    return result


def _adjust(session: Session, entity: Entity, items: list[late.ToAdjust],
            ingested_by: datetime | None, meters: Mapping[str, Meter]) -> None:
    """Adjustment lines for all items at once; if that fails, item by item, so that one
    subscription whose data cannot be billed does not hold the others back."""
    try:
        with session.begin_nested():
            late.adjust(session, entity, items, ingested_by, meters)
        return
    except Exception as exc:
        if is_infrastructure(exc):
            raise
    for item in items:
        item.lines.clear()
        item.accounts.clear()
        try:
            with session.begin_nested():
                late.adjust(session, entity, [item], ingested_by, meters)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            item.error = exc


def compute(session: Session, row: SubscriptionRow, plan: Plan, entity: Entity, k: int,
            ingested_by: datetime | None = None, invoice_id: int | None = None, *,
            estimate: bool = False) -> Computed:
    """Aggregate period k−1 in SQL and compose the invoice at ``b_k``."""
    result = compute_many(session, entity, [ToCompose(row, plan, k, invoice_id)],
                          ingested_by, estimate=estimate)[0]
    if isinstance(result, Exception):
        raise result
    return result


# ---------------------------------------------------------------------------- bill runs


@dataclass(frozen=True)
class BillRun:
    entity: str
    run_at: datetime
    due: list[tuple[str, date]]  # (subscription, boundary), in that order
    notes: tuple[str, ...] = ()  # why something due is not in this run
    customers: Mapping[str, str] = field(default_factory=dict)  # subscription -> customer

    def chunks(self, size: int = CHUNK) -> list[list[tuple[str, date]]]:
        """The run's pairs in chunks of about ``size`` (one ``issue_invoices`` message and
        transaction each), a customer's pairs never split across two: its invoices then
        take its prepaid credits in (subscription, boundary) order however the chunks are
        spread over workers (SPEC §12). A customer with more than ``size`` pairs is a
        chunk of its own. Each chunk keeps the run's order."""
        groups: dict[str, list[int]] = defaultdict(list)
        for index, (subscription, _) in enumerate(self.due):
            groups[self.customers.get(subscription, subscription)].append(index)
        chunks: list[list[int]] = []
        current: list[int] = []
        for indexes in sorted(groups.values(), key=lambda g: g[0]):
            if current and len(current) + len(indexes) > size:
                chunks.append(current)
                current = []
            current.extend(indexes)
        if current:
            chunks.append(current)
        return [[self.due[i] for i in sorted(chunk)] for chunk in chunks]


def due_invoices(session: Session, entity: Entity, run_at: datetime,
                 now: datetime) -> tuple[list[tuple[str, date]], dict[str, str]]:
    """(subscription, boundary) pairs the run at ``run_at`` must issue, in (subscription,
    boundary) order: from each subscription's next boundary on, never its history. A
    subscription with nothing to issue moves its next boundary on; one whose data cannot be
    billed is recorded as failed for this run (the next run tries again)."""
    subs = subs_repo.due(session, entity.id, run_at)
    plans = catalog_repo.plans(session, {(s.plan_id, s.plan_version) for s in subs})
    changed = plan_changes_repo.with_changes(session, [s.id for s in subs])
    histories = plan_changes_repo.histories(session, [s for s in subs if s.id in changed])
    failed = invoices_repo.failed_in_run(session, run_at)
    due: list[tuple[str, date]] = []
    moves: list[subs_repo.Advance] = []
    for sub in subs:
        try:
            plan = plans.get((sub.plan_id, sub.plan_version)) or plan_of(session, sub)
            terms = terms_of(sub, plan, histories.get(sub.id))
            boundaries = reached(terms, entity.timezone, run_at, sub.next_k)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            invoices_repo.record_failure(session, sub.id, sub.next_boundary, run_at,
                                         _error(exc), now)
            continue
        with_lines = [(k, b) for k, b in boundaries if terms.has_lines(k)]
        if not with_lines and boundaries:  # e.g. the opening invoice of a usage-only plan
            k = boundaries[-1][0] + 1
            # read without a lock: only if a cancel or uncancel has not moved its end since
            # (an uncancel may have given the boundary just passed a line to invoice)
            moves.append(subs_repo.Advance(sub.id, k, terms.boundary(k),
                                           midnight(terms.boundary(k), entity.timezone),
                                           if_unchanged=True, ends=sub.end))
        for _, b in with_lines:
            if (sub.id, b) in failed:
                break  # this run failed it already; later boundaries wait behind it
            due.append((sub.id, b))
    subs_repo.advance(session, moves)
    return due, {sub.id: sub.customer_id for sub in subs}


def plan_bill_run(entity: str, local_date: date | None, now: datetime) -> BillRun | Outcome:
    """What the entity's bill run of ``local_date`` (08:15 local) must issue, or why it
    cannot run (an unknown entity, a run that has not come yet). ``local_date`` None: a
    run at ``now`` itself, issuing everything due by now (``billing bill-run --now``)."""
    with unit_of_work() as session:
        # share-locked: its zone cannot change while the run computes instants from it
        # and advances subscriptions (a catalog change locks it first)
        found = catalog_repo.entity(session, entity, share=True)
        if found is None:
            return refused(f"bill-run: {entity!r} is not a known entity", code=NOT_FOUND,
                           field="entity")
        run_at = now if local_date is None else bill_run_instant(local_date, found.timezone)
        if run_at > now:
            return refused(f"bill-run: the {local_date} run is at {run_at.isoformat()}, "
                           "which has not come yet")
        due, customers = due_invoices(session, found, run_at, now)
        notes = tuple(
            f"{row.id}: created at {row.created_at:%Y-%m-%d %H:%M} UTC, after this run "
            f"({run_at:%Y-%m-%d %H:%M} UTC): its invoice at {row.next_boundary} comes with "
            f"the next run, {_utc(next_run_at(found.timezone, max(row.created_at, now)))}"
            for row in subs_repo.created_after_run(session, entity, run_at))
        return BillRun(entity, run_at, due, notes, customers)


def _utc(instant: datetime) -> str:
    return f"{instant:%Y-%m-%d %H:%M} UTC"


def finish_bill_run(entity: str, local_date: date, now: datetime) -> None:
    """The run's work is all sent (the issue messages are the broker's to deliver): the
    claim is done, and no tick sends it again."""
    with unit_of_work() as session:
        billruns.mark_done(session, entity, local_date, now)


def _store(session: Session, new: list[invoices_repo.NewInvoice], issued_at: datetime,
           now: datetime) -> tuple[dict[tuple[str, date], int], dict[tuple[str, date], str]]:
    """Insert the invoices in bulk; if the database refuses one of them, insert them one
    by one so that only that one fails. The ids inserted, and the errors."""
    try:
        with session.begin_nested():
            return invoices_repo.add_many(session, new, issued_at=issued_at,
                                          computed_at=now), {}
    except DBAPIError as exc:
        if is_infrastructure(exc):
            raise
    ids: dict[tuple[str, date], int] = {}
    errors: dict[tuple[str, date], str] = {}
    for n in new:
        try:
            with session.begin_nested():
                ids.update(invoices_repo.add_many(session, [n], issued_at=issued_at,
                                                  computed_at=now))
        except DBAPIError as exc:
            if is_infrastructure(exc):
                raise
            errors[(n.subscription, n.invoice.boundary)] = _error(exc.orig or exc)
    return ids, errors


def issue(session: Session, now: datetime, pairs: Sequence[tuple[str, date]],
          issued_at: datetime) -> list[Outcome]:
    """Issue the invoices of ``pairs`` that do not exist yet, in one transaction: each
    subscription's boundaries in order (a later one sees the earlier ones), inserted in
    bulk, then the sent ones numbered in the order of ``pairs`` under one counter lock.
    A subscription whose invoice cannot be computed or stored is recorded as failed; the
    others are issued. The phases: load, classify, compose and store (round by round),
    advance, finalize (credits, numbers, sending)."""
    run = _Issue.load(session, now, pairs, issued_at)
    run.classify()
    for turn in sorted(run.rounds):  # a subscription's boundaries in order, round by round
        run.store(turn, run.compose(turn))
    run.advance_subscriptions()
    run.finalize()
    return run.outcomes


@dataclass
class _Issue:
    """One ``issue`` call's state, phase by phase."""

    session: Session
    now: datetime
    pairs: Sequence[tuple[str, date]]
    issued_at: datetime
    subs: dict[str, SubscriptionRow]
    exists: set[tuple[str, date]]
    plans: dict[tuple[str, int], Plan]
    drafts: dict[str, bool]
    entities: dict[str, Entity | None]
    outcomes: list[Outcome]
    failed: dict[str, str] = field(default_factory=dict)  # subscription -> error
    rounds: dict[int, list[tuple[int, ToCompose]]] = field(
        default_factory=lambda: defaultdict(list))
    advance: dict[str, tuple[int, Terms]] = field(default_factory=dict)
    issued: dict[int, tuple[int, invoices_repo.NewInvoice]] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, now: datetime, pairs: Sequence[tuple[str, date]],
             issued_at: datetime) -> _Issue:
        subs_repo.lock(session, [s for s, _ in pairs])  # see services.late: no event lost
        subs = subs_repo.get_many(session, [s for s, _ in pairs])
        return cls(
            session, now, pairs, issued_at, subs, set(invoices_repo.existing(session, pairs)),
            catalog_repo.plans(session, {(r.plan_id, r.plan_version) for r in subs.values()}),
            catalog_repo.drafts_at(session, {r.customer_id for r in subs.values()}, issued_at),
            {e: catalog_repo.entity(session, e) for e in {r.entity_id for r in subs.values()}},
            [refused(f"{s}@{b}: unknown subscription") for s, b in pairs])

    def fail(self, index: int, row: SubscriptionRow, boundary: date, error: str) -> None:
        """The subscription cannot be invoiced at ``boundary``: recorded; its later
        boundaries wait."""
        self.failed[row.id] = error
        invoices_repo.record_failure(self.session, row.id, boundary, self.issued_at, error,
                                     self.now)
        self.outcomes[index] = refused(f"{row.id}@{boundary}: cannot be invoiced: {error}")

    def classify(self) -> None:
        """Each pair: refused, existing already (its subscription still advances), or to
        compose in its subscription's next round."""
        position: dict[str, int] = defaultdict(int)
        for index, (subscription, boundary) in enumerate(self.pairs):
            row = self.subs.get(subscription)
            if row is None:
                continue
            item = self._classify(index, row, boundary)
            if item is not None:
                self.rounds[position[subscription]].append((index, item))
                position[subscription] += 1

    def _classify(self, index: int, row: SubscriptionRow, boundary: date) -> ToCompose | None:
        label = f"{row.id}@{boundary}"
        if row.created_at > self.issued_at:
            self.outcomes[index] = refused(
                f"{label}: did not exist at {self.issued_at.isoformat()}")
            return None
        try:
            plan = self.plans.get((row.plan_id, row.plan_version)) or plan_of(self.session, row)
            terms = terms_of(row, plan)
            k = boundary_index(row.start, plan.interval, boundary)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            self.fail(index, row, boundary, _error(exc))
            return None
        if k is None or not terms.reaches(boundary):
            self.outcomes[index] = refused(f"{label}: not a boundary the subscription reaches")
            return None
        zone = self.entities[row.entity_id]
        assert zone is not None
        if (row.id, boundary) in self.exists:
            self.outcomes[index] = Outcome("unchanged", f"{label}: exists")
            if k + 1 > self.advance.get(row.id, (0, terms))[0]:
                self.advance[row.id] = (k + 1, terms)
            return None
        if midnight(boundary, zone.timezone) > self.issued_at:
            # planned in another zone than the entity's now (a catalog change came between
            # the run's plan and this chunk): its period is not over at this run; a later
            # run of the entity's zone issues it
            self.outcomes[index] = refused(
                f"{label}: its period ends at {midnight(boundary, zone.timezone).isoformat()} "
                f"in {zone.timezone}, after this run ({self.issued_at.isoformat()})")
            return None
        return ToCompose(row, plan, k)

    def compose(self, turn: int) -> list[tuple[int, invoices_repo.NewInvoice, tuple[str, ...]]]:
        """The invoices of one round, computed set-wise per entity: (pair index, invoice,
        the late events it bills)."""
        new: list[tuple[int, invoices_repo.NewInvoice, tuple[str, ...]]] = []
        by_entity: dict[str, list[tuple[int, ToCompose]]] = defaultdict(list)
        for index, item in self.rounds[turn]:
            if item.row.id in self.failed:
                self.outcomes[index] = refused(
                    f"{item.row.id}@{self.pairs[index][1]}: waits for an earlier boundary "
                    f"that failed: {self.failed[item.row.id]}")
            else:
                by_entity[item.row.entity_id].append((index, item))
        for entity_id, items in by_entity.items():
            entity = self.entities[entity_id]
            assert entity is not None
            composed = compute_many(self.session, entity, [item for _, item in items])
            for (index, item), result in zip(items, composed, strict=True):
                if isinstance(result, Exception):
                    if is_infrastructure(result):
                        raise result
                    self.fail(index, item.row, self.pairs[index][1], _error(result))
                    continue
                self.advance[item.row.id] = (item.k + 1, terms_of(item.row, item.plan))
                if result.invoice is None:
                    self.outcomes[index] = Outcome(
                        "unchanged", f"{item.row.id}@{self.pairs[index][1]}: no line to "
                                     "invoice")
                else:
                    new.append((index, invoices_repo.NewInvoice(
                        item.row.id, entity_id, item.row.customer_id, item.row.plan_version,
                        result.invoice), result.accounts))
        return new

    def store(self, turn: int,
              new: list[tuple[int, invoices_repo.NewInvoice, tuple[str, ...]]]) -> None:
        """Insert a round's invoices in bulk and account the late events they bill, before
        the next round reads what is open."""
        ids, errors = _store(self.session, [n for _, n, _ in new], self.issued_at, self.now)
        billed_by: dict[int, tuple[str, ...]] = {}
        for index, n, accounts in new:
            key = (n.subscription, n.invoice.boundary)
            if key in ids:
                self.issued[index] = (ids[key], n)
                billed_by[ids[key]] = accounts
            elif key in errors:
                row = self.subs[n.subscription]
                self.advance[row.id] = (self.advance[row.id][0] - 1, self.advance[row.id][1])
                self.fail(index, row, n.invoice.boundary, errors[key])
            else:
                self.outcomes[index] = Outcome(
                    "unchanged", f"{n.subscription}@{n.invoice.boundary}: exists")
        usage_repo.account_late(self.session, billed_by)

    def advance_subscriptions(self) -> None:
        """Each subscription past what it was billed (or found billed) to."""
        invoices_repo.clear_failures(self.session, [(n.subscription, n.invoice.boundary)
                                                    for _, n in self.issued.values()])
        moves: list[subs_repo.Advance] = []
        for subscription, (k, terms) in self.advance.items():
            entity = self.entities[self.subs[subscription].entity_id]
            assert entity is not None
            b = terms.boundary(k)
            closed = midnight(terms.boundary(k - 1), entity.timezone) if k >= 2 else None
            moves.append(subs_repo.Advance(subscription, k, b, midnight(b, entity.timezone),
                                           closed))
        subs_repo.advance(self.session, moves)

    def finalize(self) -> None:
        """Credits, numbers and sending of the invoices that are not drafts (numbering
        last: the entity's counter stays locked from here to the commit, so the chunks of a
        run wait for each other only for this); each pair's outcome."""
        numbers: dict[int, str] = {}  # invoice id -> number
        to_send: dict[str, list[Sent]] = defaultdict(list)  # by entity, in the pairs' order
        for index in sorted(self.issued):
            invoice_id, n = self.issued[index]
            if not self.drafts.get(n.customer, False):
                to_send[n.entity].append(Sent(invoice_id, n.subscription, n.invoice.boundary,
                                              n.customer, n.invoice.currency,
                                              n.invoice.total))
        for entity_id, sent in to_send.items():
            entity = self.entities[entity_id]
            assert entity is not None
            numbers.update(sending.send(self.session, entity, sent, self.issued_at, self.now))
        for index, (invoice_id, n) in self.issued.items():
            sent_as = numbers.get(invoice_id)
            state = f"{InvoiceStatus.SENT} {sent_as}" if sent_as else InvoiceStatus.DRAFT
            total = format_amount(n.invoice.total, n.invoice.currency)
            self.outcomes[index] = applied(
                f"{n.subscription}@{n.invoice.boundary}: {state}, total {total}",
                deliver=(invoice_id,) if sent_as else ())


def issue_chunk(pairs: Sequence[tuple[str, date]], issued_at: datetime,
                now: datetime) -> list[Outcome]:
    """``issue`` in a transaction of its own (what one ``issue_invoices`` message does)."""
    with unit_of_work() as session:
        return issue(session, now, pairs, issued_at)


def run_bill_run_now(entity: str, local_date: date | None, now: datetime,
                     deliver: Callable[[list[int]], list[Outcome]] | None = None,
                     ) -> tuple[list[Outcome], list[Outcome], tuple[str, ...]]:
    """An entity's bill run of ``local_date`` done here and now, chunk by chunk, each sent
    invoice delivered right after its chunk commits (what ``billing bill-run`` does);
    ``local_date`` None: a run at ``now`` (``--now``), every invoice due by now issued at
    now. Idempotent: what exists is not issued again. The outcomes of issuing (one per
    pair of ``run_pairs``), of delivering, and notes on what is due but not in this run (a
    subscription created after it). ``deliver``: how the sent invoices are delivered
    (default: here, now; the web process enqueues them)."""
    return _run(entity, local_date, now, deliver)[1:]


def _run(entity: str, local_date: date | None, now: datetime,
         deliver: Callable[[list[int]], list[Outcome]] | None
         ) -> tuple[BillRun | None, list[Outcome], list[Outcome], tuple[str, ...]]:
    planned = plan_bill_run(entity, local_date, now)
    if isinstance(planned, Outcome):
        return None, [planned], [], ()
    issued: list[Outcome] = []
    delivered: list[Outcome] = []
    for pairs in planned.chunks():
        chunk = issue_chunk(pairs, planned.run_at, now)
        issued.extend(chunk)
        ids = [i for o in chunk for i in o.deliver]
        delivered.extend(deliver(ids) if deliver else [deliveries.deliver_now(i) for i in ids])
    if local_date is not None:  # a run at `now` is no scheduled run: it has no claim
        finish_bill_run(entity, local_date, now)
    return planned, issued, delivered, planned.notes


@dataclass(frozen=True)
class RunReport:
    """What a bill run done by hand did, for the CLI and the API: each invoice it dealt
    with by its public reference, delivered or not; or why it was refused."""

    entity: str
    run_at: datetime | None
    invoices: tuple[dict[str, Any], ...] = ()
    delivered: tuple[Outcome, ...] = ()
    notes: tuple[str, ...] = ()
    refusal: Outcome | None = None
    before: int = 0  # invoices this run (its instant) had issued before

    def document(self) -> dict[str, Any]:
        return {"entity": self.entity,
                "run_at": None if self.run_at is None else _iso(self.run_at),
                "issued": sum(i["outcome"] == "applied" for i in self.invoices),
                "invoices": list(self.invoices), "notes": list(self.notes),
                "issued_before": self.before,
                "deliveries": [{"outcome": o.status, "detail": o.detail}
                               for o in self.delivered]}


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def bill_run_report(entity: str, local_date: date | None, now: datetime,
                    deliver: Callable[[list[int]], list[Outcome]] | None = None) -> RunReport:
    """``run_bill_run_now``, reported invoice by invoice (references, totals, state)."""
    planned, issued, delivered, notes = _run(entity, local_date, now, deliver)
    if planned is None:
        return RunReport(entity, None, refusal=issued[0])
    pairs = [p for chunk in planned.chunks() for p in chunk]
    found = {}
    subscriptions = sorted({s for s, _ in pairs})
    with unit_of_work() as session:
        for start in range(0, len(subscriptions), 500):
            for r in invoices_repo.records(session, entity=entity,
                                           subscriptions=subscriptions[start:start + 500]):
                found[(r.subscription, r.boundary)] = r
    shown = []
    for (subscription, boundary), outcome in zip(pairs, issued, strict=True):
        record = found.get((subscription, boundary))
        shown.append({
            "reference": record.reference if record else f"{subscription}@{boundary}",
            "subscription": subscription, "boundary": boundary.isoformat(),
            "outcome": outcome.status, "detail": outcome.detail,
            "status": record.status if record else None,
            "final": record.final if record else None,
            "currency": record.currency if record else None,
            "total": format_money(record.total, record.currency) if record else None})
    before = max(0, issued_by_run_at(entity, planned.run_at)
                 - sum(o.status == "applied" for o in issued))
    return RunReport(entity, planned.run_at, tuple(shown), tuple(delivered), notes,
                     before=before)


def issued_by_run(entity: str, local_date: date) -> int:
    """How many invoices the entity's run of ``local_date`` has issued so far, whoever ran
    it (the scheduler, ``billing bill-run``): they all carry its run instant."""
    with unit_of_work() as session:
        found = catalog_repo.entity(session, entity)
        if found is None:
            return 0
        return invoices_repo.count_issued_at(session, entity,
                                             bill_run_instant(local_date, found.timezone))


def issued_by_run_at(entity: str, run_at: datetime) -> int:
    with unit_of_work() as session:
        return invoices_repo.count_issued_at(session, entity, run_at)


@dataclass(frozen=True)
class Failure:
    subscription: str
    boundary: date
    run_at: datetime
    error: str
    attempts: int


def failures(entity: str | None = None) -> list[Failure]:
    """Invoices that could not be computed, with their error (the next run tries again)."""
    with unit_of_work() as session:
        return [Failure(r.subscription_id, r.boundary, r.run_at, r.error, r.attempts)
                for r in invoices_repo.failures(session, entity)]


# ---------------------------------------------------------------------------- drafts


def _draft(session: Session, subscription: str, boundary: str,
           action: str) -> tuple[InvoiceRow, SubscriptionRow] | Outcome:
    try:
        day = parse_date(boundary, f"{action}.boundary")
    except Invalid as exc:
        return invalid(exc)
    invoice = invoices_repo.find(session, subscription, day, lock=True)
    if invoice is None or invoice.id is None:
        return not_found(f"{action}: no invoice of subscription {subscription!r} at "
                         f"{boundary}")
    to = InvoiceStatus.SENT if action == "release" else InvoiceStatus.DRAFT
    if not can_become(invoice.status, to):
        return refused(f"{action}: invoice {invoice.number} is {invoice.status}, not a draft")
    row = subs_repo.get(session, subscription)
    assert row is not None
    return invoice, row


def do_release(session: Session, now: datetime, subscription: str, boundary: str) -> Outcome:
    found = _draft(session, subscription, boundary, "release")
    if isinstance(found, Outcome):
        return found
    invoice, row = found
    entity = catalog_repo.entity(session, row.entity_id)
    assert entity is not None and invoice.id is not None
    sent = Sent(invoice.id, row.id, invoice.boundary, invoice.customer_id, invoice.currency,
                invoice.total)
    number = sending.send(session, entity, [sent], now, now)[invoice.id]
    return applied(f"sent as {number}", deliver=(invoice.id,))


def do_regenerate(session: Session, now: datetime, subscription: str, boundary: str) -> Outcome:
    found = _draft(session, subscription, boundary, "regenerate")
    if isinstance(found, Outcome):
        return found
    invoice, row = found
    invoice_id = invoice.id
    assert invoice_id is not None
    plan = plan_of(session, row)
    entity = catalog_repo.entity(session, row.entity_id)
    assert entity is not None
    k = boundary_index(row.start, plan.interval, parse_date(boundary, "boundary"))
    assert k is not None
    # the late events of the period it covers, read before it is recomputed: it bills them
    # (locked first: an ingest of late usage for it waits, so they are the ones it counts)
    subs_repo.lock(session, [row.id])
    covered = late.account_regenerated_covering(session, row.id, parse_date(boundary,
                                                "boundary"), invoice_id)
    try:
        computed = compute(session, row, plan, entity, k, invoice_id=invoice_id)
    except Exception as exc:
        if is_infrastructure(exc):
            raise
        return refused(f"regenerate: the invoice cannot be computed: {_error(exc)}")
    if computed.invoice is None:
        return refused("regenerate: the invoice would have no line")
    invoices_repo.replace_draft(session, invoice_id, computed.invoice, now)
    usage_repo.account_late(session, {invoice_id: [*covered, *computed.accounts]})
    return applied(f"recomputed, total "
                   f"{format_amount(computed.invoice.total, computed.invoice.currency)}")


# ---------------------------------------------------------------------------- preview


def preview(subscription: str, at: datetime, *, latest: bool = False) -> ComposedInvoice:
    """SPEC §10: the invoice the next boundary after ``at`` would get if usage stopped now,
    from the events ingested up to ``at`` — or, ``latest`` (``at`` is now), from every
    event stored: exactly what an invoice computed now would count. Nothing is stored."""
    with unit_of_work() as session:
        return estimate(session, subscription, at, latest=latest)


def estimate(session: Session, subscription: str, at: datetime, *,
             latest: bool = False) -> ComposedInvoice:
    """``preview`` in the caller's transaction (a plan change's preview computes it with
    the change made, then rolls it back)."""
    row = subs_repo.get(session, subscription)
    if row is None:
        raise Invalid("subscription", f"{subscription!r} is not a known subscription")
    found = estimate_many(session, [row], at, latest=latest)[row.id]
    if isinstance(found, Exception):
        raise found
    return found


def estimate_many(session: Session, rows: Sequence[SubscriptionRow], at: datetime, *,
                  latest: bool = False) -> dict[str, ComposedInvoice | Exception]:
    """``estimate`` of many subscriptions at once, in the caller's transaction: their
    closing periods aggregated set-wise, per entity (``compute_many``: one round of
    ``GROUP BY`` per distinct period, whatever the number of subscriptions). Each
    subscription gets its estimate, or the exception ``estimate`` would raise for it
    (``Invalid``: ended, no line, its plan not stored) — one never stops the others. In
    the order of ``rows``."""
    plans = catalog_repo.plans(session, {(r.plan_id, r.plan_version) for r in rows})
    entities = {e: catalog_repo.entity(session, e) for e in sorted({r.entity_id for r in rows})}
    found: dict[str, ComposedInvoice | Exception] = {}
    items: dict[str, list[tuple[ToCompose, date]]] = defaultdict(list)
    for row in rows:
        plan = plans.get((row.plan_id, row.plan_version))
        entity = entities[row.entity_id]
        assert entity is not None
        if plan is None:
            found[row.id] = Invalid("plan", f"{row.plan_id!r} version {row.plan_version} is "
                                            "not stored")
            continue
        k, boundary = next_boundary_after(terms_of(row, plan), entity.timezone, at)
        if row.end is not None and boundary > row.end:
            found[row.id] = Invalid("subscription", f"{row.id!r} ended on {row.end}")
            continue
        items[row.entity_id].append((ToCompose(row, plan, k), boundary))
    for entity_id, wanted in items.items():
        entity = entities[entity_id]
        assert entity is not None
        computed = compute_many(session, entity, [i for i, _ in wanted],
                                ingested_by=None if latest else at, estimate=True)
        for (item, boundary), result in zip(wanted, computed, strict=True):
            if isinstance(result, Exception):
                found[item.row.id] = result
            elif result.invoice is None:
                found[item.row.id] = Invalid("subscription", f"the invoice at {boundary} "
                                                             "would have no line")
            else:  # SPEC §12: the customer's balance applied as if sent at `at`, first
                composed = result.invoice
                found[item.row.id] = replace(composed, credits=credits.estimate(
                    session, item.row.customer_id, composed.currency, composed.total, at))
    return {row.id: found[row.id] for row in rows}


@dataclass(frozen=True)
class Pending:
    """An invoice that is due — its boundary has passed — but not issued yet: the next bill
    run issues it (SPEC §10 says what a preview is; this is what it would miss)."""

    subscription: str
    invoice: ComposedInvoice

    @property
    def reference(self) -> str:
        return f"{self.subscription}@{self.invoice.boundary.isoformat()}"


def pending_in(session: Session, row: SubscriptionRow, at: datetime, *,
               latest: bool = False) -> list[Pending]:
    """The invoices of ``row`` whose boundary has passed by ``at`` and that no run has
    issued yet, computed as the next run would (from every stored event, ``latest``, or
    the events ingested by ``at``). Nothing is stored."""
    plan = plan_of(session, row)
    entity = catalog_repo.entity(session, row.entity_id)
    assert entity is not None
    history = plan_changes_repo.histories(session, [row]).get(row.id)
    terms = terms_of(row, plan, history)
    due = [(k, b) for k, b in reached(terms, entity.timezone, at, row.next_k)
           if terms.has_lines(k)]
    if not due:
        return []
    issued = invoices_repo.existing(session, [(row.id, b) for _, b in due])
    found = []
    for k, b in due:
        if (row.id, b) in issued:
            continue
        composed = compute(session, row, plan, entity, k,
                           ingested_by=None if latest else at, estimate=True).invoice
        if composed is not None:
            found.append(Pending(row.id, composed))
    return found


def pending(subscription: str, at: datetime, *, latest: bool = False) -> list[Pending]:
    """``pending_in`` of one subscription in a transaction of its own."""
    with unit_of_work() as session:
        row = subs_repo.get(session, subscription)
        if row is None:
            raise Invalid("subscription", f"{subscription!r} is not a known subscription")
        return pending_in(session, row, at, latest=latest)


def pending_of_customer(customer: str, at: datetime, *,
                        latest: bool = False) -> list[Pending]:
    """The pending invoices of every subscription of a customer (ended ones included: a
    final invoice may be pending), in (subscription, boundary) order."""
    with unit_of_work() as session:
        return pending_of_customer_in(session, customer, at, latest=latest)


def pending_of_customer_in(session: Session, customer: str, at: datetime, *,
                           latest: bool = False) -> list[Pending]:
    """``pending_of_customer`` in the caller's transaction."""
    if catalog_repo.customer(session, customer) is None:
        raise Invalid("customer", f"{customer!r} is not a known customer")
    rows = subs_repo.listing(session, customer=customer)
    return [p for row in rows for p in pending_in(session, row, at, latest=latest)]


def preview_customer(customer: str, at: datetime, *,
                     latest: bool = False) -> list[tuple[str, ComposedInvoice]]:
    """SPEC §10 for every live subscription of a customer: (subscription, estimate)."""
    with unit_of_work() as session:
        if catalog_repo.customer(session, customer) is None:
            raise Invalid("customer", f"{customer!r} is not a known customer")
        live = [row for row in subs_repo.listing(session, customer=customer)
                if row.end_at is None or at < row.end_at]  # ended: no next invoice
        found = estimate_many(session, live, at, latest=latest)
    result = []
    for subscription, estimated in found.items():
        if isinstance(estimated, Invalid):
            continue  # its next invoice would have no line
        if isinstance(estimated, Exception):
            raise estimated
        result.append((subscription, estimated))
    return result
