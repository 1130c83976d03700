"""Strategies: which of the keys that may go now takes the attempt.

:class:`RoundRobin`, :class:`LeastLoaded`, :class:`Weighted` (:func:`strategy_by_name`).  A
strategy is any object with ``pick(candidates, rng) -> KeyState``; it runs under the pool's
lock, so it is a pure choice and must not call the pool.
"""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING, Protocol

from ..errors import SettingError

if TYPE_CHECKING:
    from .state import KeyState


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
