"""What ``billing status`` and ``/healthz`` read of the database."""

from __future__ import annotations

from dataclasses import dataclass

from persistence import billruns, db
from persistence import deadletters as deadletters_repo
from persistence.tables import SchedulerBeatRow


@dataclass(frozen=True)
class Stores:
    dead_letters: int
    unfinished_runs: int  # claimed or sent, not done
    schedulers: list[SchedulerBeatRow]  # every scheduler's last beat


def stores() -> Stores:
    """Dead letters kept, bill runs not done, and every scheduler's last beat."""
    with db.unit_of_work() as session:
        return Stores(deadletters_repo.count(session), billruns.count_unfinished(session),
                      billruns.beats(session))


def database_answers() -> bool:
    """Whether the database answers a ``SELECT 1``."""
    return db.answers()
