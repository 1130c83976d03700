"""A bounded, thread-safe priority queue of pending requests.

Callers push from their own threads (so a full queue refuses at once, in the
caller's thread); the engine pops on its event loop.  Nothing here waits:
the engine decides when to look.

Order
    The lowest priority number first (``PRIORITY_HIGH`` = 0 before
    ``PRIORITY_NORMAL`` = 1 before ``PRIORITY_LOW`` = 2), and first in, first
    out within one priority (by ``seq``, the push order).

Aging (when ``aging_interval`` is set)
    An entry's *effective* priority is
    ``max(0, priority - floor((now - enqueued_at) / aging_interval))``:
    every full interval spent waiting raises it one level, never above HIGH.
    Entries of equal effective priority leave oldest first (smallest ``seq``),
    so a LOW entry that has waited two intervals goes before any HIGH entry
    pushed after it, and a steady stream of HIGH requests cannot starve it.
    ``now`` must never go backwards (a monotonic clock): the oldest entry of a
    level is then always its most aged one, which keeps ``pop`` O(log n).

Removal
    ``remove`` (a cancelled or timed-out request) takes effect at once for
    ``len``, ``counts`` and the bound; the entry object is dropped from its
    heap lazily, and a level is compacted as soon as its dead entries
    outnumber its live ones, so memory stays within twice the live size.
"""

from __future__ import annotations

import threading
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Any

from .errors import InvalidInputError, QueueFullError
from .validation import require_int, require_number

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "PRIORITIES",
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_NORMAL",
    "PRIORITY_WORDS",
    "PriorityRequestQueue",
    "QueueEntry",
    "priority_level",
]

PRIORITY_HIGH = 0
PRIORITY_NORMAL = 1
PRIORITY_LOW = 2
PRIORITIES = (PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW)
PRIORITY_NAMES = {PRIORITY_HIGH: "HIGH", PRIORITY_NORMAL: "NORMAL", PRIORITY_LOW: "LOW"}
PRIORITY_WORDS = {"high": PRIORITY_HIGH, "normal": PRIORITY_NORMAL, "low": PRIORITY_LOW}
"""What a priority may be called instead of its number (any case, spaces around allowed)."""
DEFAULT_QUEUE_SIZE = 100

_FULL_QUEUE_ADVICE = (
    "raise client.queue_size, lower the request rate, or raise client.max_concurrent_requests"
)


class QueueEntry:
    """One queued request, as returned by :meth:`PriorityRequestQueue.push`.

    ``alive`` is True while the entry is queued, False once popped, removed
    or drained.  The engine keeps the entry to remove or requeue it.
    """

    __slots__ = ("item", "priority", "seq", "enqueued_at", "alive", "_owner")

    def __init__(
        self, item: object, priority: int, seq: int, enqueued_at: float, owner: object = None
    ) -> None:
        self.item = item
        self.priority = priority
        self.seq = seq
        self.enqueued_at = enqueued_at
        self.alive = True
        self._owner = owner  # the queue that made it

    def __lt__(self, other: QueueEntry) -> bool:  # push order
        return self.seq < other.seq

    def __repr__(self) -> str:
        state = "queued" if self.alive else "out"
        name = PRIORITY_NAMES.get(self.priority, self.priority)
        return f"QueueEntry(seq={self.seq}, priority={name}, {state})"


class _Level:
    """The entries of one priority: a heap of ``(seq, entry)`` pairs (compared
    in C: seqs are unique, so an entry itself is never compared) with lazy
    deletion.  ``removed`` holds the dead entries the heap still holds."""

    __slots__ = ("heap", "removed")

    def __init__(self) -> None:
        self.heap: list[tuple[int, QueueEntry]] = []  # never rebound: the queue keeps it too
        self.removed: set[QueueEntry] = set()

    @property
    def live(self) -> int:
        return len(self.heap) - len(self.removed)

    @property
    def dead(self) -> int:
        return len(self.removed)

    def drop_dead_top(self) -> int:
        """Drop the dead entries on top of the heap; how many were dropped."""
        heap, removed = self.heap, self.removed
        dropped = 0
        while heap and not heap[0][1].alive:
            removed.discard(heappop(heap)[1])
            dropped += 1
        return dropped

    def compact_if_needed(self) -> int:
        """Keep only the live entries once the dead outnumber them; how many were dropped."""
        removed = self.removed
        dead = len(removed)
        if dead <= len(self.heap) - dead:
            return 0
        heap = self.heap
        heap[:] = [pair for pair in heap if pair[1].alive]
        heapify(heap)
        removed.clear()
        return dead


def priority_level(priority: object) -> int:
    """The level (0, 1, 2) of a priority given as a number or as a word:
    ``"high"``, ``"normal"``, ``"low"`` in any case, spaces around allowed.
    Anything else raises :class:`InvalidInputError` naming what is accepted."""
    if isinstance(priority, str):
        level = PRIORITY_WORDS.get(priority.strip().lower())
        if level is not None:
            return level
    elif not isinstance(priority, bool) and priority in PRIORITIES:
        return int(priority)  # 1.0 and numpy integers equal a level
    raise InvalidInputError(
        f"unknown priority {priority!r}: use client.PRIORITY_HIGH (0), PRIORITY_NORMAL (1) or PRIORITY_LOW (2), "
        'or "high", "normal" or "low"'
    )


def _validate_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITIES:
        allowed = ", ".join(f"{p} ({PRIORITY_NAMES[p]})" for p in PRIORITIES)
        raise InvalidInputError(f"invalid priority {priority!r}: expected one of {allowed}")
    return priority


class PriorityRequestQueue:
    """Bounded priority queue; every method is thread-safe.

    ``lock`` is a public reentrant lock that every method changing the queue
    takes; a caller may hold it to make several calls atomic (e.g. check,
    then push).  ``len`` and a passing :meth:`ensure_room` only read one or
    two counters, without it: a caller holding the lock reads what it holds
    still, and one that does not could not act on the answer before the
    queue changed anyway.
    """

    def __init__(
        self, maxsize: int = DEFAULT_QUEUE_SIZE, aging_interval: float | None = None
    ) -> None:
        self.lock = threading.RLock()
        self._maxsize = require_int("queue_size", maxsize, 1)
        self._aging = require_number(
            "aging_interval", aging_interval, exclusive=True, optional=True
        )
        self._levels = tuple(_Level() for _ in PRIORITIES)
        self._heaps = tuple(level.heap for level in self._levels)  # (lock) the same lists
        self._seqs = count()  # (lock) push order: 0, 1, 2, ...
        self._live = 0  # (lock) live entries, every level
        self._dead = 0  # (lock) dead entries the heaps still hold, every level

    # ------------------------------------------------------------ settings

    @property
    def maxsize(self) -> int:
        """The bound on queued entries.  Lowering it below ``len`` keeps what
        is queued and refuses pushes until the queue is below the new bound."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        value = require_int("queue_size", value, 1)
        with self.lock:
            self._maxsize = value

    @property
    def aging_interval(self) -> float | None:
        """Seconds of waiting that raise an entry one priority level; None = no aging."""
        return self._aging

    @aging_interval.setter
    def aging_interval(self, value: float | None) -> None:
        value = require_number("aging_interval", value, exclusive=True, optional=True)
        with self.lock:
            self._aging = value

    # ------------------------------------------------------------ in and out

    def ensure_room(self, held_elsewhere: int = 0) -> None:
        """Raise QueueFullError unless one more request fits, counting
        ``held_elsewhere`` requests admitted but not in the queue yet."""
        if self._live + held_elsewhere < self._maxsize:  # room: nothing to lock for
            return
        with self.lock:
            queued = self._live + held_elsewhere
            if queued >= self._maxsize:
                raise QueueFullError(
                    f"Request queue is full ({queued} of {self._maxsize}): {_FULL_QUEUE_ADVICE}"
                )

    def push(self, item: object, priority: int, now: float) -> QueueEntry:
        """Queue ``item``; raises InvalidInputError or QueueFullError."""
        if priority.__class__ is not int or priority not in PRIORITIES:
            priority = _validate_priority(priority)  # raises, or passes an int subclass
        with self.lock:
            if self._live >= self._maxsize:
                self.ensure_room()  # raises
            seq = next(self._seqs)
            entry = QueueEntry(item, priority, seq, now, self)
            heappush(self._heaps[priority], (seq, entry))
            self._live += 1
            return entry

    def requeue(self, entry: QueueEntry, now: float) -> None:
        """Put back a popped entry (a retry after backoff).

        It keeps its ``seq`` and ``enqueued_at``, so it goes before entries
        of its priority pushed after it; ``maxsize`` is not checked, since the
        entry was admitted already.  ``now`` is accepted for symmetry and
        unused.  Raises ValueError if the entry is still queued.
        """
        del now
        with self.lock:
            if entry._owner is not self:
                raise ValueError(f"{entry!r} belongs to another queue")
            if entry.alive:
                raise ValueError(f"{entry!r} is still queued; only a popped entry can be requeued")
            level = self._levels[entry.priority]
            if entry in level.removed:  # removed but not yet dropped from its heap: revive it
                level.removed.discard(entry)
                self._dead -= 1
            else:
                heappush(level.heap, (entry.seq, entry))
            entry.alive = True
            self._live += 1

    def pop(self, now: float) -> QueueEntry | None:
        """The next entry (see the module docstring for the order), or None."""
        with self.lock:
            if self._dead:
                self._drop_dead_tops()
            high, normal, low = self._heaps
            # one level holding entries goes first whatever their age
            if high:
                heap = self._first(now) if normal or low else high
            elif normal:
                heap = self._first(now) if low else normal
            elif low:
                heap = low
            else:
                return None
            entry = heappop(heap)[1]
            entry.alive = False
            self._live -= 1
            return entry

    def remove(self, entry: QueueEntry) -> bool:
        """Take a queued entry out now (cancelled, timed out).

        Returns True if it was queued, False if it had been popped, removed
        or drained already.
        """
        with self.lock:
            if entry._owner is not self or not entry.alive:
                return False
            level = self._levels[entry.priority]
            entry.alive = False
            level.removed.add(entry)
            self._live -= 1
            self._dead += 1 - level.compact_if_needed()
            return True

    def drain(self) -> list[QueueEntry]:
        """Remove and return every queued entry, in priority then FIFO order."""
        with self.lock:
            out: list[QueueEntry] = []
            for level in self._levels:
                for _, entry in sorted(pair for pair in level.heap if pair[1].alive):
                    entry.alive = False
                    out.append(entry)
                level.heap.clear()
                level.removed.clear()
            self._live = self._dead = 0
            return out

    # ------------------------------------------------------------ views

    def __len__(self) -> int:
        """Live (queued) entries only."""
        return self._live

    def counts(self) -> dict[int, int]:
        """Live entries per priority, every priority present."""
        with self.lock:
            return {p: level.live for p, level in enumerate(self._levels)}  # p: PRIORITIES

    def snapshot(self, now: float | None = None) -> list[Any]:
        """The queued items in the order ``pop`` would return them.

        Without ``now`` aging is ignored (order by priority, then seq); with
        ``now`` the effective priorities at that time are used.
        """
        with self.lock:
            live = [e for heap in self._heaps for _, e in heap if e.alive]
            if now is None:
                live.sort(key=lambda e: (e.priority, e.seq))
            else:
                live.sort(key=lambda e: (self._effective(e, now), e.seq))
            return [e.item for e in live]

    def oldest_enqueued_at(self) -> float | None:
        """The ``enqueued_at`` of the longest-waiting queued entry, or None."""
        with self.lock:
            self._drop_dead_tops()
            times = [heap[0][1].enqueued_at for heap in self._heaps if heap]
            return min(times) if times else None

    def __repr__(self) -> str:
        with self.lock:
            return (
                f"PriorityRequestQueue(len={self._live}, maxsize={self._maxsize}, "
                f"aging_interval={self._aging}, counts={self.counts()})"
            )

    # ------------------------------------------------------------ internals

    def _drop_dead_tops(self) -> None:
        """(lock) Every level drops the dead entries on top of its heap."""
        for level in self._levels:
            if level.removed:
                self._dead -= level.drop_dead_top()

    def _first(self, now: float) -> list[tuple[int, QueueEntry]]:
        """(lock) The heap whose head goes next, of two or more holding entries
        (their heads all live): the least ``(effective priority, seq)``."""
        heaps = self._heaps
        heads = []
        for level, heap in enumerate(heaps):
            if heap:
                seq, head = heap[0]
                heads.append((self._effective(head, now), seq, level))
        return heaps[min(heads)[2]]

    def _effective(self, entry: QueueEntry, now: float) -> int:
        if self._aging is None:
            return entry.priority
        waited = now - entry.enqueued_at
        if waited <= 0:
            return entry.priority
        return max(PRIORITY_HIGH, entry.priority - int(waited // self._aging))

    def _physical_size(self) -> int:
        """Entries held by the heaps, dead ones included (for tests)."""
        with self.lock:
            return sum(len(heap) for heap in self._heaps)
