"""The clock actors read. Production uses the real one; a replay sets a simulated one."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    def now(self) -> datetime:
        # a plain aware datetime: arithmetic on pendulum's DateTime cost 8% of ingest
        return datetime.now(UTC)


class SimulatedClock(Clock):
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)


_clock: Clock = Clock()


def now() -> datetime:
    return _clock.now()


def is_simulated() -> bool:
    return isinstance(_clock, SimulatedClock)


def use(clock: Clock) -> None:
    global _clock
    _clock = clock


def reset() -> None:
    use(Clock())
