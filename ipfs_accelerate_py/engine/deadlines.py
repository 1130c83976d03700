"""Time limits the engine loop enforces.

:class:`DeadlineWatch`: queued requests whose deadline passes leave the queue at once.

One timer, at the earliest deadline of what is queued, not one per request.
Entries are watched from the caller's thread (under the queue's lock) and
expired on the loop; a watched entry that was dispatched meanwhile is no
longer ``alive`` and is skipped.  The heap is compacted when it holds more
than twice what is queued, so memory follows the queue, not the traffic.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Any

from ..resilience.clock import Clock
from ..resilience.priority_queue import PriorityRequestQueue, QueueEntry

__all__ = ["DeadlineWatch", "StallWatch"]

_COMPACT_SLACK = 64


class DeadlineWatch:
    """``on_expired(items, now)`` hears the queued items whose deadline passed
    (already out of the queue); ``call_later(delay, fn)`` sets the loop's timer."""

    def __init__(
        self,
        queue: PriorityRequestQueue,
        clock: Clock,
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle],
        on_expired: Callable[[list[Any], float], None],
    ) -> None:
        self._queue = queue
        self._clock = clock
        self._call_later = call_later
        self._on_expired = on_expired
        self._heap: list[tuple[float, int, QueueEntry]] = []  # guarded by queue.lock
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def watch(self, entry: QueueEntry, deadline: float | None) -> None:
        """(under engine.queue.lock) Expire ``entry`` at ``deadline`` if still queued."""
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, entry.seq, entry))

    def arm(self, now: float) -> None:
        """(loop) Set the timer to the earliest deadline."""
        heap = self._heap
        if not heap:
            return
        queue = self._queue
        with queue.lock:
            if len(heap) > 2 * len(queue) + _COMPACT_SLACK:
                heap[:] = [item for item in heap if item[2].alive]
                heapq.heapify(heap)
            first = heap[0][0] if heap else None
        if first is None or first == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = first
        self._timer = self._call_later(max(0.0, first - now), self._expire)

    def clear(self) -> None:
        """(loop, shutdown) Forget everything."""
        with self._queue.lock:
            self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        now = self._clock.now()
        expired = []
        queue = self._queue
        with queue.lock:
            heap = self._heap
            while heap and heap[0][0] <= now:
                _, _, entry = heapq.heappop(heap)
                if queue.remove(entry):
                    expired.append(entry.item)
        self._on_expired(expired, now)
        self.arm(now)


class StallWatch:
    """Cancels a stream's task when ``seconds`` pass without :meth:`touch`.

    One timer per quiet period, not one per chunk: when it fires early
    (chunks came meanwhile) it sleeps again for what is left.  While
    paused (the caller is behind, not the server) it never fires.
    After a cancel, :meth:`timed_out` tells the watch's cancel from another
    (the caller closing the stream) and takes it back from the task.
    """

    __slots__ = ("_loop", "_task", "seconds", "_last", "_handle", "_fired", "_paused")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None, seconds: float
    ) -> None:
        self._loop = loop
        self._task = task
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False
        self._paused = False
        self.restart(seconds)

    def restart(self, seconds: float) -> None:
        """Watch for ``seconds`` of quiet from now on."""
        self.seconds = seconds
        self._last = self._loop.time()
        self._schedule(seconds)

    def touch(self) -> None:
        self._last = self._loop.time()

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.restart(self.seconds)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def timed_out(self) -> bool:
        """True if the watch cancelled the task (the cancel is taken back)."""
        if not self._fired:
            self.stop()
            return False
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        return True

    def _schedule(self, delay: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(delay, self._check)

    def _check(self) -> None:
        self._handle = None
        if self._paused:
            return
        quiet = self._loop.time() - self._last
        if quiet < self.seconds:
            self._schedule(self.seconds - quiet)
        elif self._task is not None and not self._task.done():
            self._fired = True
            self._task.cancel()
