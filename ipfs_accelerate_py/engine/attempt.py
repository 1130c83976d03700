"""What one attempt holds, and the one place it is given back.

An attempt holds three things from the moment the pump starts it: a
concurrency slot (``engine.in_flight``), a breaker permit (in HALF_OPEN,
one of the few probes) and a key lease.  :class:`AttemptHold` owns all
three.  The breaker hears the attempt's outcome at most once
(:meth:`AttemptHold.report`); :meth:`AttemptHold.release`, called from one
``finally``, gives back whatever is still held, once, whatever raised: a
permit no outcome was reported for goes back as "ignored" (it counts neither
way), and then the key hears nothing either; otherwise the lease goes back
with the attempt's error and usage.  The slot frees last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..resilience.errors import CancelledRequestError

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = ["FAILURE", "IGNORED", "SUCCESS", "AttemptHold"]

SUCCESS, FAILURE, IGNORED = "success", "failure", "ignored"
_NOT_HEARD = Exception("no outcome reported")  # not an ApiError: the key pool counts it as ignored


class AttemptHold:
    """(engine loop) One attempt's slot, breaker permit and key lease."""

    __slots__ = ("_engine", "_permit", "_lease", "_released")

    def __init__(self, engine: Engine, permit: int | None, lease: Any) -> None:
        self._engine = engine
        self._permit = permit
        self._lease = lease
        self._released = False

    @property
    def reported(self) -> bool:
        """Whether the breaker has heard this attempt's outcome."""
        return self._permit is None

    def report(self, kind: str, now: float, duration: float = 0.0) -> None:
        """Tell the breaker how the attempt went (``SUCCESS``, ``FAILURE``,
        ``IGNORED``); the permit goes back with it.  Only the first report counts."""
        permit, self._permit = self._permit, None
        if permit is None:
            return
        breaker = self._engine.breaker
        if kind == SUCCESS:
            breaker.on_success(now, duration, permit=permit)
        elif kind == FAILURE:
            breaker.on_failure(now, duration, permit=permit)
        else:
            breaker.on_ignored(now, permit=permit)

    def on_task_done(self, task: Any) -> None:
        """(a done callback of the attempt's task) What the task left held
        goes back: nothing, unless it was cancelled before it began."""
        if not self._released:
            self.release(
                self._engine.clock.now(),
                CancelledRequestError("cancelled before it began"),
                (0, 0),
                None,
            )

    def release(
        self,
        now: float,
        error: BaseException | None,
        usage: tuple[int, int],
        cooldown: float | None,
    ) -> None:
        """Give back all that is still held, once."""
        if self._released:
            return
        self._released = True
        engine = self._engine
        lease, self._lease = self._lease, None
        if (
            not self.reported
        ):  # it never reached the server, or ended in no service outcome: the key hears none either
            error = _NOT_HEARD
        try:
            self.report(IGNORED, now)
        finally:
            try:
                if lease is not None:
                    engine.keys.release(lease, now, error, usage, cooldown)
            finally:
                engine.in_flight -= 1
