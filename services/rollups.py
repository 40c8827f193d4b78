"""Keeping the hourly usage rollups up to date (persistence/rollups.py): the scheduler
process folds every ``BILLING_FOLD_SECONDS``; ``billing usage fold`` does it by hand. The
estimate is exact whether or not they are up to date — a fold only makes it faster."""

from __future__ import annotations

from dataclasses import dataclass

from persistence import rollups
from persistence.db import unit_of_work
from persistence.sql import is_postgres


@dataclass(frozen=True)
class FoldReport:
    folds: bool  # False on SQLite: the estimate reads the events there
    busy: bool = False  # could not finish this turn (see ``fold``): try again later
    events: int = 0  # events folded by this call
    batches: int = 0  # batches folded by this call
    folded: int = -1  # the fold state after it
    drawn: int = 0  # the highest batch number drawn

    @property
    def behind(self) -> int:
        """Batches not folded yet (batch 0, the events from before rollups, aside)."""
        return max(self.drawn - max(self.folded, 0), 0)


def fold() -> FoldReport:
    """Fold every batch committed by now into the rollups (in steps of
    ``BATCHES_PER_FOLD``, one transaction each). Never waits for ingest; ``busy`` when
    it could not tell which batches are settled or a reader held it up (try later)."""
    with unit_of_work() as session:
        if not is_postgres(session):
            return FoldReport(folds=False)
        rollups.summarize_new_pages(session)
    events = batches = 0
    busy = False
    try:
        with unit_of_work() as session:
            settled = rollups.settled_batches(session)
        while True:
            with unit_of_work() as session:
                step = rollups.fold(session, settled)
            events += step.events
            batches += step.upto - max(step.after, 0)  # (0: the events from before rollups)
            if step.upto >= settled or step.upto == step.after:
                break
    except rollups.Busy:
        busy = True
    with unit_of_work() as session:
        drawn, folded = rollups.lag(session)
    return FoldReport(True, busy=busy, events=events, batches=batches, folded=folded,
                      drawn=drawn)


def lag() -> FoldReport:
    """How far the rollups are behind, without folding."""
    with unit_of_work() as session:
        if not is_postgres(session):
            return FoldReport(folds=False)
        drawn, folded = rollups.lag(session)
    return FoldReport(True, folded=folded, drawn=drawn)
