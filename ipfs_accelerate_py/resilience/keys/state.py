"""One key's state inside a pool: is it ready, when, and what holds it.

A key may take an attempt of ``tokens`` estimated tokens for ``model`` at ``now`` when it is
not disabled, not cooling down (for that model or as a whole), its own circuit breaker gives a
permit, fewer than ``max_concurrent`` attempts are in flight on it and its request and token
buckets have room.  :meth:`KeyState.ready_at` answers "when" (the hot path);
:meth:`KeyState.readiness` answers the same with the ``REASON_*`` holding it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..breaker import STATE_HALF_OPEN, STATE_OPEN, BreakerOptions, CircuitBreaker
from .cooldowns import _STARTED, Cooldowns
from .options import (
    OUTCOME_AUTH_FAILURE,
    OUTCOME_IGNORED,
    OUTCOME_RATE_LIMITED,
    OUTCOME_SERVER_FAILURE,
    OUTCOME_SUCCESS,
    KeyOptions,
)
from .windows import (
    _HINT_KINDS,
    _available,
    _QuotaHint,
    _request_bucket,
    _resized,
    _tokens_bucket,
)

_INF = float("inf")

REASON_COOLING = "cooling"  # a 429 (or a hint of 0 remaining) for this request's model on this key
REASON_KEY_COOLING = "key cooling"  # the same for the whole key
REASON_RPM = "rpm"  # the key's own requests-per-minute budget
REASON_TPM = "tpm"  # the key's own tokens-per-minute budget
REASON_BREAKER = "breaker"  # the key's own circuit is OPEN


class Readiness(NamedTuple):
    """When a key could take a request, which key, what holds it until then (a
    ``REASON_*``; None when nothing does) and whether it is busy besides (only
    an attempt finishing frees it)."""

    at: float
    key: str
    reason: str | None
    busy: bool = False


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
# The counters kept in KeyState.counts; requests and tokens are attributes of their own, and
# successes are what is left of the requests (see KeyState).
_COUNTED = tuple(
    c for c in _COUNTERS if c not in ("requests", "successes", "tokens_in", "tokens_out")
)
_UNSUCCESSFUL = tuple(c for c in _OUTCOME_COUNTER.values() if c != "successes")


class KeyState:
    """One key inside a pool.  Strategies read ``name``, ``options``, ``in_flight``,
    ``weight``, ``quota_fraction`` (the share of its provider quota left, in
    (0, 1], 1.0 without hints) and ``seq`` (its place in the pool's order);
    only the pool writes (``options``, ``disabled`` and the rests through
    :meth:`reconfigure`, :meth:`set_disabled` and :meth:`cool_down`, which keep
    ``calm_from`` true).

    ``calm_from``: from when only the key's breaker may hold it: it has no
    ``max_concurrent``, ``rpm`` or ``tpm`` of its own, is not disabled and
    every rest it began has ended by then (``inf`` while it has limits or is
    disabled).  The hot path checks that one figure instead of each limit.

    The counters of the snapshot: ``requests``, ``tokens_in`` and
    ``tokens_out`` are attributes, the rarer ones are in ``counts``, and
    ``successes`` are not counted but follow, since every lease granted
    (``requests``) is in flight, forgotten (``forgotten``: see
    :meth:`KeyPool.forget_in_flight`) or given back with one outcome."""

    __slots__ = (
        "options",
        "seq",
        "in_flight",
        "cooldowns",
        "disabled",
        "breaker",
        "requests_bucket",
        "tokens_bucket",
        "hints",
        "quota_fraction",
        "counts",
        "requests",
        "tokens_in",
        "tokens_out",
        "forgotten",
        "longest_asked",
        "calm_from",
    )

    def __init__(
        self, options: KeyOptions, seq: int, breaker_options: BreakerOptions, now: float
    ) -> None:
        self.options = options
        self.seq = seq
        self.in_flight = 0
        self.cooldowns = Cooldowns()
        self.disabled: str | None = None
        self.breaker = CircuitBreaker(breaker_options)
        self.requests_bucket = _request_bucket(options.rpm, now)
        self.tokens_bucket = _tokens_bucket(options.tpm, now)
        self.hints = {kind: _QuotaHint() for kind in _HINT_KINDS}
        self.quota_fraction = 1.0
        self.counts = dict.fromkeys(_COUNTED, 0)
        self.requests = self.tokens_in = self.tokens_out = self.forgotten = 0
        self.longest_asked: float | None = None  # the longest rest asked for over the cap
        self._settle()

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def weight(self) -> float:
        return self.options.weight

    @property
    def cooldown_until(self) -> float:
        """When the whole key's rest ends (``-inf`` when it never rested)."""
        return self.cooldowns.key_until

    @property
    def model_cooldowns(self) -> dict[str, float]:
        """The (this key, model) pairs cooling, until when (read only: see :meth:`cool_down`)."""
        return self.cooldowns.models

    def __repr__(self) -> str:
        return f"KeyState(name={self.name!r}, in_flight={self.in_flight}, disabled={self.disabled is not None})"

    def _settle(self) -> None:
        """``calm_from`` again, after the limits, ``disabled`` or the rests changed."""
        calm = (
            self.disabled is None
            and self.options.max_concurrent is None
            and self.requests_bucket is None
            and self.tokens_bucket is None
        )
        self.calm_from = self.cooldowns.latest if calm else _INF

    def reconfigure(self, options: KeyOptions, now: float) -> None:
        """New limits or weight; the buckets keep their levels up to the new capacities."""
        self.options = options
        self.requests_bucket = _resized(
            self.requests_bucket, _request_bucket(options.rpm, now), now
        )
        self.tokens_bucket = _resized(self.tokens_bucket, _tokens_bucket(options.tpm, now), now)
        self._settle()

    def set_disabled(self, reason: str | None) -> None:
        """Disabled for ``reason``; None: in use again."""
        self.disabled = reason
        self._settle()

    def ready_at(self, now: float, tokens: int, model: str | None = None) -> float | None:
        """When this key could take an attempt of ``tokens`` for ``model``: ``now`` if now;
        None if never by waiting alone (disabled, or only an attempt finishing frees it).
        ``model=None``: the key itself, whatever (key, model) pairs are cooling.
        (:meth:`readiness` says the same with what holds it; this is the hot path.)"""
        if now >= self.calm_from:  # nothing of its own holds it: its breaker decides
            return self._breaker_ready_at(now)
        if self.disabled is not None:
            return None
        cap = self.options.max_concurrent
        if cap is not None and self.in_flight >= cap:
            return None
        at = self._breaker_ready_at(now)
        if at is None:
            return None
        cooldowns = self.cooldowns
        at = max(at, cooldowns.key_until)
        if model is not None and cooldowns.models:
            at = max(at, cooldowns.models.get(model, -_INF))
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
            (self.cooldowns.key_until, REASON_KEY_COOLING),
            (self.cooldowns.model_until(model), REASON_COOLING),
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
            opened_at: float = snap["opened_at"]
            reset_timeout: float = snap["reset_timeout"]
            return opened_at + reset_timeout  # the breaker's own test, exact in floats
        if state == STATE_HALF_OPEN:
            snap = self.breaker.snapshot(now)
            return now if snap["half_open_in_flight"] < snap["half_open_max_requests"] else None
        return now

    def cool_down(self, until: float, now: float, model: str | None = None) -> bool:
        """Rest until ``until``: the whole key, or only for ``model``.  A rest only
        lengthens, and one ending by ``now`` is none.  True if this started or
        lengthened a rest (``cooldowns`` counts the rests started)."""
        change = self.cooldowns.cool(until, now, model)
        self.counts["cooldowns"] += change == _STARTED
        if change is None:
            return False
        self._settle()
        return True

    def over_cap(self, asked: float) -> None:
        """Note a rest the server asked for that was not believed for being longer than the cap."""
        self.counts["retry_after_over_cap"] += 1
        self.longest_asked = asked if self.longest_asked is None else max(self.longest_asked, asked)


def _quota_fraction(state: KeyState, now: float) -> float:
    return min(hint.fraction(now) for hint in state.hints.values())


def _key_snapshot(state: KeyState, now: float) -> dict[str, Any]:
    opts = state.options
    cooling_until, cooling_models = state.cooldowns.report(now)
    report: dict[str, Any] = _tallies(state)
    report.update(
        in_flight=state.in_flight,
        max_concurrent=opts.max_concurrent,
        rpm=opts.rpm,
        tpm=opts.tpm,
        weight=opts.weight,
        cooling_until=cooling_until,
        cooling_models=cooling_models,
        longest_retry_after_asked=state.longest_asked,
        disabled=state.disabled,
        breaker=state.breaker.state(now),
        requests_available=_available(state.requests_bucket, now),
        tokens_available=_available(state.tokens_bucket, now),
        quota_fraction=_quota_fraction(state, now),
        hints=_hints_report(state, now),
    )
    return report


def _tallies(state: KeyState) -> dict[str, int]:
    """Every counter, in the order of ``_COUNTERS``."""
    counts = state.counts
    found = dict(
        counts,
        requests=state.requests,
        successes=state.requests
        - state.in_flight
        - state.forgotten
        - sum(counts[c] for c in _UNSUCCESSFUL),
        tokens_in=state.tokens_in,
        tokens_out=state.tokens_out,
    )
    return {c: found[c] for c in _COUNTERS}


def _hints_report(state: KeyState, now: float) -> dict[str, float | None]:
    report: dict[str, float | None] = {}
    for kind, hint in state.hints.items():
        remaining = hint.current(now)
        report[f"{kind}_remaining"] = remaining
        report[f"{kind}_reset"] = (
            None if remaining is None or hint.reset_at is None else hint.reset_at - now
        )
    return report
