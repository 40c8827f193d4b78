"""``billing replay``: drive the real actors through a broker on a simulated clock.

Actions are sent as the messages an application would send, each entity's bill run is
ticked at each of its 08:15 local times, and the broker is drained (one worker thread)
before the clock moves on, so a replay is deterministic.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dramatiq
import structlog
from dramatiq import Worker

from domain.documents import grant_document, invoice_document
from domain.periods import bill_run_instant, zone
from domain.validation import EARLIEST, MAX_DIGITS
from persistence import db
from scheduler.scenario import Action, Scenario
from scheduler.tick import tick
from services import alert_events, alerts, clock, deliveries
from services.operator import catalog as catalog_ops
from services.operator import replay as replay_reads
from workers import actors
from workers.broker import FailureRecorder, InFlight, join, stub_broker, track, use

log = structlog.get_logger("billing")


@dataclass(frozen=True)
class Step:
    at: datetime
    action: Action | None = None  # None: a bill run
    entity: str | None = None

    @property
    def order(self) -> tuple[datetime, int, int]:
        # an action and a bill run at the same instant: the action goes first
        return (self.at, 1 if self.action is None else 0,
                self.action.index if self.action else 0)


def bill_run_steps(scenario: Scenario) -> Iterator[Step]:
    """Each entity's 08:15 local instants from the scenario's start to ``until``."""
    first, last = scenario.start, scenario.until
    for entity in scenario.catalog.entities.values():
        tz = zone(entity.timezone)
        day = first.astimezone(tz).date() - timedelta(days=1)
        end = last.astimezone(tz).date() + timedelta(days=1)
        while day <= end:
            run_at = bill_run_instant(day, entity.timezone)
            if first <= run_at <= last:
                yield Step(run_at, entity=entity.id)
            day += timedelta(days=1)


def plan_steps(scenario: Scenario) -> list[Step]:
    """The actions and bill runs in the order they happen; ``until`` ends the replay: an
    action later than it is not applied (and logged)."""
    steps = []
    for a in scenario.actions:
        if a.at > scenario.until:
            log.warning("action after until: not applied", action=a.kind,
                        at=a.at.isoformat(), until=scenario.until.isoformat())
        else:
            steps.append(Step(a.at, action=a))
    steps.extend(bill_run_steps(scenario))
    return sorted(steps, key=lambda s: s.order)


def _json_number(value: Any) -> Any:
    """Property values as JSON numbers (the scenario's exact decimals are for quantities)."""
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < MAX_DIGITS:
        return int(value) if value == value.to_integral_value() else float(value)
    # beyond the engine's bounds a number stays an exact decimal: the event is then refused
    # with that reason, as an application's would be
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value


def send(action: Action) -> None:
    """The message an application would send for this action."""
    p = action.params
    if action.kind == "usage":
        events = [
            {**e, "properties": _json_number(e["properties"])}
            if isinstance(e, dict) and "properties" in e else e
            for e in p
        ]
        actors.record_usage.send(events)
    elif action.kind == "subscribe":
        actors.subscribe.send(**p)
    elif action.kind == "cancel":
        actors.cancel.send(p["subscription"])
    elif action.kind == "uncancel":
        actors.uncancel.send(p["subscription"])
    elif action.kind == "set_draft_invoices":
        actors.set_draft_invoices.send(p["customer"], p["value"])
    elif action.kind == "release":
        actors.release_invoice.send(p["subscription"], p["boundary"])
    elif action.kind == "regenerate":
        actors.regenerate_invoice.send(p["subscription"], p["boundary"])
    elif action.kind == "grant_credits":
        actors.grant_credits.send(**{k: str(v) if isinstance(v, Decimal) and k == "amount"
                                     else _json_number(v) for k, v in p.items()})
    elif action.kind == "void_credits":
        actors.void_credits.send(p["grant"])
    elif action.kind == "change_plan":
        actors.change_plan.send(p["subscription"], p["plan"], p["from"])
    elif action.kind == "create_alert":
        actors.create_alert.send({k: str(v) if isinstance(v, Decimal) else
                                  [str(x) if isinstance(x, Decimal) else x for x in v]
                                  if isinstance(v, list) else v for k, v in p.items()})
    elif action.kind == "delete_alert":
        actors.delete_alert.send(p["alert"])
    else:  # pragma: no cover - the scenario parser allows no other kind
        raise ValueError(action.kind)


class ReplayError(RuntimeError):
    """An actor failed during a replay (a bug or an outage, never a business refusal)."""


def drain(broker: dramatiq.Broker, worker: Worker, failures: FailureRecorder,
          inflight: InFlight) -> None:
    """Wait until every message, including the follow-ups they sent, is processed and
    acknowledged."""
    join(broker, [worker], inflight)
    if failures.failures:
        raise ReplayError(failures.failures[0])


def report(until: datetime, *, with_alerts: bool = False) -> dict[str, Any]:
    """The replay's output (REPLAY.md), its counts and ledgers taken at ``until``; with
    ``alert_events`` (the project's own addition) when the scenario has alerts."""
    ledgers = replay_reads.ledgers(until)
    result: dict[str, Any] = {
        "invoices": [invoice_document(inv) for inv in ledgers.invoices],
        "usage": ledgers.usage,
        "credit_grants": [grant_document(v.grant, v.ledger) for v in ledgers.grants]}
    if with_alerts:
        result["alert_events"] = [
            {"id": alert_events.webhook_id(e.id or 0), "type": e.type, **e.payload}
            for e in alerts.events()]
    return result


def replay(scenario: Scenario, *, database_url: str | None = None,
           broker: dramatiq.Broker | None = None, outbox: Path | None = None,
           on_step: Callable[[int, int, Step], None] | None = None,
           database_file: Path | None = None) -> dict[str, Any]:
    """Run the scenario on a fresh store and return its output.

    The embedded default is a new SQLite file and an in-process broker. With a PostgreSQL
    ``database_url`` the replay works in a schema of its own (dropped afterwards), so it
    never touches other tables; ``broker`` may be a Redis broker (see
    ``workers.broker.redis_broker``). Sent invoices are delivered as in production; the
    outbox channel writes to ``outbox`` (default: a temporary folder, removed after).
    ``database_file`` keeps the store: a SQLite file made afresh (any previous one is
    replaced) and left behind for the CLI to explore (what ``billing demo`` does).
    """
    run_id = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="billing-replay-") as tmp:
        if database_file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                database_file.with_name(database_file.name + suffix).unlink(missing_ok=True)
        db.configure(database_url or f"sqlite:///{database_file or Path(tmp) / 'replay.db'}",
                     schema=f"replay_{run_id}")
        db.create_schema()
        catalog_ops.apply(scenario.catalog, EARLIEST)
        previous_outbox = deliveries.use_outbox(outbox or Path(tmp) / "outbox")
        broker = use(broker or stub_broker())
        failures = FailureRecorder()
        broker.add_middleware(failures)
        inflight = track(broker)  # every message of a replay is sent by this process
        simulated = clock.SimulatedClock(scenario.start)
        clock.use(simulated)
        worker = Worker(broker, worker_threads=1, worker_timeout=20)
        worker.start()
        try:
            steps = plan_steps(scenario)
            with_alerts = any(a.kind == "create_alert" for a in scenario.actions)
            for number, step in enumerate(steps, 1):
                simulated.set(step.at)
                if step.action is not None:
                    send(step.action)
                else:
                    assert step.entity is not None
                    tick(step.at, [step.entity])
                drain(broker, worker, failures, inflight)
                if with_alerts:  # a bill run or a void moves balances: look at once
                    actors.enqueue_alert_events(alerts.evaluate_all(step.at))
                    drain(broker, worker, failures, inflight)
                if on_step is not None:
                    on_step(number, len(steps), step)
            return report(scenario.until, with_alerts=with_alerts)
        finally:
            worker.stop()
            clock.reset()
            deliveries.use_outbox(previous_outbox)
            db.drop_private_schema()
            db.engine().dispose()
