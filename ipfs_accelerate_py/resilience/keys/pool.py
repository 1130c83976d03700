"""The pool: which of a backend's keys takes the next attempt, and the leases it grants.

:meth:`KeyPool.choose` reserves a key that may go now (chosen by the strategy) and returns a
:class:`Lease`; :meth:`KeyPool.next_ready_at` and :meth:`KeyPool.next_ready` say when one
could.  The engine gives every lease back exactly once with its :class:`Outcome`
(:meth:`KeyPool.release`), which feeds the key's counters, token bucket, breaker and cooldowns.

Threads: every pool method takes one ``threading.Lock``.  A strategy's ``pick`` runs under
it.  The per-key breakers have no listeners, so no user callback runs under the lock.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Mapping
from typing import Any

from ..breaker import BreakerOptions
from ..errors import SettingError
from ..validation import require_int, require_number
from .cooldowns import rest_for
from .options import (
    DEFAULT_COOLDOWN,
    DEFAULT_MAX_COOLDOWN,
    OUTCOME_AUTH_FAILURE,
    OUTCOME_RATE_LIMITED,
    OUTCOME_SERVER_FAILURE,
    OUTCOME_SUCCESS,
    SCOPE_MODEL,
    KeyOptions,
    Outcome,
)
from .state import _OUTCOME_COUNTER, KeyState, Readiness, _key_snapshot, _quota_fraction
from .strategies import Strategy, _as_strategy
from .windows import _HINT_KINDS, _hint_number


class LeaseError(RuntimeError):
    """A lease released twice, or given to a pool that did not grant it: a bug in the caller."""


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
        self.name = state.options.name
        self.model = model  # the scope a 429 on this attempt cools, with the key
        self.tokens = tokens
        self.started_at = now
        self._pool = pool
        self._state = state
        self._permit = permit
        self._tokens_taken = taken
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, tokens={self.tokens}, {'released' if self._released else 'out'})"


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
        self._only: KeyState | None = None  # the key when there is exactly one (the hot path)
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
        wait, refused = rest_for(asked, fallback, self._max_cooldown, self._default_cooldown)
        if refused:
            assert asked is not None  # refused only what was asked
            state.over_cap(asked)
        return wait

    # ------------------------------------------------------------ keys

    def add(self, key: KeyOptions, now: float = 0.0) -> None:
        """Add a key, ready at once (full buckets, closed breaker).  A name in use is refused."""
        if not isinstance(key, KeyOptions):
            raise SettingError("key", key, "a KeyOptions")
        with self._lock:
            if key.name in self._keys:
                raise SettingError("name", key.name, "a key name not already in the pool")
            self._keys[key.name] = KeyState(key, next(self._seq), self._breaker_options, now)
            self._count_changed()

    def remove(self, name: str) -> None:
        """Take a key out: it is chosen no more.  Its leases still out are released as usual
        (onto the removed key); a key added later under the same name starts afresh."""
        with self._lock:
            self._state_of(name)
            del self._keys[name]
            self._count_changed()

    def _count_changed(self) -> None:
        """(under the lock) ``_only`` again, after a key came or went."""
        keys = self._keys
        self._only = next(iter(keys.values())) if len(keys) == 1 else None

    def update(self, key: KeyOptions, now: float) -> None:
        """New limits or weight for the key of that name; its state (in flight, cooldown,
        breaker, counters, bucket levels up to the new capacities) is kept."""
        if not isinstance(key, KeyOptions):
            raise SettingError("key", key, "a KeyOptions")
        with self._lock:
            self._state_of(key.name).reconfigure(key, now)

    def disable(self, name: str, reason: str) -> None:
        """Stop choosing a key, with a reason for reports (an auth failure does this itself)."""
        with self._lock:
            self._state_of(name).set_disabled(str(reason))

    def disabled_reason(self, name: str) -> str | None:
        """Why the key is disabled, or None when it is in use."""
        with self._lock:
            return self._state_of(name).disabled

    def enable(self, name: str) -> None:
        """Choose a disabled key again (its secret was replaced, say)."""
        with self._lock:
            self._state_of(name).set_disabled(None)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)  # one read of a dict's size: no lock needed

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
                state.forgotten += state.in_flight
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
            chosen = self._only
            if chosen is not None and not exclude:  # one key: nothing to choose between
                if now >= chosen.calm_from:
                    # nothing of its own holds it (no limit, no rest, not disabled):
                    # its breaker decides, in the permit it gives or not
                    permit = chosen.breaker.acquire(now)
                    if permit is None:
                        return None
                    return self._grant(chosen, now, tokens, permit, model)
                at = chosen.ready_at(now, tokens, model)
                if at is None or at > now:
                    return None
            else:
                found = self._pick(now, tokens, rng, exclude, model)
                if found is None:
                    return None
                chosen = found
            permit = chosen.breaker.acquire(now)
            if (
                permit is None
            ):  # pragma: no cover - ready_at saw a permit free, under this same lock
                raise RuntimeError(
                    f"the breaker of key {chosen.name!r} refused a permit it had free"
                )
            return self._grant(chosen, now, tokens, permit, model)

    def _pick(
        self,
        now: float,
        tokens: int,
        rng: random.Random,
        exclude: frozenset[str],
        model: str | None,
    ) -> KeyState | None:
        """(under the lock) The strategy's choice among the keys ready now, if any is."""
        candidates = self._ready(now, tokens, exclude, model)
        if not candidates:
            return None
        if len(self._keys) == 1:  # one key, another name excluded: still nothing to weigh
            return candidates[0]
        for state in candidates:  # what the strategy weighs them by
            state.quota_fraction = _quota_fraction(state, now)
        chosen = self._strategy.pick(candidates, rng)
        if not any(chosen is c for c in candidates):
            raise LeaseError(
                f"strategy {self._strategy!r} picked {chosen!r}, not one of the candidates"
            )
        return chosen

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
        state.requests += 1
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
            self._check_out(lease)
            lease._released = True
            state = lease._state
            state.in_flight -= 1
            kind = outcome.kind
            if kind != OUTCOME_SUCCESS:  # successes are what is left (see KeyState)
                state.counts[_OUTCOME_COUNTER[kind]] += 1
            usage = outcome.usage
            if usage is not None:
                self._account_usage(state, lease, outcome.tokens_in or 0, outcome.tokens_out or 0)
            breaker = state.breaker
            if kind == OUTCOME_SUCCESS:
                breaker.on_success(now, max(0.0, now - lease.started_at), permit=lease._permit)
            elif kind == OUTCOME_SERVER_FAILURE:
                breaker.on_failure(now, max(0.0, now - lease.started_at), permit=lease._permit)
            else:  # a 429 or a client error says nothing of the key's health
                breaker.on_ignored(now, permit=lease._permit)
                if kind == OUTCOME_RATE_LIMITED:
                    wait = self._rest(state, outcome.retry_after, outcome.cooldown)
                    state.cool_down(
                        now + wait, now, lease.model if outcome.scope == SCOPE_MODEL else None
                    )
                elif kind == OUTCOME_AUTH_FAILURE:
                    state.set_disabled(outcome.reason or "authentication failed")

    def release_success(
        self, lease: Lease, now: float, tokens_in: int = 0, tokens_out: int = 0
    ) -> None:
        """``release(lease, now, Outcome.success(tokens_in, tokens_out))`` without building
        the outcome (the engine's hot path), except that ``0, 0`` stands for no usage
        reported (``Outcome.success()``): the reservation then stands.  The same refusals."""
        with self._lock:
            if not isinstance(lease, Lease) or lease._pool is not self or lease._released:
                self._check_out(lease)  # raises
            state = lease._state
            if tokens_in or tokens_out:  # the usage reported
                if tokens_in < 0 or tokens_out < 0:
                    raise SettingError("usage", (tokens_in, tokens_out), "two counts >= 0")
                self._account_usage(state, lease, tokens_in, tokens_out)
            lease._released = True
            state.in_flight -= 1
            state.breaker.on_success(now, max(0.0, now - lease.started_at), permit=lease._permit)

    def _check_out(self, lease: Lease) -> None:
        """(under the lock) Refuse a lease this pool did not grant, or one given back already."""
        if not isinstance(lease, Lease) or lease._pool is not self:
            raise LeaseError(f"{lease!r} was not granted by this pool")
        if lease._released:
            raise LeaseError(f"{lease!r} is released already: release each lease exactly once")

    @staticmethod
    def _account_usage(state: KeyState, lease: Lease, tokens_in: int, tokens_out: int) -> None:
        state.tokens_in += tokens_in
        state.tokens_out += tokens_out
        if state.tokens_bucket is not None:
            state.tokens_bucket.correct(lease._tokens_taken - (tokens_in + tokens_out))

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

    def snapshot(self, now: float) -> dict[str, dict[str, Any]]:
        """Per key, by name: figures for reports.  Names and numbers only, never a secret.
        ``cooling_until`` is in seconds from ``now`` (0.0 when not cooling down)."""
        with self._lock:
            return {name: _key_snapshot(state, now) for name, state in self._keys.items()}
