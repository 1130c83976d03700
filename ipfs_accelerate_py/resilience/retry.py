"""Retry decisions: pure functions of an error, a count, a time and a seeded RNG.

The engine asks :func:`decide` after every failed attempt and acts on the
answer (sleep ``delay`` then try again, or give up).  Nothing here sleeps or
reads a clock.

* Whether: :func:`is_retryable` -- the server's ``x-should-retry`` first, then
  the HTTP status against ``retryable_statuses``, then (no status: network,
  timeout, malformed body) the error class.  Errors raised by this package's
  own admission (circuit open, queue full, shutdown, cancelled, deadline,
  invalid input) are never retried, whatever a header says.
* How long: the attempt's own ``Retry-After`` when it has one and it is
  believable (:func:`believed_retry_after`: at most ``max_retry_after``; as
  asked then, no jitter), else capped exponential backoff with jitter
  (:func:`backoff_delay`).  A server asking for longer than
  ``max_retry_after`` is not believed, as the openai SDK ignores values over
  60 s: the wait is the backoff's, so one absurd header cannot stall a
  client for hours (or, with no deadline, forever).
* Deadline: a wait that would reach the request's deadline fails fast; the
  decision keeps the delay that was asked for so :func:`deadline_error` can
  say it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    ApiError,
    CancelledRequestError,
    CircuitOpenError,
    DeadlineExceededError,
    InvalidInputError,
    QueueFullError,
    SettingError,
    ShutdownError,
)
from .validation import require_int, require_number

__all__ = [
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_INITIAL_DELAY",
    "DEFAULT_JITTER",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_MAX_RETRIES",
    "REASON_BACKOFF",
    "REASON_DEADLINE",
    "REASON_NOT_RETRYABLE",
    "REASON_RETRIES_EXHAUSTED",
    "REASON_RETRY_AFTER",
    "RETRYABLE_STATUSES",
    "RetryDecision",
    "RetryOptions",
    "backoff_delay",
    "believed_retry_after",
    "deadline_error",
    "decide",
    "is_retryable",
    "over_cap",
    "seconds_text",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_INITIAL_DELAY = 0.5
DEFAULT_MAX_DELAY = 30.0
DEFAULT_JITTER = 0.25
DEFAULT_MAX_RETRY_AFTER = (
    60.0  # longer Retry-After values are not believed (the openai SDK's figure)
)

REASON_RETRY_AFTER = "retry_after"
REASON_BACKOFF = "backoff"
REASON_NOT_RETRYABLE = "not_retryable"
REASON_RETRIES_EXHAUSTED = "retries_exhausted"
REASON_DEADLINE = "deadline"

# Raised by our own admission and bookkeeping: retrying cannot help.
_NEVER_RETRIED = (
    CircuitOpenError,
    QueueFullError,
    ShutdownError,
    CancelledRequestError,
    DeadlineExceededError,
    InvalidInputError,
)


@dataclass(frozen=True)
class RetryOptions:
    """How a backend retries; validated on construction.

    ``max_retries`` counts retries after the first attempt.  A server's
    Retry-After is believed up to ``max_retry_after`` seconds.  Retry ``n``
    (1, 2, ...) waits ``initial_delay * backoff_factor ** (n - 1)``, capped at
    ``max_delay``, then multiplied by ``1 - jitter * U`` with ``U`` uniform in
    [0, 1): jitter only ever shortens the wait.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    initial_delay: float = DEFAULT_INITIAL_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: float = DEFAULT_JITTER
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    retryable_statuses: frozenset[int] = RETRYABLE_STATUSES

    def __post_init__(self) -> None:
        require_int("max_retries", self.max_retries, 0)
        require_number("backoff_factor", self.backoff_factor, minimum=1.0)
        require_number("initial_delay", self.initial_delay)
        require_number("max_delay", self.max_delay)
        require_number("jitter", self.jitter, maximum=1.0)
        require_number("max_retry_after", self.max_retry_after)
        object.__setattr__(self, "retryable_statuses", _status_set(self.retryable_statuses))


def _status_set(statuses: Any) -> frozenset[int]:
    expected = "a collection of HTTP status codes (integers 100-599)"
    if isinstance(statuses, (str, bytes)) or not hasattr(statuses, "__iter__"):
        raise SettingError("retryable_statuses", statuses, expected)
    result = frozenset(statuses)
    for code in result:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise SettingError("retryable_statuses", statuses, expected)
    return result


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed attempt.  Truthy when it says retry.

    ``delay`` is the wait before the next attempt; with reason ``"deadline"``
    it is the wait that was asked for (and did not fit).
    """

    retry: bool
    delay: float
    reason: str
    from_server: bool = field(
        default=False, compare=False
    )  # a "deadline" delay: the server's Retry-After

    def __bool__(self) -> bool:
        return self.retry


def is_retryable(error: ApiError, options: RetryOptions) -> bool:
    """Whether another attempt could succeed where this one failed."""
    if isinstance(error, _NEVER_RETRIED):
        return False
    if error.should_retry is not None:
        return error.should_retry
    if (
        error.status is not None and error.status >= 400
    ):  # a 2xx with a bad body is judged by its class
        return error.status in options.retryable_statuses
    return bool(error.retryable)


def backoff_delay(retry_number: int, options: RetryOptions, rng: random.Random) -> float:
    """The jittered, capped backoff before retry ``retry_number`` (1 for the first retry)."""
    if retry_number < 1:
        raise ValueError(f"retry_number starts at 1, got {retry_number}")
    if options.initial_delay == 0 or options.max_delay == 0:
        return 0.0
    try:
        base = options.initial_delay * options.backoff_factor ** (retry_number - 1)
    except OverflowError:
        base = math.inf
    capped = min(base, options.max_delay)
    return capped * (1.0 - options.jitter * rng.random())


def believed_retry_after(value: float | None, cap: float | None) -> float | None:
    """A server's wait in seconds as we believe it: ``value`` (never below 0)
    when it is a number no longer than ``cap``; None when there is none, it is
    NaN, or it asks for more than ``cap`` (infinity included), so that the
    caller backs off instead.  ``cap`` None: no cap (but never infinity)."""
    if value is None or value != value:  # None or NaN
        return None
    value = float(value)
    if value > (math.inf if cap is None else cap) or value == math.inf:
        return None
    return max(0.0, value)


def over_cap(value: float | None, cap: float | None) -> bool:
    """Whether ``value`` is a wait a server asked for that is not believed for being too long."""
    return value is not None and value == value and believed_retry_after(value, cap) is None


def _server_delay(error: ApiError, options: RetryOptions) -> float | None:
    """The attempt's own Retry-After in seconds, if it has a believable one."""
    return believed_retry_after(error.retry_after, options.max_retry_after)


def decide(
    error: ApiError,
    retries_done: int,
    options: RetryOptions,
    rng: random.Random,
    now: float,
    deadline: float | None,
) -> RetryDecision:
    """Retry after ``error``?  ``retries_done`` counts retries already made (0 after the first attempt).

    Stateless: each call reads only its own ``error``'s ``retry_after``.  The
    RNG is drawn from only when backoff is used.
    """
    if not is_retryable(error, options):
        return RetryDecision(False, 0.0, REASON_NOT_RETRYABLE)
    if retries_done >= options.max_retries:
        return RetryDecision(False, 0.0, REASON_RETRIES_EXHAUSTED)
    delay = _server_delay(error, options)
    reason = REASON_RETRY_AFTER
    if delay is None:
        delay = backoff_delay(retries_done + 1, options, rng)
        reason = REASON_BACKOFF
    if deadline is not None and now + delay >= deadline:
        return RetryDecision(
            False, delay, REASON_DEADLINE, from_server=reason == REASON_RETRY_AFTER
        )
    return RetryDecision(True, delay, reason)


def seconds_text(value: float) -> str:
    """A wait for people: ``5.0s``, ``0.25s``."""
    return f"{value:.1f}s" if value >= 1 or value == 0 else f"{value:.2f}s"


def deadline_error(
    error: ApiError, decision: RetryDecision, now: float, deadline: float
) -> DeadlineExceededError:
    """The error for a ``"deadline"`` decision: says the wait asked for and the time left.

    Carries the attempt's provider, status, request id and attempt number, the
    asked-for wait as ``retry_after``, and ``error`` as its ``__cause__``.
    """
    remaining = max(0.0, deadline - now)
    if decision.from_server:
        asked = f"server asked to wait {seconds_text(decision.delay)} (Retry-After)"
    else:
        asked = f"the next retry would wait {seconds_text(decision.delay)} (backoff)"
    message = (
        f"{asked} but the request's deadline is in {seconds_text(remaining)}; "
        "raise client.request_deadline or lower the load"
    )
    result = DeadlineExceededError(
        message,
        provider=error.provider,
        status=error.status,
        request_id=error.request_id,
        retry_after=decision.delay,
        attempt=error.attempt,
    )
    result.__cause__ = error
    return result
