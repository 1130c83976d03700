"""Time, passed in.

Every time-based policy (breaker, backoff, cooldown, batching timeout, aging)
takes ``now`` as an argument; the engine reads it from a :class:`Clock`.
Tests use :class:`FakeClock` and move time by hand, so they never sleep.

``now()`` is monotonic seconds (for durations and deadlines); ``wall()`` is
seconds since the epoch (only for HTTP-date ``Retry-After`` values and for
timestamps in reports).
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "SYSTEM_CLOCK"]


class Clock(Protocol):
    def now(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    __slots__ = ()

    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to."""

    __slots__ = ("_now", "_wall_offset")

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._wall_offset = float(wall_start) - float(start)

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"
