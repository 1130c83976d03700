"""What the engine tells whoever listens: typed events and their bus.

Each event is a small frozen dataclass.  A subscriber is any callable taking
one event; it may ask for some kinds only (``subscribe(fn, RetryScheduled)``).
A subscriber that raises is logged once (the first time; it stays subscribed)
and never breaks the request that was being reported.  When nobody listens
for a kind the engine builds no event of it: the driver reads
``EventBus.subscribers[kind]`` first, a dictionary lookup.

Times are the engine clock's (``at``, monotonic seconds) unless the field
says wall.  Nothing here carries an API key: keys are named by their name or
fingerprint, as everywhere else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "AttemptEnded",
    "AttemptStarted",
    "BatchSent",
    "BreakerTransition",
    "EngineEvent",
    "EventBus",
    "KeyCooled",
    "KeyRefused",
    "RequestDone",
    "RequestQueued",
    "RetryScheduled",
    "Subscriber",
]

log = logging.getLogger("ipfs_accelerate_py.engine.events")


@dataclass(frozen=True, slots=True)
class RequestQueued:
    """A request was admitted (into the queue, or the batch lane)."""

    request_id: str
    provider: str
    endpoint: str
    model: str | None
    priority: int
    at: float


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    request_id: str
    provider: str
    model: str | None
    key_name: str | None
    attempt: int  # 1 for the first
    at: float


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """One HTTP try is over.  ``outcome``: what the breaker heard
    (``"success"``, ``"failure"``, ``"ignored"``); ``reason``: ``"ok"``, or
    the error's kind (``"server"``, ``"rate_limit"``, ``"timeout"``, ...);
    ``status``: the HTTP status, None without an answer."""

    request_id: str
    provider: str
    model: str | None
    key_name: str | None
    attempt: int
    outcome: str
    reason: str
    status: int | None
    duration: float
    at: float


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """The request will be tried again after ``delay`` seconds.  ``reason``:
    ``"retry_after"`` (the server's word), ``"backoff"``, ``"rate_limited"``
    (at once, on the first key free for its model) or ``"key_refused"`` (at
    once, on another key)."""

    request_id: str
    provider: str
    model: str | None
    attempt: int  # the attempt that failed
    reason: str
    delay: float
    error_kind: str
    at: float


@dataclass(frozen=True, slots=True)
class KeyCooled:
    """A key rests after a 429: for ``model`` (None: key-wide) until ``until``
    (engine clock), ``seconds`` from ``at``."""

    provider: str
    key_name: str
    model: str | None
    seconds: float
    until: float
    at: float


@dataclass(frozen=True, slots=True)
class KeyRefused:
    """The server refused a key (401/403, ``status``; None: no status).
    ``usable_keys``: how many of the backend's other keys are not disabled
    (0: none is left to try; a lone key is never disabled, each request
    hears its own 401, and this says so at the first one)."""

    provider: str
    key_name: str
    status: int | None
    usable_keys: int
    at: float


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """The backend's circuit moved; ``cause``: the failure behind an opening."""

    provider: str
    old: str
    new: str
    cause: str | None
    at: float


@dataclass(frozen=True, slots=True)
class BatchSent:
    """A batch's call is over (``ok``: it succeeded): ``inputs`` items from
    ``members`` caller requests in one call for ``model``."""

    provider: str
    model: str | None
    inputs: int
    members: int
    ok: bool
    at: float


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A request's caller has its outcome (a stream: when it ended).

    ``latency`` and ``queue_wait`` (until its first attempt) are seconds from
    admission.  ``tokens_in``/``tokens_out`` as the server reported them (0:
    not reported); ``cost`` in US dollars by the client's price table (None:
    no price for the model, or no table).  ``host``: ``host:port`` of the
    server the last attempt went to.  ``response_model``, ``response_id`` and
    ``finish_reasons`` as the answer gave them (None, ``()``: it did not).
    ``error``: the exception the caller got (redacted: no key in it), None on
    success."""

    request_id: str
    provider: str
    model: str | None
    ok: bool
    error_kind: str | None
    attempts: int
    latency: float
    at: float
    endpoint: str = ""
    key_name: str | None = None
    host: str | None = None
    queue_wait: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    error: BaseException | None = None
    stream: bool = False


EngineEvent = (
    RequestQueued
    | AttemptStarted
    | AttemptEnded
    | RetryScheduled
    | KeyCooled
    | KeyRefused
    | BreakerTransition
    | BatchSent
    | RequestDone
)
EVENT_TYPES: tuple[type[Any], ...] = (
    RequestQueued,
    AttemptStarted,
    AttemptEnded,
    RetryScheduled,
    KeyCooled,
    KeyRefused,
    BreakerTransition,
    BatchSent,
    RequestDone,
)
Subscriber = Callable[[Any], object]


class EventBus:
    """Subscribers by event kind.  Subscribing and unsubscribing may happen
    from any thread; publishing reads an immutable tuple, no lock."""

    __slots__ = ("subscribers", "_lock", "_failed")

    def __init__(self) -> None:
        # each kind's subscribers, an immutable tuple replaced on change: a
        # publisher reads it (``if bus.subscribers[kind]:``) to build only the
        # events someone listens for
        self.subscribers: dict[type[Any], tuple[Subscriber, ...]] = {k: () for k in EVENT_TYPES}
        self._lock = threading.Lock()
        self._failed: set[int] = set()  # ids of subscribers whose failure was logged

    def subscribe(self, callback: Subscriber, *kinds: type[Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event (or those of ``kinds``);
        returns a function that unsubscribes it."""
        wanted: Iterable[type[Any]] = kinds or EVENT_TYPES
        with self._lock:
            for kind in wanted:
                if kind not in self.subscribers:
                    raise TypeError(f"{kind!r} is not an engine event type")
                if callback not in self.subscribers[kind]:
                    self.subscribers[kind] = (*self.subscribers[kind], callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        """Stop calling ``callback`` (for every kind); unknown: nothing happens."""
        with self._lock:
            for kind, callbacks in self.subscribers.items():
                if callback in callbacks:
                    self.subscribers[kind] = tuple(c for c in callbacks if c != callback)

    def after_fork(self) -> None:
        """(a forked child) A lock of its own: a parent's thread may have held this one."""
        self._lock = threading.Lock()

    def publish(self, event: Any) -> None:
        """Hand ``event`` to each subscriber of its kind; what one raises is
        logged (once per subscriber) and goes no further."""
        for callback in self.subscribers[type(event)]:
            try:
                callback(event)
            except Exception:
                key = id(callback)
                if key not in self._failed:
                    self._failed.add(key)
                    log.exception(
                        "event subscriber %r raised on %s; it stays subscribed, "
                        "further failures of it are not logged",
                        callback,
                        type(event).__name__,
                    )

    def __len__(self) -> int:
        """How many distinct subscribers there are."""
        return len({c for callbacks in self.subscribers.values() for c in callbacks})
