"""API key multiplexing: which of a backend's keys (or endpoints) takes the next attempt.

A :class:`KeyPool` holds one :class:`KeyState` per key and answers two
questions, with ``now`` passed in: "which key may take this attempt now?"
(:meth:`KeyPool.choose`, which reserves it and returns a :class:`Lease`) and
"when could one?" (:meth:`KeyPool.next_ready_at`).  The engine gives every
lease back exactly once with its :class:`Outcome` (:meth:`KeyPool.release`).

The pool never sees a secret: keys are named (:attr:`KeyOptions.name`) and
the engine keeps the name -> secret map, so nothing it reports can leak one.

A key may take an attempt of ``tokens`` estimated tokens for ``model`` at ``now`` when
* it is not disabled (an auth failure disables it, with its reason, until
  :meth:`KeyPool.enable`);
* it is not cooling down for the request's model, nor as a whole.  A rate
  limit has a scope (:class:`Outcome`): a 429 on a request that names a model
  cools that (key, model) pair only, for the attempt's Retry-After (or the
  outcome's ``cooldown``, else ``default_cooldown``), since providers limit
  per key *and* model; a key-wide signal (an exhausted quota) or a request
  naming no model cools the whole key.  A provider hint of 0 requests or 0
  tokens remaining cools the same scope until that hint's reset.  No rest
  is longer than the pool's ``max_cooldown``: a Retry-After (or a reset)
  over it is not believed (the outcome's ``cooldown``, else
  ``default_cooldown``, is used instead) and the key's
  ``retry_after_over_cap`` and ``longest_retry_after_asked`` say so.  Cooling
  pairs are forgotten as they expire, so memory follows what is cooling;
* its own :class:`~.breaker.CircuitBreaker` gives a permit (server failures
  trip it; OPEN skips the key until ``reset_timeout``, then HALF_OPEN lets
  its probes through);
* fewer than ``max_concurrent`` attempts are in flight on it;
* its request and token buckets have room.

Rate limits are token buckets, i.e. a sliding rate, not fixed minute windows.
The request bucket holds ``max(rpm, 1)`` and refills continuously at
``rpm / 60`` per second: ``rpm=60`` allows a burst of 60, then one request a
second.  The token bucket holds ``tpm`` and refills at ``tpm / 60`` a second.
An attempt takes 1 request and its estimated ``tokens``, at most the bucket's
capacity (an estimate above ``tpm`` waits for a full bucket, not forever).
An attempt that does not fit waits (:meth:`KeyPool.next_ready_at` says until
when); it is never sent to be refused.  When an outcome reports the usage,
the difference to the reservation is refunded (up to capacity) or charged.
A charge may leave the token bucket below zero: a debt that refill pays back
before the next attempt fits, so under-estimates cannot push a key past its
``tpm``.  Outcomes without usage keep the reservation.

Strategies choose among the keys that may go now: :class:`RoundRobin`,
:class:`LeastLoaded`, :class:`Weighted` (:func:`strategy_by_name`).  A
strategy is any object with ``pick(candidates, rng) -> KeyState``.

Threads: every pool method takes one ``threading.Lock``.  A strategy's
``pick`` runs under it: a strategy is a pure choice and must not call the
pool.  The per-key breakers have no listeners, so no user callback runs
under the lock.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .breaker import STATE_HALF_OPEN, STATE_OPEN, BreakerOptions, CircuitBreaker
from .errors import ApiError, AuthenticationError, RateLimitError, SettingError
from .retry import DEFAULT_MAX_RETRY_AFTER, believed_retry_after
from .validation import require_int, require_number

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_MAX_COOLDOWN",
    "DEFAULT_WEIGHT",
    "KeyOptions",
    "KeyPool",
    "KeyState",
    "Lease",
    "LeaseError",
    "LeastLoaded",
    "OUTCOMES",
    "OUTCOME_AUTH_FAILURE",
    "OUTCOME_IGNORED",
    "OUTCOME_RATE_LIMITED",
    "OUTCOME_SERVER_FAILURE",
    "OUTCOME_SUCCESS",
    "Outcome",
    "Readiness",
    "SCOPE_KEY",
    "SCOPE_MODEL",
    "RoundRobin",
    "STRATEGY_NAMES",
    "Strategy",
    "Weighted",
    "strategy_by_name",
]

DEFAULT_WEIGHT = 1.0
DEFAULT_COOLDOWN = 1.0  # seconds a key rests after a 429 that gave no Retry-After
DEFAULT_MAX_COOLDOWN = DEFAULT_MAX_RETRY_AFTER  # the longest rest a server is believed for
SECONDS_PER_MINUTE = 60.0
MIN_QUOTA_FRACTION = 1e-3  # the least share of its quota a candidate is credited with
_INF = float("inf")
_SLACK = 1e-9  # relative tolerance of a bucket's level, so that next_ready_at is exact in floats

OUTCOME_SUCCESS = "success"
OUTCOME_RATE_LIMITED = "rate_limited"
OUTCOME_SERVER_FAILURE = "server_failure"
OUTCOME_AUTH_FAILURE = "auth_failure"
OUTCOME_IGNORED = "ignored"
OUTCOMES = frozenset(
    {
        OUTCOME_SUCCESS,
        OUTCOME_RATE_LIMITED,
        OUTCOME_SERVER_FAILURE,
        OUTCOME_AUTH_FAILURE,
        OUTCOME_IGNORED,
    }
)

SCOPE_MODEL = "model"  # a rate limit on one (key, model) pair
SCOPE_KEY = "key"  # a rate limit on the whole key, whatever the model
SCOPES = frozenset({SCOPE_MODEL, SCOPE_KEY})

REASON_COOLING = "cooling"  # a 429 (or a hint of 0 remaining) for this request's model on this key
REASON_KEY_COOLING = "key cooling"  # the same for the whole key
REASON_RPM = "rpm"  # the key's own requests-per-minute budget
REASON_TPM = "tpm"  # the key's own tokens-per-minute budget
REASON_BREAKER = "breaker"  # the key's own circuit is OPEN

_HINT_KINDS = ("requests", "tokens")


class LeaseError(RuntimeError):
    """A lease released twice, or given to a pool that did not grant it: a bug in the caller."""


# ---------------------------------------------------------------- options and outcomes


@dataclass(frozen=True)
class KeyOptions:
    """One API key (or endpoint) of a backend; validated on construction.

    ``name`` is how the key is reported, never the secret.  ``None`` for
    ``max_concurrent``, ``rpm`` or ``tpm`` means no cap; ``weight`` is used
    by the weighted strategy only.
    """

    name: str
    max_concurrent: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    weight: float = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SettingError(
                "name", self.name, "a non-empty string naming the key (never the secret)"
            )
        require_int("max_concurrent", self.max_concurrent, 1, optional=True)
        require_number("rpm", self.rpm, exclusive=True, optional=True)
        require_number("tpm", self.tpm, exclusive=True, optional=True)
        require_number("weight", self.weight, exclusive=True)


def _count_or_none(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 0)


@dataclass(frozen=True)
class Outcome:
    """How an attempt on a leased key ended; build it with the class methods.

    ``tokens_in``/``tokens_out``: the usage the provider reported, if any
    (the sum corrects the token bucket).  ``retry_after``: seconds the
    server asked for, for ``rate_limited``; ``cooldown``: our own figure,
    used when the server asked for none or for more than the pool believes
    (None: the pool's default); ``scope``: what it cools, the (key, model) pair
    (``"model"``, the default) or the whole key (``"key"``).  ``reason``: why
    a key is disabled, for ``auth_failure``.
    """

    kind: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    retry_after: float | None = None
    reason: str | None = None
    scope: str = SCOPE_MODEL
    cooldown: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTCOMES:
            raise SettingError("kind", self.kind, f"one of {', '.join(sorted(OUTCOMES))}")
        if self.scope not in SCOPES:
            raise SettingError("scope", self.scope, f"one of {', '.join(sorted(SCOPES))}")
        if (
            self.retry_after is None
            and self.cooldown is None
            and _count_or_none(self.tokens_in)
            and _count_or_none(self.tokens_out)
        ):
            return  # nothing more to check (most outcomes)
        require_int("tokens_in", self.tokens_in, 0, optional=True)
        require_int("tokens_out", self.tokens_out, 0, optional=True)
        require_number("retry_after", self.retry_after, optional=True)
        require_number("cooldown", self.cooldown, optional=True)

    @classmethod
    def success(cls, tokens_in: int | None = None, tokens_out: int | None = None) -> Outcome:
        return cls(OUTCOME_SUCCESS, tokens_in, tokens_out)

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | None = None,
        scope: str = SCOPE_MODEL,
        cooldown: float | None = None,
    ) -> Outcome:
        """A 429: the (key, model) pair (``scope="model"``) or the whole key (``scope="key"``)
        cools down for ``retry_after`` seconds, as the server asked; for ``cooldown``
        when it asked for none or for more than the pool's ``max_cooldown`` (None:
        the pool's default cooldown)."""
        return cls(OUTCOME_RATE_LIMITED, retry_after=retry_after, scope=scope, cooldown=cooldown)

    @classmethod
    def server_failure(cls) -> Outcome:
        """A 5xx, timeout, connection error or malformed answer: a failure for the key's breaker."""
        return cls(OUTCOME_SERVER_FAILURE)

    @classmethod
    def auth_failure(cls, reason: str = "authentication failed") -> Outcome:
        """A 401/403: the key is disabled with ``reason`` (which must not contain the secret)."""
        return cls(OUTCOME_AUTH_FAILURE, reason=reason)

    @classmethod
    def ignored(cls, tokens_in: int | None = None, tokens_out: int | None = None) -> Outcome:
        """A client error, a cancellation, a stream closed early: nothing said about the key."""
        return cls(OUTCOME_IGNORED, tokens_in, tokens_out)

    @classmethod
    def from_error(cls, error: ApiError, cooldown: float | None = None) -> Outcome:
        """The outcome a typed error stands for.  The reason names the class and status only,
        never the provider's text (which may quote part of a key).  A 429 without
        Retry-After (or one over the pool's cap) cools for ``cooldown`` (None: the
        pool's default)."""
        if isinstance(error, RateLimitError):
            asked = believed_retry_after(error.retry_after, None)  # NaN, infinity: as if none
            return cls.rate_limited(asked, SCOPE_KEY if error.key_wide else SCOPE_MODEL, cooldown)
        if isinstance(error, AuthenticationError):
            status = f" (HTTP {error.status})" if error.status is not None else ""
            return cls.auth_failure(f"{type(error).__name__}{status}")
        if error.breaker_failure:
            return cls.server_failure()
        return cls.ignored()

    @property
    def usage(self) -> int | None:
        """Tokens used in all, or None when the provider reported none."""
        if self.tokens_in is None and self.tokens_out is None:
            return None
        return (self.tokens_in or 0) + (self.tokens_out or 0)


# ---------------------------------------------------------------- buckets and hints


class _TokenBucket:
    """Holds up to ``capacity``; refills continuously at ``rate`` per second; may hold a debt (< 0)."""

    __slots__ = ("capacity", "rate", "level", "updated")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate, self.level, self.updated = capacity, rate, capacity, now

    def refill(self, now: float) -> None:
        if now > self.updated:  # a `now` from the past (threads racing) adds nothing
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def need(self, amount: float) -> float:
        return min(amount, self.capacity)

    def ready_at(self, amount: float, now: float) -> float:
        """The earliest time ``amount`` fits (``now`` if it fits now)."""
        self.refill(now)
        short = self.need(amount) - self.level
        if short <= _SLACK * max(1.0, self.capacity):
            return now
        return now + short / self.rate

    def take(self, amount: float) -> float:
        """Take what ``amount`` needs (it fits: checked by ``ready_at``); returns what was taken."""
        taken = self.need(amount)
        self.level = max(0.0, self.level - taken)  # it fitted: below zero only by the slack
        return taken

    def correct(self, difference: float) -> None:
        """Give back (> 0, up to capacity) or charge (< 0, possibly into debt)."""
        self.level = min(self.capacity, self.level + difference)

    def resize(self, capacity: float, rate: float, now: float) -> None:
        self.refill(now)
        self.capacity, self.rate = capacity, rate
        self.level = min(self.level, capacity)


def _request_bucket(rpm: float | None, now: float) -> _TokenBucket | None:
    return None if rpm is None else _TokenBucket(max(rpm, 1.0), rpm / SECONDS_PER_MINUTE, now)


def _tokens_bucket(tpm: float | None, now: float) -> _TokenBucket | None:
    return None if tpm is None else _TokenBucket(tpm, tpm / SECONDS_PER_MINUTE, now)


def _resized(
    bucket: _TokenBucket | None, fresh: _TokenBucket | None, now: float
) -> _TokenBucket | None:
    """``bucket`` with ``fresh``'s limits, keeping its level; ``fresh`` if there was none."""
    if bucket is None or fresh is None:
        return fresh
    bucket.resize(fresh.capacity, fresh.rate, now)
    return bucket


def _hint_number(value: Any) -> float | None:
    """A usable figure from a provider header: a finite number >= 0, else None (headers are not trusted)."""
    try:
        return require_number("hint", value)
    except SettingError:
        return None


class _QuotaHint:
    """What the provider last said of one limit: remaining, until when, and the limit (known or estimated).

    Without a ``*_limit`` hint the limit is estimated as the most ever seen
    remaining.  A hint is forgotten at its reset (the quota is presumed back).
    """

    __slots__ = ("remaining", "reset_at", "limit")

    def __init__(self) -> None:
        self.remaining: float | None = None
        self.reset_at: float | None = None
        self.limit: float | None = None

    def update(
        self, remaining: float | None, reset: float | None, limit: float | None, now: float
    ) -> None:
        if limit is not None and limit > 0:
            self.limit = limit
        if remaining is not None:
            self.remaining = remaining
            self.reset_at = None if reset is None else now + reset
            if limit is None:
                self.limit = max(self.limit or 0.0, remaining)

    def current(self, now: float) -> float | None:
        if self.remaining is None or (self.reset_at is not None and now >= self.reset_at):
            return None
        return self.remaining

    def fraction(self, now: float) -> float:
        remaining = self.current(now)
        if remaining is None or not self.limit:
            return 1.0
        return max(MIN_QUOTA_FRACTION, min(1.0, remaining / self.limit))


# ---------------------------------------------------------------- per key


class KeyState:
    """One key inside a pool.  Strategies read ``name``, ``options``, ``in_flight``,
    ``weight``, ``quota_fraction`` (the share of its provider quota left, in
    (0, 1], 1.0 without hints) and ``seq`` (its place in the pool's order);
    only the pool writes."""

    __slots__ = (
        "options",
        "seq",
        "in_flight",
        "cooldown_until",
        "model_cooldowns",
        "disabled",
        "breaker",
        "requests_bucket",
        "tokens_bucket",
        "hints",
        "quota_fraction",
        "counts",
        "longest_asked",
    )

    def __init__(
        self, options: KeyOptions, seq: int, breaker_options: BreakerOptions, now: float
    ) -> None:
        self.options = options
        self.seq = seq
        self.in_flight = 0
        self.cooldown_until = float("-inf")  # the whole key
        self.model_cooldowns: dict[str, float] = {}  # (this key, model) pairs cooling, until when
        self.disabled: str | None = None
        self.breaker = CircuitBreaker(breaker_options)
        self.requests_bucket = _request_bucket(options.rpm, now)
        self.tokens_bucket = _tokens_bucket(options.tpm, now)
        self.hints = {kind: _QuotaHint() for kind in _HINT_KINDS}
        self.quota_fraction = 1.0
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.longest_asked: float | None = None  # the longest rest asked for over the cap

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def weight(self) -> float:
        return self.options.weight

    def __repr__(self) -> str:
        return f"KeyState(name={self.name!r}, in_flight={self.in_flight}, disabled={self.disabled is not None})"

    def ready_at(self, now: float, tokens: int, model: str | None = None) -> float | None:
        """When this key could take an attempt of ``tokens`` for ``model``: ``now`` if now;
        None if never by waiting alone (disabled, or only an attempt finishing frees it).
        ``model=None``: the key itself, whatever (key, model) pairs are cooling.
        (:meth:`readiness` says the same with what holds it; this is the hot path.)"""
        if self.disabled is not None:
            return None
        cap = self.options.max_concurrent
        if cap is not None and self.in_flight >= cap:
            return None
        at = self._breaker_ready_at(now)
        if at is None:
            return None
        at = max(at, self.cooldown_until)
        if model is not None and self.model_cooldowns:
            at = max(at, self.model_cooldowns.get(model, -_INF))
        if self.requests_bucket is not None:
            at = max(at, self.requests_bucket.ready_at(1, now))
        if self.tokens_bucket is not None:
            at = max(at, self.tokens_bucket.ready_at(tokens, now))
        return at

    def readiness(self, now: float, tokens: int, model: str | None = None) -> Readiness | None:
        """When this key could take the attempt, what holds it until then (a
        ``REASON_*``; None when nothing does) and whether it is also *busy*:
        at ``max_concurrent`` or with its half-open probes out, so that only an
        attempt finishing frees it (and not before ``at``).  None: disabled."""
        if self.disabled is not None:
            return None
        cap = self.options.max_concurrent
        busy = cap is not None and self.in_flight >= cap
        at = self._breaker_ready_at(now)
        if at is None:  # half-open, its probes out
            at, busy = now, True
        why = REASON_BREAKER if at > now else None
        for until, reason in (
            (self.cooldown_until, REASON_KEY_COOLING),
            (
                self.model_cooldowns.get(model, -_INF) if model is not None else -_INF,
                REASON_COOLING,
            ),
            (
                self.requests_bucket.ready_at(1, now)
                if self.requests_bucket is not None
                else -_INF,
                REASON_RPM,
            ),
            (
                self.tokens_bucket.ready_at(tokens, now)
                if self.tokens_bucket is not None
                else -_INF,
                REASON_TPM,
            ),
        ):
            if until > at:
                at, why = until, reason
        return (
            Readiness(at, self.name, why, busy)
            if at > now
            else Readiness(now, self.name, None, busy)
        )

    def _breaker_ready_at(self, now: float) -> float | None:
        state = self.breaker.state(now)
        if state == STATE_OPEN:
            snap = self.breaker.snapshot(now)
            return (
                snap["opened_at"] + snap["reset_timeout"]
            )  # the breaker's own test, exact in floats
        if state == STATE_HALF_OPEN:
            snap = self.breaker.snapshot(now)
            return now if snap["half_open_in_flight"] < snap["half_open_max_requests"] else None
        return now

    def cool_down(self, until: float, now: float, model: str | None = None) -> bool:
        """Rest until ``until``: the whole key, or only for ``model``.  A rest only
        lengthens, and one ending by ``now`` is none.  True if this started or
        lengthened a rest."""
        if model is None:
            current = self.cooldown_until
        else:
            cooling = self.model_cooldowns
            for name in [m for m, end in cooling.items() if end <= now]:  # forget what has ended
                del cooling[name]
            current = cooling.get(model, -_INF)
        if until <= current or until <= now:
            return False
        self.counts["cooldowns"] += now >= current
        if model is None:
            self.cooldown_until = until
        else:
            self.model_cooldowns[model] = until
        return True

    def over_cap(self, asked: float) -> None:
        """Note a rest the server asked for that was not believed for being longer than the cap."""
        self.counts["retry_after_over_cap"] += 1
        self.longest_asked = asked if self.longest_asked is None else max(self.longest_asked, asked)


_COUNTERS = (
    "requests",
    "successes",
    "failures",
    "rate_limited",
    "auth_failures",
    "ignored",
    "cooldowns",
    "retry_after_over_cap",
    "tokens_in",
    "tokens_out",
)
_OUTCOME_COUNTER = {
    OUTCOME_SUCCESS: "successes",
    OUTCOME_SERVER_FAILURE: "failures",
    OUTCOME_RATE_LIMITED: "rate_limited",
    OUTCOME_AUTH_FAILURE: "auth_failures",
    OUTCOME_IGNORED: "ignored",
}


class Lease:
    """A reservation on one key for one attempt: give it back once with :meth:`KeyPool.release`."""

    __slots__ = (
        "name",
        "model",
        "tokens",
        "started_at",
        "_state",
        "_pool",
        "_permit",
        "_tokens_taken",
        "_released",
    )

    def __init__(
        self,
        pool: KeyPool,
        state: KeyState,
        tokens: int,
        now: float,
        permit: int,
        taken: float,
        model: str | None = None,
    ) -> None:
        self.name = state.name
        self.model = model  # the scope a 429 on this attempt cools, with the key
        self.tokens = tokens
        self.started_at = now
        self._pool, self._state, self._permit, self._tokens_taken = pool, state, permit, taken
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, tokens={self.tokens}, {'released' if self._released else 'out'})"


class Readiness(NamedTuple):
    """When a key could take a request, which key, what holds it until then (a
    ``REASON_*``; None when nothing does) and whether it is busy besides (only
    an attempt finishing frees it)."""

    at: float
    key: str
    reason: str | None
    busy: bool = False


# ---------------------------------------------------------------- strategies


class Strategy(Protocol):
    """Chooses one of the keys that may go now.  ``candidates`` is never empty
    and is in the pool's order; ``pick`` returns one of them."""

    name: str

    def pick(self, candidates: list[KeyState], rng: random.Random) -> KeyState: ...


class RoundRobin:
    """Each key in turn, in the pool's order: the first candidate after the last one
    picked, wrapping around.  A key that cannot go is skipped and keeps its place,
    so the rotation stays fair as candidates come and go."""

    name = "round-robin"

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a strategy may be shared by pools in different threads
        self._last_seq = -1

    def pick(self, candidates: list[KeyState], rng: random.Random) -> KeyState:
        with self._lock:
            chosen = next((c for c in candidates if c.seq > self._last_seq), candidates[0])
            self._last_seq = chosen.seq
            return chosen

    def __repr__(self) -> str:
        return "RoundRobin()"


class LeastLoaded:
    """Power of two random choices: two distinct candidates drawn at random,
    the less loaded one taken.  Load is ``(in_flight + 1) / quota_fraction``:
    in-flight attempts, weighed up as the key's provider quota runs low (a key
    with half its requests left counts double).  Equal loads: the first drawn,
    which is a fair coin."""

    name = "least-loaded"

    def pick(self, candidates: list[KeyState], rng: random.Random) -> KeyState:
        if len(candidates) == 1:
            return candidates[0]
        first, second = rng.sample(candidates, 2)
        return second if _load(second) < _load(first) else first

    def __repr__(self) -> str:
        return "LeastLoaded()"


def _load(state: KeyState) -> float:
    return (state.in_flight + 1) / state.quota_fraction


class Weighted:
    """At random, each candidate with probability proportional to its ``weight``."""

    name = "weighted"

    def pick(self, candidates: list[KeyState], rng: random.Random) -> KeyState:
        return rng.choices(candidates, weights=[c.weight for c in candidates])[0]

    def __repr__(self) -> str:
        return "Weighted()"


_STRATEGIES = {cls.name: cls for cls in (RoundRobin, LeastLoaded, Weighted)}
STRATEGY_NAMES = tuple(sorted(_STRATEGIES))


def strategy_by_name(name: str) -> Strategy:
    """A new strategy object: ``"round-robin"``, ``"least-loaded"`` or ``"weighted"``."""
    cls = _STRATEGIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise SettingError("strategy", name, f"one of {', '.join(repr(n) for n in STRATEGY_NAMES)}")
    return cls()


def _as_strategy(strategy: Strategy | str) -> Strategy:
    if isinstance(strategy, str):
        return strategy_by_name(strategy)
    if not callable(getattr(strategy, "pick", None)):
        raise SettingError(
            "strategy", strategy, "a strategy object with pick(candidates, rng), or its name"
        )
    return strategy


# ---------------------------------------------------------------- the pool


class KeyPool:
    """The keys of one backend.  See the module docstring for the rules.

    Every method takes ``now`` where time matters and never reads a clock.
    ``now`` at construction is when the buckets start full (default 0.0: any
    later ``now`` finds them full anyway).
    """

    def __init__(
        self,
        keys: list[KeyOptions],
        strategy: Strategy | str,
        *,
        breaker_options: BreakerOptions | None = None,
        default_cooldown: float = DEFAULT_COOLDOWN,
        max_cooldown: float = DEFAULT_MAX_COOLDOWN,
        now: float = 0.0,
    ) -> None:
        if breaker_options is None:
            breaker_options = BreakerOptions()
        if not isinstance(breaker_options, BreakerOptions):
            raise SettingError("breaker_options", breaker_options, "a BreakerOptions")
        self._lock = threading.Lock()
        self._strategy = _as_strategy(strategy)
        self._breaker_options = breaker_options
        self._default_cooldown = require_number("default_cooldown", default_cooldown)
        self._max_cooldown = require_number("max_cooldown", max_cooldown)
        self._keys: dict[str, KeyState] = {}
        self._seq = itertools.count()
        for key in keys:
            self.add(key, now)

    # ------------------------------------------------------------ settings

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @strategy.setter
    def strategy(self, strategy: Strategy | str) -> None:
        strategy = _as_strategy(strategy)
        with self._lock:
            self._strategy = strategy

    @property
    def breaker_options(self) -> BreakerOptions:
        return self._breaker_options

    @breaker_options.setter
    def breaker_options(self, options: BreakerOptions) -> None:
        """New options for every key's breaker (state kept) and for keys added later."""
        if not isinstance(options, BreakerOptions):
            raise SettingError("breaker_options", options, "a BreakerOptions")
        with self._lock:
            self._breaker_options = options
            for state in self._keys.values():
                state.breaker.options = options

    @property
    def default_cooldown(self) -> float:
        return self._default_cooldown

    @default_cooldown.setter
    def default_cooldown(self, seconds: float) -> None:
        self._default_cooldown = require_number("default_cooldown", seconds)

    @property
    def max_cooldown(self) -> float:
        """The longest rest believed: a Retry-After or a reset over it is not."""
        return self._max_cooldown

    @max_cooldown.setter
    def max_cooldown(self, seconds: float) -> None:
        self._max_cooldown = require_number("max_cooldown", seconds)

    def _rest(self, state: KeyState, asked: float | None, fallback: float | None) -> float:
        """(under the lock) How long to cool for a server's ``asked`` rest: as
        asked when believed (never over the cap), else our own ``fallback``
        (None: the default): the cap bounds what a server is believed, not
        the client's own backoff (a cap of 0, "believe no Retry-After",
        must not leave a rate-limited key uncooled)."""
        wait = believed_retry_after(asked, self._max_cooldown)
        if wait is not None:
            return wait
        if asked is not None:
            state.over_cap(asked)
        return self._default_cooldown if fallback is None else fallback

    # ------------------------------------------------------------ keys

    def add(self, key: KeyOptions, now: float = 0.0) -> None:
        """Add a key, ready at once (full buckets, closed breaker).  A name in use is refused."""
        if not isinstance(key, KeyOptions):
            raise SettingError("key", key, "a KeyOptions")
        with self._lock:
            if key.name in self._keys:
                raise SettingError("name", key.name, "a key name not already in the pool")
            self._keys[key.name] = KeyState(key, next(self._seq), self._breaker_options, now)

    def remove(self, name: str) -> None:
        """Take a key out: it is chosen no more.  Its leases still out are released as usual
        (onto the removed key); a key added later under the same name starts afresh."""
        with self._lock:
            self._state_of(name)
            del self._keys[name]

    def update(self, key: KeyOptions, now: float) -> None:
        """New limits or weight for the key of that name; its state (in flight, cooldown,
        breaker, counters, bucket levels up to the new capacities) is kept."""
        if not isinstance(key, KeyOptions):
            raise SettingError("key", key, "a KeyOptions")
        with self._lock:
            state = self._state_of(key.name)
            state.options = key
            state.requests_bucket = _resized(
                state.requests_bucket, _request_bucket(key.rpm, now), now
            )
            state.tokens_bucket = _resized(state.tokens_bucket, _tokens_bucket(key.tpm, now), now)

    def disable(self, name: str, reason: str) -> None:
        """Stop choosing a key, with a reason for reports (an auth failure does this itself)."""
        with self._lock:
            self._state_of(name).disabled = str(reason)

    def disabled_reason(self, name: str) -> str | None:
        """Why the key is disabled, or None when it is in use."""
        with self._lock:
            return self._state_of(name).disabled

    def enable(self, name: str) -> None:
        """Choose a disabled key again (its secret was replaced, say)."""
        with self._lock:
            self._state_of(name).disabled = None

    def names(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._keys

    def __repr__(self) -> str:
        return f"KeyPool(keys={self.names()!r}, strategy={self._strategy!r})"

    def _state_of(self, name: str) -> KeyState:
        state = self._keys.get(name)
        if state is None:
            raise SettingError(
                "name", name, f"the name of a key in the pool ({', '.join(self._keys) or 'none'})"
            )
        return state

    def forget_in_flight(self) -> None:
        """The leases out now will never come back (a forked child's copies of
        the parent's): no key counts them in flight any more, and their
        breakers' probe permits are free again."""
        with self._lock:
            for state in self._keys.values():
                state.in_flight = 0
                state.breaker.forget_in_flight()

    # ------------------------------------------------------------ choosing

    def choose(
        self,
        now: float,
        tokens: int,
        rng: random.Random,
        exclude: frozenset[str] = frozenset(),
        model: str | None = None,
    ) -> Lease | None:
        """Reserve a key that may take an attempt of ``tokens`` estimated tokens for
        ``model`` now, chosen by the strategy among all such keys not in ``exclude``;
        None when none may."""
        if not (type(tokens) is int and tokens >= 0):
            require_int("tokens", tokens, 0)
        with self._lock:
            candidates = self._ready(now, tokens, exclude, model)
            if not candidates:
                return None
            for state in candidates:
                state.quota_fraction = _quota_fraction(state, now)
            if len(self._keys) == 1:  # one key: nothing to choose between
                chosen = candidates[0]
            else:
                chosen = self._strategy.pick(candidates, rng)
                if not any(chosen is c for c in candidates):
                    raise LeaseError(
                        f"strategy {self._strategy!r} picked {chosen!r}, not one of the candidates"
                    )
            permit = chosen.breaker.acquire(now)
            if (
                permit is None
            ):  # pragma: no cover - ready_at saw a permit free, under this same lock
                raise RuntimeError(
                    f"the breaker of key {chosen.name!r} refused a permit it had free"
                )
            return self._grant(chosen, now, tokens, permit, model)

    def next_ready_at(
        self,
        now: float,
        tokens: int,
        exclude: frozenset[str] = frozenset(),
        model: str | None = None,
    ) -> float | None:
        """The earliest time (>= ``now``) some key not in ``exclude`` could take an attempt
        of ``tokens`` for ``model``; ``now`` if one can now.  None when waiting alone frees
        none: every key disabled, or held only by ``max_concurrent`` or half-open probes
        out (then an attempt finishing is what frees one, which the engine sees).
        ``model=None`` asks about the keys themselves, whatever pairs are cooling."""
        require_int("tokens", tokens, 0)
        with self._lock:
            times = [
                ready.at
                for state in self._keys.values()
                if state.name not in exclude
                and (ready := state.readiness(now, tokens, model)) is not None
                and not ready.busy
            ]
        return min(times) if times else None

    def next_ready(
        self,
        now: float,
        tokens: int,
        exclude: frozenset[str] = frozenset(),
        model: str | None = None,
    ) -> Readiness | None:
        """The key that could take an attempt first, when, what holds it until
        then and whether it is busy (then an attempt finishing must free it
        too, and it may be later).  A busy key goes before an idle one that
        frees no sooner.  None when every key is disabled (or excluded)."""
        require_int("tokens", tokens, 0)
        best: Readiness | None = None
        with self._lock:
            for state in self._keys.values():
                if state.name in exclude:
                    continue
                found = state.readiness(now, tokens, model)
                if found is not None and (
                    best is None or (found.at, not found.busy) < (best.at, not best.busy)
                ):
                    best = found
        return best

    def _ready(
        self, now: float, tokens: int, exclude: frozenset[str], model: str | None = None
    ) -> list[KeyState]:
        return [
            state
            for state in self._keys.values()
            if state.name not in exclude
            and (at := state.ready_at(now, tokens, model)) is not None
            and at <= now
        ]

    def _grant(
        self, state: KeyState, now: float, tokens: int, permit: int, model: str | None
    ) -> Lease:
        state.in_flight += 1
        state.counts["requests"] += 1
        if state.requests_bucket is not None:
            state.requests_bucket.take(1)
        taken = state.tokens_bucket.take(tokens) if state.tokens_bucket is not None else 0.0
        return Lease(self, state, tokens, now, permit, taken, model)

    # ------------------------------------------------------------ outcomes

    def release(self, lease: Lease, now: float, outcome: Outcome) -> None:
        """Give a lease back, once, with how its attempt ended.  A second release of the same
        lease, or a lease of another pool, raises :class:`LeaseError` and changes nothing."""
        if not isinstance(outcome, Outcome):
            raise SettingError("outcome", outcome, "an Outcome")
        with self._lock:
            if not isinstance(lease, Lease) or lease._pool is not self:
                raise LeaseError(f"{lease!r} was not granted by this pool")
            if lease._released:
                raise LeaseError(f"{lease!r} is released already: release each lease exactly once")
            lease._released = True
            state = lease._state
            state.in_flight -= 1
            state.counts[_OUTCOME_COUNTER[outcome.kind]] += 1
            self._account_usage(state, lease, outcome)
            self._feed_breaker(state, lease, now, outcome)
            if outcome.kind == OUTCOME_RATE_LIMITED:
                wait = self._rest(state, outcome.retry_after, outcome.cooldown)
                state.cool_down(
                    now + wait, now, lease.model if outcome.scope == SCOPE_MODEL else None
                )
            elif outcome.kind == OUTCOME_AUTH_FAILURE:
                state.disabled = outcome.reason or "authentication failed"

    @staticmethod
    def _account_usage(state: KeyState, lease: Lease, outcome: Outcome) -> None:
        state.counts["tokens_in"] += outcome.tokens_in or 0
        state.counts["tokens_out"] += outcome.tokens_out or 0
        usage = outcome.usage
        if usage is not None and state.tokens_bucket is not None:
            state.tokens_bucket.correct(lease._tokens_taken - usage)

    @staticmethod
    def _feed_breaker(state: KeyState, lease: Lease, now: float, outcome: Outcome) -> None:
        duration = max(0.0, now - lease.started_at)
        if outcome.kind == OUTCOME_SUCCESS:
            state.breaker.on_success(now, duration, permit=lease._permit)
        elif outcome.kind == OUTCOME_SERVER_FAILURE:
            state.breaker.on_failure(now, duration, permit=lease._permit)
        else:  # a 429 or a client error says nothing of the key's health
            state.breaker.on_ignored(now, permit=lease._permit)

    def update_hints(
        self, name: str, hints: Mapping[str, Any], now: float, model: str | None = None
    ) -> None:
        """What the provider said of a key's remaining quota (``requests_remaining``,
        ``tokens_remaining``, ``requests_reset``, ``tokens_reset`` in seconds, and
        optionally ``requests_limit``, ``tokens_limit``) in its answer to a request for
        ``model``.  Unusable values are ignored; so is a name no longer in the pool (an
        answer arriving after a remove).  A limit at 0 remaining cools the (key, model)
        pair (the whole key when ``model`` is None) until its reset
        (``default_cooldown`` without one)."""
        with self._lock:
            state = self._keys.get(name)
            if state is None or not hints:
                return
            for kind in _HINT_KINDS:
                remaining = _hint_number(hints.get(f"{kind}_remaining"))
                reset = _hint_number(hints.get(f"{kind}_reset"))
                state.hints[kind].update(
                    remaining, reset, _hint_number(hints.get(f"{kind}_limit")), now
                )
                if remaining is not None and remaining < 1:
                    state.cool_down(now + self._rest(state, reset, None), now, model)

    # ------------------------------------------------------------ reports

    def snapshot(self, now: float) -> dict:
        """Per key, by name: figures for reports.  Names and numbers only, never a secret.
        ``cooling_until`` is in seconds from ``now`` (0.0 when not cooling down)."""
        with self._lock:
            return {name: _key_snapshot(state, now) for name, state in self._keys.items()}


def _quota_fraction(state: KeyState, now: float) -> float:
    return min(hint.fraction(now) for hint in state.hints.values())


def _key_snapshot(state: KeyState, now: float) -> dict:
    opts = state.options
    report = dict(state.counts)
    report.update(
        in_flight=state.in_flight,
        max_concurrent=opts.max_concurrent,
        rpm=opts.rpm,
        tpm=opts.tpm,
        weight=opts.weight,
        cooling_until=max(0.0, state.cooldown_until - now),
        cooling_models={
            model: until - now
            for model, until in sorted(state.model_cooldowns.items())
            if until > now
        },
        longest_retry_after_asked=state.longest_asked,
        disabled=state.disabled,
        breaker=state.breaker.state(now),
        requests_available=_available(state.requests_bucket, now),
        tokens_available=_available(state.tokens_bucket, now),
        quota_fraction=_quota_fraction(state, now),
        hints=_hints_report(state, now),
    )
    return report


def _available(bucket: _TokenBucket | None, now: float) -> float | None:
    if bucket is None:
        return None
    bucket.refill(now)
    return bucket.level


def _hints_report(state: KeyState, now: float) -> dict:
    report = {}
    for kind, hint in state.hints.items():
        remaining = hint.current(now)
        report[f"{kind}_remaining"] = remaining
        report[f"{kind}_reset"] = (
            None if remaining is None or hint.reset_at is None else hint.reset_at - now
        )
    return report
