"""A request's lifecycle as a table: sans-IO, no asyncio, no clock, no I/O.

The engine's driver (:mod:`.pump`, :mod:`.attempt`, :mod:`.streaming`) owns
the loop, the timers and the sockets; it feeds each thing that happens to a
request to :func:`step` and does what the answer says.  ``step(phase,
event)`` gives the next phase and the *actions* that go with it, as plain
data; a pair the table does not know is a bug and raises
:class:`IllegalTransition`.  The decisions the driver used to make inline
(retry or not and how long, cooldown, the deadline's cut, fail fast on an
OPEN circuit or wait for its probe, what to do when no key may go) are pure
functions below, over plain inputs.

What a phase holds (:data:`HOLDS`) is the contract between the table and the
driver: leaving a phase releases exactly what it held and the next one does
not hold, entering one acquires what it holds and the last did not; the
table test checks every row against it, the state-machine test counts.

Why there is no ``WAIT_CIRCUIT`` phase: while the circuit is OPEN the queue
waits as a whole, on one timer at the probe time, and the requests in it
stay ``QUEUED`` (marking each would cost O(queue) per opening).  What the
circuit decides per request, fail fast or wait, is :func:`must_fail_fast`,
and a request that may not wait gets the ``CIRCUIT_OPEN`` event.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from ..resilience import retry as retry_policy
from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    RateLimitError,
    RequestTimeoutError,
)

__all__ = [
    "HOLDS",
    "TABLE",
    "Action",
    "Event",
    "IllegalTransition",
    "Outcome",
    "Phase",
    "Resource",
    "Transition",
    "Verdict",
    "after_failure",
    "attempt_timeout",
    "breaker_outcome",
    "cooldown_for",
    "must_fail_fast",
    "no_key_event",
    "step",
]


class Phase(enum.IntEnum):  # IntEnum: hashed in C, the table's lookups stay cheap
    NEW = enum.auto()  # built by the caller, not yet admitted
    QUEUED = enum.auto()  # in the priority queue, waiting for a concurrency slot and a permit
    WAIT_KEY = enum.auto()  # queued (or held aside) until a key may take it
    IN_BATCH = enum.auto()  # in the batch assembler, waiting for company
    CARRIED = enum.auto()  # its inputs travel in a batch's carrier request
    LEASING = enum.auto()  # has the breaker's permit, a key is being chosen
    SENDING = enum.auto()  # one attempt in flight
    STREAMING = enum.auto()  # first chunk handed over; chunks flow to the caller
    BACKOFF = enum.auto()  # waiting out the delay before its next attempt
    DONE = enum.auto()  # result or typed error delivered, exactly once


class Event(enum.IntEnum):
    ADMITTED = enum.auto()  # queued by submit()
    BATCHED = enum.auto()  # admitted into the batch lane
    REJECTED = enum.auto()  # refused at admission (queue full, circuit open)
    LAUNCHED = enum.auto()  # its batch became a carrier request
    BATCH_DONE = enum.auto()  # its carrier ended (its part of the result, or the error)
    PERMIT_GRANTED = enum.auto()  # a concurrency slot and the breaker's permit
    KEY_LEASED = enum.auto()
    NO_KEY_WAIT = enum.auto()  # no key now: keep its place, the queue waits for one
    NO_KEY_HOLD = enum.auto()  # only its model cools: held aside, the others go on
    NO_KEY_IN_TIME = enum.auto()  # no key before its deadline: fail now
    NO_KEY_EVER = enum.auto()  # every key disabled
    CIRCUIT_OPEN = enum.auto()  # the circuit is OPEN and it may not wait
    RESPONSE_OK = enum.auto()  # a response the provider reads as an answer
    FIRST_CHUNK = enum.auto()  # a stream's first chunk
    RETRY_LATER = enum.auto()  # an error to retry after a delay (Retry-After or backoff)
    RETRY_NOW = enum.auto()  # an error to retry at once on another key (429, 401/403)
    FAILED = enum.auto()  # an error not to retry (class, retries used up, past its deadline)
    DEADLINE = enum.auto()  # its deadline passed
    STALL = enum.auto()  # a stream went quiet for stream_stall_timeout
    STREAM_END = enum.auto()  # the stream's end marker
    TIMER = enum.auto()  # its backoff or hold is over
    CANCEL = enum.auto()  # the caller cancelled (or closed its stream)
    SHUTDOWN = enum.auto()  # the backend closed
    BUDGET = enum.auto()  # the client's budget is spent: a request not yet sent is not sent


class Action(enum.Enum):
    ENQUEUE = "enqueue"  # push into the priority queue (takes a queue slot)
    REQUEUE = "requeue"  # back into the queue at its old place (takes a queue slot)
    HOLD = "hold"  # aside on a timer, counted as queued (takes a queue slot)
    LEAVE_QUEUE = "leave_queue"  # out of the queue or the held set (frees the slot)
    JOIN_BATCH = "join_batch"  # into the batch lane (takes a batch slot)
    LEAVE_BATCH = "leave_batch"  # out of the lane (frees the batch slot)
    TAKE_PERMIT = "take_permit"  # the attempt's concurrency slot and breaker permit
    RELEASE_PERMIT = "release_permit"
    TAKE_LEASE = "take_lease"  # the attempt's key lease
    RELEASE_LEASE = "release_lease"  # back to the key pool, with the attempt's outcome
    START_ATTEMPT = "start_attempt"  # build the HTTP request and send it
    REPORT = "report"  # the breaker and the stats hear the attempt's outcome
    HAND_STREAM = "hand_stream"  # the caller gets the stream
    ARM_KEY_TIMER = "arm_key_timer"  # wake the pump when some key may go
    SCHEDULE_BACKOFF = "schedule_backoff"  # a timer for the retry's delay
    CANCEL_TIMER = "cancel_timer"
    RECORD = "record"  # the request's statistics
    COMPLETE = "complete"  # the caller's future (or stream) gets its outcome


class Resource(enum.Enum):
    QUEUE_SLOT = "queue_slot"  # counted against queue_size
    BATCH_SLOT = "batch_slot"  # counted against queue_size too, in the batch lane
    PERMIT = "permit"  # a concurrency slot and the breaker's permit
    LEASE = "lease"  # a key lease


ACQUIRES: dict[Action, Resource] = {
    Action.ENQUEUE: Resource.QUEUE_SLOT,
    Action.REQUEUE: Resource.QUEUE_SLOT,
    Action.HOLD: Resource.QUEUE_SLOT,
    Action.JOIN_BATCH: Resource.BATCH_SLOT,
    Action.TAKE_PERMIT: Resource.PERMIT,
    Action.TAKE_LEASE: Resource.LEASE,
}
RELEASES: dict[Action, Resource] = {
    Action.LEAVE_QUEUE: Resource.QUEUE_SLOT,
    Action.LEAVE_BATCH: Resource.BATCH_SLOT,
    Action.RELEASE_PERMIT: Resource.PERMIT,
    Action.RELEASE_LEASE: Resource.LEASE,
}

_SLOT = frozenset({Resource.QUEUE_SLOT})
HOLDS: dict[Phase, frozenset[Resource]] = {
    Phase.NEW: frozenset(),
    Phase.QUEUED: _SLOT,
    Phase.WAIT_KEY: _SLOT,
    Phase.IN_BATCH: frozenset({Resource.BATCH_SLOT}),
    Phase.CARRIED: frozenset(),  # its carrier holds what the attempt needs
    Phase.LEASING: frozenset({Resource.PERMIT}),
    Phase.SENDING: frozenset({Resource.PERMIT, Resource.LEASE}),
    # the breaker heard the attempt's outcome at the first chunk; the key is held to the end
    Phase.STREAMING: frozenset({Resource.LEASE}),
    Phase.BACKOFF: frozenset(),  # nothing but a timer
    Phase.DONE: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Transition:
    next: Phase
    actions: tuple[Action, ...]


class IllegalTransition(RuntimeError):
    """An event the request's phase cannot take: a bug in the driver."""

    def __init__(self, phase: Phase, event: Event) -> None:
        super().__init__(f"event {event.name} is illegal in phase {phase.name}")
        self.phase, self.event = phase, event


_A = Action
_P = Phase
_E = Event
_END_ATTEMPT = (_A.REPORT, _A.RELEASE_PERMIT, _A.RELEASE_LEASE)
_FAIL_ATTEMPT = (*_END_ATTEMPT, _A.RECORD, _A.COMPLETE)
_FAIL_QUEUED = (_A.LEAVE_QUEUE, _A.RECORD, _A.COMPLETE)
_END_STREAM = (_A.RELEASE_LEASE, _A.RECORD, _A.COMPLETE)


def _queued_rows(phase: Phase) -> dict[tuple[Phase, Event], Transition]:
    """What a request waiting in the queue (QUEUED or WAIT_KEY) may meet."""
    return {
        (phase, _E.PERMIT_GRANTED): Transition(_P.LEASING, (_A.LEAVE_QUEUE, _A.TAKE_PERMIT)),
        (phase, _E.DEADLINE): Transition(_P.DONE, _FAIL_QUEUED),
        (phase, _E.CIRCUIT_OPEN): Transition(_P.DONE, _FAIL_QUEUED),
        (phase, _E.NO_KEY_EVER): Transition(_P.DONE, _FAIL_QUEUED),
        (phase, _E.CANCEL): Transition(_P.DONE, _FAIL_QUEUED),
        (phase, _E.SHUTDOWN): Transition(_P.DONE, _FAIL_QUEUED),
        (phase, _E.BUDGET): Transition(_P.DONE, _FAIL_QUEUED),
    }


TABLE: dict[tuple[Phase, Event], Transition] = {
    # admission
    (_P.NEW, _E.ADMITTED): Transition(_P.QUEUED, (_A.ENQUEUE,)),
    (_P.NEW, _E.BATCHED): Transition(_P.IN_BATCH, (_A.JOIN_BATCH,)),
    (_P.NEW, _E.REJECTED): Transition(_P.DONE, (_A.RECORD,)),  # raised to the caller
    # waiting in the queue
    **_queued_rows(_P.QUEUED),
    **_queued_rows(_P.WAIT_KEY),
    (_P.WAIT_KEY, _E.TIMER): Transition(_P.QUEUED, ()),  # a hold is over: back in the queue
    # the batch lane
    (_P.IN_BATCH, _E.LAUNCHED): Transition(_P.CARRIED, (_A.LEAVE_BATCH,)),
    (_P.IN_BATCH, _E.CANCEL): Transition(_P.DONE, (_A.LEAVE_BATCH, _A.RECORD, _A.COMPLETE)),
    (_P.IN_BATCH, _E.SHUTDOWN): Transition(_P.DONE, (_A.LEAVE_BATCH, _A.RECORD, _A.COMPLETE)),
    (_P.CARRIED, _E.BATCH_DONE): Transition(_P.DONE, (_A.RECORD, _A.COMPLETE)),
    (_P.CARRIED, _E.CANCEL): Transition(_P.DONE, (_A.RECORD, _A.COMPLETE)),
    # choosing a key, permit in hand
    (_P.LEASING, _E.KEY_LEASED): Transition(_P.SENDING, (_A.TAKE_LEASE, _A.START_ATTEMPT)),
    (_P.LEASING, _E.NO_KEY_WAIT): Transition(
        _P.WAIT_KEY, (_A.RELEASE_PERMIT, _A.REQUEUE, _A.ARM_KEY_TIMER)
    ),
    (_P.LEASING, _E.NO_KEY_HOLD): Transition(_P.WAIT_KEY, (_A.RELEASE_PERMIT, _A.HOLD)),
    (_P.LEASING, _E.NO_KEY_IN_TIME): Transition(
        _P.DONE, (_A.RELEASE_PERMIT, _A.RECORD, _A.COMPLETE)
    ),
    # one attempt in flight
    (_P.SENDING, _E.RESPONSE_OK): Transition(_P.DONE, _FAIL_ATTEMPT),
    (_P.SENDING, _E.FIRST_CHUNK): Transition(
        _P.STREAMING, (_A.REPORT, _A.RELEASE_PERMIT, _A.HAND_STREAM)
    ),
    (_P.SENDING, _E.RETRY_LATER): Transition(_P.BACKOFF, (*_END_ATTEMPT, _A.SCHEDULE_BACKOFF)),
    (_P.SENDING, _E.RETRY_NOW): Transition(_P.QUEUED, (*_END_ATTEMPT, _A.REQUEUE)),
    (_P.SENDING, _E.FAILED): Transition(_P.DONE, _FAIL_ATTEMPT),
    (_P.SENDING, _E.DEADLINE): Transition(_P.DONE, _FAIL_ATTEMPT),
    (_P.SENDING, _E.CANCEL): Transition(_P.DONE, _FAIL_ATTEMPT),
    (_P.SENDING, _E.SHUTDOWN): Transition(_P.DONE, _FAIL_ATTEMPT),
    # a stream flowing to the caller
    (_P.STREAMING, _E.STREAM_END): Transition(_P.DONE, _END_STREAM),
    (_P.STREAMING, _E.STALL): Transition(_P.DONE, _END_STREAM),
    (_P.STREAMING, _E.FAILED): Transition(_P.DONE, _END_STREAM),
    (_P.STREAMING, _E.CANCEL): Transition(_P.DONE, _END_STREAM),
    (_P.STREAMING, _E.SHUTDOWN): Transition(_P.DONE, _END_STREAM),
    # between attempts
    (_P.BACKOFF, _E.TIMER): Transition(_P.QUEUED, (_A.REQUEUE,)),
    (_P.BACKOFF, _E.CIRCUIT_OPEN): Transition(_P.DONE, (_A.RECORD, _A.COMPLETE)),
    (_P.BACKOFF, _E.CANCEL): Transition(_P.DONE, (_A.CANCEL_TIMER, _A.RECORD, _A.COMPLETE)),
    (_P.BACKOFF, _E.SHUTDOWN): Transition(_P.DONE, (_A.CANCEL_TIMER, _A.RECORD, _A.COMPLETE)),
}


def step(phase: Phase, event: Event) -> Transition:
    """The next phase and the actions of ``event`` in ``phase``; raises
    :class:`IllegalTransition` for a pair the lifecycle does not have."""
    try:
        return TABLE[phase, event]
    except KeyError:
        raise IllegalTransition(phase, event) from None


# ------------------------------------------------------------- decisions


class Outcome(enum.Enum):
    """What the breaker hears of one attempt."""

    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"  # neither: the attempt says nothing of the service's health


def breaker_outcome(error: ApiError | None, status: int | None) -> Outcome:
    """An attempt's outcome for the breaker: a 2xx answer is a success; a
    non-2xx the provider reads as an answer ("not ready") and an error that is
    not the service's fault (4xx, 429) count neither way."""
    if error is None:
        return Outcome.SUCCESS if status is None or status < 300 else Outcome.IGNORED
    return Outcome.FAILURE if error.breaker_failure else Outcome.IGNORED


@dataclass(frozen=True, slots=True)
class Verdict:
    """What follows a failed attempt: ``event`` (RETRY_LATER with ``delay``,
    RETRY_NOW, FAILED or DEADLINE), ``reason`` in words (a retry policy
    ``REASON_*``, ``"rate_limited"``, ``"key_refused"``, ``"deadline_cut"``),
    and for FAILED a :class:`~..resilience.retry.RetryDecision` when the
    retry policy said no (its ``"deadline"`` answer turns into the deadline's
    error)."""

    event: Event
    delay: float = 0.0
    reason: str = ""
    decision: retry_policy.RetryDecision | None = None


def after_failure(
    error: ApiError,
    *,
    retries: int,
    options: retry_policy.RetryOptions,
    rng: random.Random,
    now: float,
    deadline: float | None,
    cut_at: float | None,
    last_key: str | None,
    closed: bool,
    another_key_usable: bool,
) -> Verdict:
    """Retry after ``error``, when, and why.

    In order: a timeout at the deadline's cut ends the request (the deadline,
    not the server, ended it); a 429 on a key goes straight back to the queue,
    where it takes the first key free for its model (its (key, model) cools);
    a 401/403 on one key moves on to another usable key; else the retry
    policy decides (Retry-After, backoff, retries left, the deadline).  A
    closed backend retries nothing.  ``another_key_usable`` is only read for
    an :class:`AuthenticationError`."""
    if type(error) is RequestTimeoutError and cut_at is not None and now >= cut_at:
        return Verdict(Event.DEADLINE, reason="deadline_cut")
    if (
        isinstance(error, RateLimitError)
        and last_key is not None
        and retry_policy.is_retryable(error, options)
        and retries < options.max_retries
        and not closed
    ):
        return Verdict(Event.RETRY_NOW, reason="rate_limited")
    if isinstance(error, AuthenticationError) and last_key is not None and another_key_usable:
        return Verdict(Event.RETRY_NOW, reason="key_refused")
    decision = retry_policy.decide(error, retries, options, rng, now, deadline)
    if not decision.retry or closed:
        return Verdict(Event.FAILED, decision.delay, decision.reason, decision)
    return Verdict(Event.RETRY_LATER, decision.delay, decision.reason)


def cooldown_for(
    error: BaseException | None,
    retries: int,
    options: retry_policy.RetryOptions,
    rng: random.Random,
) -> float | None:
    """How long a 429 without a believable Retry-After (none, or one over
    ``max_retry_after``) cools its (key, model): the retry policy's backoff
    for the retry it leads to.  None: the key pool's own rule."""
    if (
        isinstance(error, RateLimitError)
        and retry_policy.believed_retry_after(error.retry_after, options.max_retry_after) is None
    ):
        return retry_policy.backoff_delay(retries + 1, options, rng)
    return None


def must_fail_fast(
    circuit_open: bool, circuit_wait: bool, deadline: float | None, now: float, retry_in: float
) -> bool:
    """Whether a request entering the queue now fails for an OPEN circuit:
    always, unless it asked to wait for the probe and the probe (``retry_in``
    from now) comes before its deadline."""
    if not circuit_open:
        return False
    return not (circuit_wait and (deadline is None or now + retry_in <= deadline))


def no_key_event(
    ready_at: float | None,
    busy: bool,
    deadline: float | None,
    others_may_go: bool,
) -> Event:
    """What becomes of a request no key may take now.  ``ready_at``: when one
    first could (None: no key ever may; it keeps its place, and the driver
    fails what is queued with ``NO_KEY_EVER`` when every key is disabled);
    ``busy``: that key is also busy (an attempt finishing frees it);
    ``others_may_go``: some key could take a request for another model now."""
    if ready_at is None:
        return Event.NO_KEY_WAIT
    if deadline is not None and ready_at > deadline:
        return Event.NO_KEY_IN_TIME  # waiting cannot help: say why now
    if not busy and others_may_go:
        return Event.NO_KEY_HOLD  # only its model is cooling: the others go on
    return Event.NO_KEY_WAIT


MIN_ATTEMPT_TIMEOUT = 0.001


def attempt_timeout(
    timeout: float, deadline: float | None, now: float
) -> tuple[float, float | None]:
    """An attempt's timeout and the time its deadline cuts it (None: the
    timeout ends it, not the deadline)."""
    if deadline is not None and deadline - now < timeout:
        return max(MIN_ATTEMPT_TIMEOUT, deadline - now), deadline
    return timeout, None


def table_markdown() -> str:
    """The table as Markdown rows (``docs/ARCHITECTURE.md`` shows it; a test keeps
    the page equal to this): one row per phase and next phase, its events and actions."""
    rows: dict[tuple[Phase, Phase, tuple[Action, ...]], list[Event]] = {}
    for (phase, event), transition in TABLE.items():
        rows.setdefault((phase, transition.next, transition.actions), []).append(event)
    lines = ["| phase | events | next phase | actions |", "|---|---|---|---|"]
    for (phase, next_phase, actions), events in rows.items():
        names = ", ".join(e.name for e in events)
        done = ", ".join(a.name for a in actions) or "-"
        lines.append(f"| {phase.name} | {names} | {next_phase.name} | {done} |")
    return "\n".join(lines) + "\n"
