"""Strategies on their own, over hand-made key states: the rotation, the two-choice load
rule, weights, and how a strategy is named or refused."""

from __future__ import annotations

import random

import pytest

from ipfs_accelerate_py.resilience.breaker import BreakerOptions
from ipfs_accelerate_py.resilience.errors import SettingError
from ipfs_accelerate_py.resilience.keys import (
    STRATEGY_NAMES,
    KeyOptions,
    KeyState,
    LeastLoaded,
    RoundRobin,
    Weighted,
    _as_strategy,
    _load,
    strategy_by_name,
)


def states(*names: str, weights: dict[str, float] | None = None) -> list[KeyState]:
    weights = weights or {}
    return [
        KeyState(KeyOptions(n, weight=weights.get(n, 1.0)), seq, BreakerOptions(), 0.0)
        for seq, n in enumerate(names)
    ]


def test_round_robin_takes_the_next_in_order_and_wraps():
    a, b, c = states("a", "b", "c")
    rr, rng = RoundRobin(), random.Random(0)
    assert [rr.pick([a, b, c], rng).name for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.pick([a, c], rng).name == "c"  # b cannot go: skipped, its turn kept
    assert rr.pick([a, b, c], rng).name == "a"  # after c, wrapping around
    assert rr.pick([b], rng).name == "b"


def test_least_loaded_with_one_candidate_draws_nothing():
    (a,) = states("a")
    rng = random.Random(1)
    before = rng.getstate()
    assert LeastLoaded().pick([a], rng) is a
    assert rng.getstate() == before


def test_least_loaded_takes_the_less_loaded_of_two_and_the_first_drawn_on_a_tie():
    a, b = states("a", "b")
    a.in_flight = 3
    rng = random.Random(2)
    assert all(LeastLoaded().pick([a, b], rng) is b for _ in range(20))
    b.in_flight = 3
    first_drawn = [random.Random(seed).sample([a, b], 2)[0] for seed in range(20)]
    picked = [LeastLoaded().pick([a, b], random.Random(seed)) for seed in range(20)]
    assert picked == first_drawn


def test_load_grows_as_in_flight_grows_and_as_the_quota_runs_low():
    (a,) = states("a")
    assert _load(a) == 1.0
    a.in_flight = 2
    assert _load(a) == 3.0
    a.quota_fraction = 0.5
    assert _load(a) == 6.0


def test_weighted_follows_the_weights():
    a, b = states("a", "b", weights={"a": 1.0, "b": 3.0})
    rng = random.Random(4)
    picks = [Weighted().pick([a, b], rng).name for _ in range(4000)]
    assert picks.count("b") / 4000 == pytest.approx(0.75, abs=0.03)


def test_strategies_by_name():
    assert STRATEGY_NAMES == ("least-loaded", "round-robin", "weighted")
    for name, cls in zip(STRATEGY_NAMES, (LeastLoaded, RoundRobin, Weighted), strict=True):
        made = strategy_by_name(name)
        assert type(made) is cls and made.name == name
    assert strategy_by_name("round-robin") is not strategy_by_name("round-robin")


@pytest.mark.parametrize("bad", ["fastest", 3, None])
def test_an_unknown_strategy_is_refused_naming_the_choices(bad):
    with pytest.raises(
        SettingError, match="one of 'least-loaded', 'round-robin', 'weighted'"
    ) as info:
        strategy_by_name(bad)
    assert info.value.setting == "strategy"


def test_a_strategy_object_is_taken_as_it_is_and_anything_else_refused():
    mine = RoundRobin()
    assert _as_strategy(mine) is mine
    assert type(_as_strategy("weighted")) is Weighted
    with pytest.raises(SettingError, match="a strategy object with pick\\(candidates, rng\\)"):
        _as_strategy(object())  # type: ignore[arg-type]
