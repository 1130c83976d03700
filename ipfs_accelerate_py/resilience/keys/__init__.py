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

The package is split by idea, and every name is importable from here:

* :mod:`.options`: :class:`KeyOptions`, :class:`Outcome`, the ``DEFAULT_*``, ``OUTCOME_*``
  and ``SCOPE_*`` constants;
* :mod:`.windows`: the rpm/tpm token buckets and the provider's quota hints;
* :mod:`.cooldowns`: rests after a rate limit, their scope and how long (Retry-After);
* :mod:`.state`: one key's readiness (``REASON_*``, :class:`Readiness`, :class:`KeyState`);
* :mod:`.strategies`: the choice among ready keys;
* :mod:`.pool`: :class:`KeyPool`, its :class:`Lease` and :class:`LeaseError`.
"""

from __future__ import annotations

from .cooldowns import _INF as _INF
from .cooldowns import Cooldowns, rest_for
from .options import (
    DEFAULT_COOLDOWN,
    DEFAULT_MAX_COOLDOWN,
    DEFAULT_WEIGHT,
    OUTCOME_AUTH_FAILURE,
    OUTCOME_IGNORED,
    OUTCOME_RATE_LIMITED,
    OUTCOME_SERVER_FAILURE,
    OUTCOME_SUCCESS,
    OUTCOMES,
    SCOPE_KEY,
    SCOPE_MODEL,
    SCOPES,
    KeyOptions,
    Outcome,
)
from .options import _count_or_none as _count_or_none
from .pool import KeyPool, Lease, LeaseError
from .state import _COUNTERS as _COUNTERS
from .state import _OUTCOME_COUNTER as _OUTCOME_COUNTER
from .state import (
    REASON_BREAKER,
    REASON_COOLING,
    REASON_KEY_COOLING,
    REASON_RPM,
    REASON_TPM,
    KeyState,
    Readiness,
)
from .state import _hints_report as _hints_report
from .state import _key_snapshot as _key_snapshot
from .state import _quota_fraction as _quota_fraction
from .strategies import _STRATEGIES as _STRATEGIES
from .strategies import (
    STRATEGY_NAMES,
    LeastLoaded,
    RoundRobin,
    Strategy,
    Weighted,
    strategy_by_name,
)
from .strategies import _as_strategy as _as_strategy
from .strategies import _load as _load
from .windows import _HINT_KINDS as _HINT_KINDS
from .windows import _SLACK as _SLACK
from .windows import MIN_QUOTA_FRACTION, SECONDS_PER_MINUTE
from .windows import _available as _available
from .windows import _hint_number as _hint_number
from .windows import _QuotaHint as _QuotaHint
from .windows import _request_bucket as _request_bucket
from .windows import _resized as _resized
from .windows import _TokenBucket as _TokenBucket
from .windows import _tokens_bucket as _tokens_bucket

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_MAX_COOLDOWN",
    "DEFAULT_WEIGHT",
    "Cooldowns",
    "KeyOptions",
    "KeyPool",
    "KeyState",
    "Lease",
    "LeaseError",
    "LeastLoaded",
    "MIN_QUOTA_FRACTION",
    "OUTCOMES",
    "OUTCOME_AUTH_FAILURE",
    "OUTCOME_IGNORED",
    "OUTCOME_RATE_LIMITED",
    "OUTCOME_SERVER_FAILURE",
    "OUTCOME_SUCCESS",
    "Outcome",
    "REASON_BREAKER",
    "REASON_COOLING",
    "REASON_KEY_COOLING",
    "REASON_RPM",
    "REASON_TPM",
    "Readiness",
    "SCOPES",
    "SCOPE_KEY",
    "SCOPE_MODEL",
    "SECONDS_PER_MINUTE",
    "RoundRobin",
    "STRATEGY_NAMES",
    "Strategy",
    "Weighted",
    "rest_for",
    "strategy_by_name",
]
