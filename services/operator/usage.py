"""What operators see of ingested usage: rejected events and conflicting re-sends
(``billing usage``, the demo's explanation)."""

from __future__ import annotations

from datetime import datetime

from persistence import usage as usage_repo
from persistence.db import unit_of_work
from persistence.tables import RejectedUsageRow, UsageConflictRow


def rejected(limit: int, *, open_only: bool = False
             ) -> list[tuple[RejectedUsageRow, datetime | None]]:
    """Rejected events, newest first, each with when an event of its key was accepted since
    (None: not re-submitted)."""
    with unit_of_work() as session:
        return usage_repo.rejected_since(session, limit, open_only=open_only)


def conflicts(limit: int) -> list[UsageConflictRow]:
    """Keys sent again with another payload, newest first."""
    with unit_of_work() as session:
        return usage_repo.conflicts(session, limit)
