"""Circuit breaker: a sans-IO state machine over call outcomes.

States are the exact strings ``"CLOSED"``, ``"OPEN"`` and ``"HALF_OPEN"``::

    CLOSED --trip--> OPEN --reset_timeout passed--> HALF_OPEN --probes passed--> CLOSED
                      ^                                 |
                      +-----------probe failed----------+
    force_open: any state -> OPEN            reset: any state -> CLOSED

Rules
-----
* CLOSED trips when ``failure_threshold`` consecutive service failures arrive
  (a success resets the count), or, when enabled, when the sliding window holds
  at least ``minimum_calls`` outcomes and the failure rate reaches
  ``failure_rate_threshold`` percent or the slow-call rate reaches
  ``slow_call_rate_threshold`` percent.  A call is slow when its duration is at
  least ``slow_call_duration`` seconds, whether it succeeded or failed.  The
  slow-call rule is on only while both of its settings are set; either one
  alone is allowed and leaves it off.
* OPEN lets nothing through.  Once ``reset_timeout`` seconds have passed since
  it opened, it becomes HALF_OPEN; that happens lazily, the next time it is
  asked anything with a ``now``.
* HALF_OPEN lets probes through while fewer than ``half_open_max_requests``
  are out (in flight).  Any probe failure reopens it (a new ``opened_at``, the
  full ``reset_timeout`` again); ``half_open_max_requests`` probe successes
  close it.  A probe that ends ignored (``on_ignored``) returns its permit.

Stale results
-------------
A result may arrive for a call that started in an earlier state (a slow call
started while CLOSED that ends after the breaker opened).  Such a result must
not move the state.  Exactly: :meth:`acquire` returns a permit, a number
unique to that call (always truthy); pass it back as ``permit=``.  A result
whose permit was issued before the last transition is ignored, and in
HALF_OPEN only the permits of the probes still out count (a second report of
the same probe is ignored too).  Without a permit the breaker falls back to a
rule that is right in every case but one: a result arriving while OPEN is
ignored (a success does not close it, a failure does not extend
``opened_at``); one arriving in HALF_OPEN while no probe is out is ignored;
one arriving in HALF_OPEN while a probe is out is taken as the oldest probe's
result (the one case only a permit resolves).  Ignored results are counted as
``stale_results``.

Sliding window
--------------
Outcomes recorded while CLOSED are counted in ``WINDOW_BUCKETS`` (60) time
buckets each ``window_seconds / 60`` wide; a bucket leaves the window when it
is older than ``window_seconds``.  Memory is therefore at most 61 small buckets
whatever the call rate (100k calls/s cost the same as 1/s).  The window is
emptied on every transition to CLOSED or OPEN, and when ``window_seconds``
changes.

Threads
-------
All state is guarded by one ``threading.Lock``.  Transition listeners are
called after the lock is released, in the calling thread; listeners of
transitions made by different threads may therefore run concurrently or out of
order.  Each call carries the ``now`` of its transition.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import SettingError
from .validation import require_int, require_number

_T = TypeVar("_T")

__all__ = [
    "BreakerOptions",
    "CircuitBreaker",
    "STATES",
    "STATE_CLOSED",
    "STATE_HALF_OPEN",
    "STATE_OPEN",
    "WINDOW_BUCKETS",
]

STATE_CLOSED = "CLOSED"
STATE_OPEN = "OPEN"
STATE_HALF_OPEN = "HALF_OPEN"
STATES = frozenset({STATE_CLOSED, STATE_OPEN, STATE_HALF_OPEN})

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RESET_TIMEOUT = 30.0
DEFAULT_HALF_OPEN_MAX_REQUESTS = 1
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_MINIMUM_CALLS = 10
WINDOW_BUCKETS = 60

Listener = Callable[[str, str, float], None]


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class BreakerOptions:
    """Settings of one :class:`CircuitBreaker`; validated on construction.

    The rate rules are off by default: ``failure_rate_threshold=None`` turns
    off the failure-rate rule.  The slow-call rule is on only while both
    ``slow_call_duration`` and ``slow_call_rate_threshold`` are set; with
    either one None it is simply off (no call counts as slow), which is not
    an error, so the two may be set one at a time (see :attr:`slow_call_rule`).
    """

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    reset_timeout: float = DEFAULT_RESET_TIMEOUT
    half_open_max_requests: int = DEFAULT_HALF_OPEN_MAX_REQUESTS
    failure_rate_threshold: float | None = None
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float | None = None
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    minimum_calls: int = DEFAULT_MINIMUM_CALLS

    def __post_init__(self) -> None:
        require_int("failure_threshold", self.failure_threshold, 1)
        require_number("reset_timeout", self.reset_timeout, exclusive=True)
        require_int("half_open_max_requests", self.half_open_max_requests, 1)
        require_number(
            "failure_rate_threshold",
            self.failure_rate_threshold,
            exclusive=True,
            maximum=100.0,
            optional=True,
        )
        require_number("slow_call_duration", self.slow_call_duration, exclusive=True, optional=True)
        require_number(
            "slow_call_rate_threshold",
            self.slow_call_rate_threshold,
            exclusive=True,
            maximum=100.0,
            optional=True,
        )
        require_number("window_seconds", self.window_seconds, exclusive=True)
        require_int("minimum_calls", self.minimum_calls, 1)

    @property
    def slow_call_rule(self) -> bool:
        """Whether the slow-call rule is on: both of its settings are set."""
        return self.slow_call_duration is not None and self.slow_call_rate_threshold is not None

    def is_slow(self, duration: float) -> bool:
        """Whether a call of ``duration`` seconds counts as slow (never while the rule is off)."""
        threshold = self.slow_call_duration
        return self.slow_call_rule and threshold is not None and duration >= threshold


# ---------------------------------------------------------------- window


class _OutcomeWindow:
    """Calls, failures and slow calls of the last ``seconds``, in fixed buckets.

    At most ``WINDOW_BUCKETS`` + 1 buckets are ever held.  A ``now`` earlier
    than the newest bucket (threads racing) counts into the newest bucket.
    """

    __slots__ = ("seconds", "_width", "_buckets", "calls", "failures", "slow")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._width = seconds / WINDOW_BUCKETS
        self._buckets: deque[list[int]] = deque()  # [index, calls, failures, slow]
        self.calls = self.failures = self.slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        index = math.floor(now / self._width)
        buckets = self._buckets
        if buckets and buckets[-1][0] >= index:
            bucket = buckets[-1]  # time has not moved past it: nothing can have left the window
        else:
            self.prune(now)
            bucket = [index, 0, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def add_successes(self, count: int) -> None:
        """``count`` successes that were not slow, into the newest bucket (there is one)."""
        self._buckets[-1][1] += count
        self.calls += count

    def newest_until(self) -> float:
        """A time before which :meth:`add` counts into the newest bucket (there is one).

        Exactly: every ``now`` below the answer has ``now / width`` below the next
        bucket's index, so ``floor`` puts it in the newest bucket or earlier.  The
        answer is a few ulps short of the true edge (which would need a search), and
        -inf when the newest bucket is before time 0 (such times are never sped up).
        """
        following = self._buckets[-1][0] + 1
        if following <= 0:
            return -math.inf
        # 2**-50 outweighs the 3-4 roundings: (following * w * (1 - 2**-50)) / w < following
        return following * self._width * (1.0 - 2.0**-50)

    def prune(self, now: float) -> bool:
        """Drop the buckets older than the window at ``now``; whether any was."""
        oldest_kept = math.floor(now / self._width) - WINDOW_BUCKETS + 1
        buckets = self._buckets
        pruned = False
        while buckets and buckets[0][0] < oldest_kept:
            _, calls, failures, slow = buckets.popleft()
            self.calls -= calls
            self.failures -= failures
            self.slow -= slow
            pruned = True
        return pruned

    def rates(self) -> tuple[float, float]:
        if not self.calls:
            return 0.0, 0.0
        return 100.0 * self.failures / self.calls, 100.0 * self.slow / self.calls

    def bucket_count(self) -> int:
        return len(self._buckets)


# ---------------------------------------------------------------- transitions

_TRIP = "trip"  # a CLOSED rule fired
_TIMEOUT = "timeout"  # reset_timeout passed while OPEN
_PROBE_FAILED = "probe_failed"
_PROBES_PASSED = "probes_passed"
_FORCE_OPEN = "force_open"
_RESET = "reset"

_TRANSITIONS: dict[tuple[str, str], str] = {
    (STATE_CLOSED, _TRIP): STATE_OPEN,
    (STATE_OPEN, _TIMEOUT): STATE_HALF_OPEN,
    (STATE_HALF_OPEN, _PROBE_FAILED): STATE_OPEN,
    (STATE_HALF_OPEN, _PROBES_PASSED): STATE_CLOSED,
    **{(state, _FORCE_OPEN): STATE_OPEN for state in STATES},
    **{(state, _RESET): STATE_CLOSED for state in STATES},
}

_SUCCESS = "success"
_FAILURE = "failure"
_IGNORED = "ignored"


class CircuitBreaker:
    """The breaker of one backend.  See the module docstring for the rules.

    Every method takes ``now`` (monotonic seconds) and never reads a clock.
    """

    def __init__(self, options: BreakerOptions = BreakerOptions()) -> None:
        if not isinstance(options, BreakerOptions):
            raise SettingError("options", options, "a BreakerOptions")
        self._lock = threading.Lock()
        self._options = options
        self._listeners: tuple[Listener, ...] = ()
        self._pending: list[tuple[str, str, float]] = []
        self._state = STATE_CLOSED
        self._closed = True  # self._state == STATE_CLOSED, for the fast paths
        self._new_window(options.window_seconds)
        self._slow_from = _slow_from(options)
        self._issued = 0  # the last permit number handed out
        self._epoch_first = 1  # the first permit number issued since the last transition
        self._probes: dict[int, None] = {}  # HALF_OPEN probe permits still out, oldest first
        # The last now seen, for reset() without one.  Only read when reset() makes an event,
        # which is never from CLOSED; leaving CLOSED records it, so the CLOSED fast paths
        # (state, acquire, on_success's quick path) need not.
        self._last_now = 0.0
        self._zero_counters()

    def _zero_counters(self) -> None:
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._times_opened = 0
        self._half_open_successes = 0
        self._stale_results = 0

    # ------------------------------------------------------------ options

    @property
    def options(self) -> BreakerOptions:
        return self._options

    @options.setter
    def options(self, options: BreakerOptions) -> None:
        """New options apply from the next call; the state is kept."""
        if not isinstance(options, BreakerOptions):
            raise SettingError("options", options, "a BreakerOptions")
        with self._lock:
            if options.window_seconds != self._window.seconds:
                self._new_window(options.window_seconds)
            self._options = options
            self._slow_from = _slow_from(options)
            self._quick_until = -math.inf  # the rules may fire on the window as it is

    # ------------------------------------------------------------ listeners

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(old_state, new_state, now)`` on every transition, outside the lock."""
        with self._lock:
            self._listeners = self._listeners + (fn,)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners = tuple(f for f in self._listeners if f is not fn)

    # ------------------------------------------------------------ questions

    def state(self, now: float) -> str:
        """The state at ``now`` (OPEN turns HALF_OPEN here once reset_timeout has passed)."""
        if self._closed:  # time never moves CLOSED: no need for the lock
            return STATE_CLOSED
        return self._locked(self._state_at, now)

    def acquire(self, now: float) -> int | None:
        """A permit number if a call may go now, else None.  Pass it back as ``permit=``."""
        with self._lock:
            if self._closed:  # _acquire when CLOSED: time cannot move it, no event
                self._issued += 1
                return self._issued
        return self._locked(self._acquire, now)

    def try_acquire(self, now: float) -> bool:
        """May a call go now?  In HALF_OPEN this takes one of the probe permits."""
        return self.acquire(now) is not None

    def retry_in(self, now: float) -> float:
        """Seconds until a probe may go: 0.0 unless OPEN."""
        return self._locked(self._retry_in, now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """A plain dict of the state and counters, for reports."""
        return self._locked(self._snapshot, now)

    def forget_in_flight(self) -> None:
        """The calls out now will never report (a forked child's copy of the
        parent's): their HALF_OPEN probe permits are free again."""
        with self._lock:
            self._probes.clear()

    # ------------------------------------------------------------ outcomes

    def on_success(self, now: float, duration: float = 0.0, *, permit: int | None = None) -> None:
        with self._lock:
            if (
                now < self._quick_until
                and duration < self._slow_from
                and (permit is None or permit >= self._epoch_first)
            ):
                # the quick path (see _check_trip): what _closed_success would do, as it would
                self._uncounted += 1
                return
            if self._state == STATE_CLOSED and (permit is None or permit >= self._epoch_first):
                # _outcome's path for a fresh success when CLOSED, without its dispatch
                self._last_now = now
                self._closed_success(now, duration)
                events = self._pending
                if not events:  # most successes: no transition (a slow-call rate may trip)
                    return
                self._pending = []
                listeners = self._listeners
            else:
                listeners = None
        if listeners is None:
            self._locked(self._outcome, now, _SUCCESS, duration, permit)
        elif listeners:
            _notify(listeners, events)

    def on_failure(self, now: float, duration: float = 0.0, *, permit: int | None = None) -> None:
        """A service failure (5xx, timeout, connection error, malformed answer)."""
        self._locked(self._outcome, now, _FAILURE, duration, permit)

    def on_ignored(self, now: float, *, permit: int | None = None) -> None:
        """An outcome that is neither (client error, 429, cancelled): returns a probe permit, counts nothing."""
        self._locked(self._outcome, now, _IGNORED, 0.0, permit)

    def record(
        self, now: float, success: bool, duration: float = 0.0, *, permit: int | None = None
    ) -> None:
        """``on_success`` or ``on_failure``, for ``track_request_result``."""
        self._locked(self._outcome, now, _SUCCESS if success else _FAILURE, duration, permit)

    # ------------------------------------------------------------ commands

    def reset(self, now: float | None = None) -> None:
        """Back to CLOSED with every counter at zero.  ``now`` (default: the last one seen) goes to listeners."""
        self._locked(self._reset, self._last_now if now is None else now)

    def force_open(self, now: float) -> None:
        """OPEN from ``now``: it turns HALF_OPEN after reset_timeout like any opening."""
        self._locked(self._force_open, now)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self._state!r}, consecutive_failures={self._consecutive_failures}, "
            f"failure_threshold={self._options.failure_threshold}, reset_timeout={self._options.reset_timeout})"
        )

    # ------------------------------------------------------------ locking and events

    def _locked(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` under the lock, then tell listeners of its transitions outside it."""
        with self._lock:
            result = fn(*args)
            events = self._pending
            if not events:  # most calls: no transition, nothing to hand over (no new list)
                return result
            self._pending = []
            listeners = self._listeners
        if listeners:
            _notify(listeners, events)
        return result

    def _transition(self, event: str, now: float) -> None:
        new = _TRANSITIONS.get((self._state, event))
        if new is None:  # a bug here, never a caller's mistake: change nothing
            raise RuntimeError(f"no transition from {self._state} on {event!r}")
        old, self._state = self._state, new
        self._closed = new == STATE_CLOSED
        self._epoch_first = self._issued + 1
        self._probes.clear()
        self._half_open_successes = 0
        if new == STATE_OPEN:
            self._times_opened += old != STATE_OPEN
            self._opened_at = now
            self._new_window(self._options.window_seconds)
        elif new == STATE_CLOSED:
            self._consecutive_failures = 0
            self._opened_at = None
            self._new_window(self._options.window_seconds)
        if old != new:
            self._pending.append((old, new, now))

    def _advance(self, now: float) -> None:
        self._last_now = now
        opened_at = self._opened_at
        if (
            self._state == STATE_OPEN
            and opened_at is not None
            and now >= opened_at + self._options.reset_timeout
        ):
            self._transition(_TIMEOUT, now)

    # ------------------------------------------------------------ under the lock

    def _state_at(self, now: float) -> str:
        self._advance(now)
        return self._state

    def _acquire(self, now: float) -> int | None:
        self._advance(now)
        if self._state == STATE_OPEN:
            return None
        if self._state == STATE_HALF_OPEN:
            if len(self._probes) >= self._options.half_open_max_requests:
                return None
            self._probes[self._issued + 1] = None
        self._issued += 1
        return self._issued

    def _retry_in(self, now: float) -> float:
        self._advance(now)
        if self._state != STATE_OPEN:
            return 0.0
        opened_at = self._opened_at
        return 0.0 if opened_at is None else max(0.0, opened_at + self._options.reset_timeout - now)

    def _force_open(self, now: float) -> None:
        self._last_now = now  # a time seen, for reset() without one
        self._transition(_FORCE_OPEN, now)

    def _reset(self, now: float) -> None:
        self._transition(_RESET, now)
        self._zero_counters()

    def _outcome(self, now: float, kind: str, duration: float, permit: int | None) -> None:
        self._advance(now)
        if self._is_stale(permit):
            self._stale_results += 1
            return
        if self._state == STATE_HALF_OPEN:
            self._probes.pop(next(iter(self._probes)) if permit is None else permit)
        _OUTCOME_TABLE[(self._state, kind)](self, now, duration)

    def _is_stale(self, permit: int | None) -> bool:
        if self._state == STATE_OPEN:
            return True
        if permit is not None and permit < self._epoch_first:
            return True
        if self._state == STATE_HALF_OPEN:
            return not self._probes if permit is None else permit not in self._probes
        return False

    def _new_window(self, seconds: float) -> None:
        self._window = _OutcomeWindow(seconds)
        self._uncounted = 0  # quick successes not yet in the window, all in its newest bucket
        self._quick_until = -math.inf  # on_success's quick path is shut (see _check_trip)

    def _counted_window(self) -> _OutcomeWindow:
        """The window with the quick path's successes counted in."""
        window = self._window
        if self._uncounted:
            window.add_successes(self._uncounted)
            self._uncounted = 0
        return window

    def _closed_success(self, now: float, duration: float) -> None:
        self._consecutive_failures = 0
        self._counted_window().add(now, False, self._options.is_slow(duration))
        self._check_trip(now)

    def _closed_failure(self, now: float, duration: float) -> None:
        self._consecutive_failures += 1
        self._counted_window().add(now, True, self._options.is_slow(duration))
        self._check_trip(now)

    def _closed_ignored(self, now: float, duration: float) -> None:
        pass

    def _probe_success(self, now: float, duration: float) -> None:
        self._half_open_successes += 1
        if self._half_open_successes >= self._options.half_open_max_requests:
            self._transition(_PROBES_PASSED, now)

    def _probe_failure(self, now: float, duration: float) -> None:
        self._transition(_PROBE_FAILED, now)

    def _probe_ignored(self, now: float, duration: float) -> None:
        pass  # its permit is already back

    def _check_trip(self, now: float) -> None:
        """Trip if a rule fires; else open on_success's quick path while it is sure to be right.

        A success that is not slow, counted into the window's newest bucket (time
        has not moved past it, so nothing leaves the window), cannot trip once no
        rule fired and no failure is counted since: the count rule is at zero, and
        the failure and slow rates only fall as calls grow (the rates were checked
        here, or the rules are off).  Then it only sets ``_last_now`` and adds one
        call to the window, which the quick path does (its count goes in lazily).
        Anything else shuts the quick path: a failure or a slow call (they come
        back here), a new bucket (the horizon), new options, a snapshot that prunes
        the window, a transition (a new window).
        """
        if self._should_trip():
            self._transition(_TRIP, now)
            return
        opts = self._options
        window = self._window
        if not self._consecutive_failures and (
            window.calls >= opts.minimum_calls
            or (opts.failure_rate_threshold is None and not opts.slow_call_rule)
        ):
            self._quick_until = window.newest_until()
        else:
            self._quick_until = -math.inf

    def _should_trip(self) -> bool:
        opts = self._options
        if self._consecutive_failures >= opts.failure_threshold:
            return True
        if self._window.calls < opts.minimum_calls:
            return False
        failure_rate, slow_rate = self._window.rates()
        if opts.failure_rate_threshold is not None and failure_rate >= opts.failure_rate_threshold:
            return True
        threshold = opts.slow_call_rate_threshold
        return opts.slow_call_rule and threshold is not None and slow_rate >= threshold

    def _snapshot(self, now: float) -> dict[str, Any]:
        retry_in = self._retry_in(now)
        if self._counted_window().prune(now):
            self._quick_until = -math.inf  # the rates may have risen unchecked
        failure_rate, slow_rate = self._window.rates()
        opts = self._options
        return {
            "state": self._state,
            "consecutive_failures": self._consecutive_failures,
            "failure_threshold": opts.failure_threshold,
            "reset_timeout": opts.reset_timeout,
            "opened_at": self._opened_at,
            "retry_in": retry_in,
            "times_opened": self._times_opened,
            "half_open_in_flight": len(self._probes),
            "half_open_max_requests": opts.half_open_max_requests,
            "stale_results": self._stale_results,
            "window": {
                "calls": self._window.calls,
                "failures": self._window.failures,
                "slow": self._window.slow,
                "failure_rate": failure_rate,
                "slow_rate": slow_rate,
            },
        }


def _slow_from(options: BreakerOptions) -> float:
    """The shortest duration that may count as slow: inf while the slow-call rule is off
    (:attr:`BreakerOptions.slow_call_rule`)."""
    threshold = options.slow_call_duration
    return threshold if options.slow_call_rule and threshold is not None else math.inf


# What an outcome does in each state (OPEN never gets here: results are stale there).
_OUTCOME_TABLE: dict[tuple[str, str], Callable[[CircuitBreaker, float, float], None]] = {
    (STATE_CLOSED, _SUCCESS): CircuitBreaker._closed_success,
    (STATE_CLOSED, _FAILURE): CircuitBreaker._closed_failure,
    (STATE_CLOSED, _IGNORED): CircuitBreaker._closed_ignored,
    (STATE_HALF_OPEN, _SUCCESS): CircuitBreaker._probe_success,
    (STATE_HALF_OPEN, _FAILURE): CircuitBreaker._probe_failure,
    (STATE_HALF_OPEN, _IGNORED): CircuitBreaker._probe_ignored,
}


def _notify(listeners: tuple[Listener, ...], events: list[tuple[str, str, float]]) -> None:
    """Call every listener for every event; re-raise the first listener error after all ran."""
    first_error: BaseException | None = None
    for old, new, now in events:
        for fn in listeners:
            try:
                fn(old, new, now)
            except Exception as exc:  # one bad listener must not starve the others
                if first_error is None:
                    first_error = exc
    if first_error is not None:
        raise first_error
