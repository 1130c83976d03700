"""Key pool: sequences of choose/release on a fake clock and a seeded RNG, then the state."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import fields

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ipfs_accelerate_py.resilience.breaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    BreakerOptions,
)
from ipfs_accelerate_py.resilience.clock import FakeClock
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    CancelledRequestError,
    InvalidRequestError,
    NetworkError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SettingError,
)
from ipfs_accelerate_py.resilience.keys import (
    DEFAULT_COOLDOWN,
    STRATEGY_NAMES,
    KeyOptions,
    KeyPool,
    LeaseError,
    LeastLoaded,
    Outcome,
    RoundRobin,
    Weighted,
    strategy_by_name,
)

SUCCESS = Outcome.success()


def make(*keys, strategy="round-robin", **kwargs) -> tuple[KeyPool, FakeClock, random.Random]:
    """A pool of ``keys`` (names or KeyOptions), a fake clock and a seeded RNG."""
    clock = FakeClock()
    options = [KeyOptions(k) if isinstance(k, str) else k for k in keys]
    return KeyPool(options, strategy, now=clock.now(), **kwargs), clock, random.Random(7)


def picks(pool: KeyPool, clock: FakeClock, rng: random.Random, n: int, **kwargs) -> list[str]:
    """Names of ``n`` keys chosen one after another, each released at once with success."""
    names = []
    for _ in range(n):
        lease = pool.choose(clock.now(), 0, rng, **kwargs)
        names.append(lease.name)
        pool.release(lease, clock.now(), SUCCESS)
    return names


def take_all(pool: KeyPool, clock: FakeClock, rng: random.Random, tokens: int = 0) -> list:
    """Choose until the pool says no; the leases, unreleased."""
    leases = []
    while (lease := pool.choose(clock.now(), tokens, rng)) is not None:
        leases.append(lease)
        assert len(leases) < 10_000
    return leases


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", None),
        ("name", 3),
        ("max_concurrent", 0),
        ("max_concurrent", 1.5),
        ("max_concurrent", True),
        ("rpm", 0),
        ("rpm", -1.0),
        ("rpm", float("nan")),
        ("rpm", "60"),
        ("tpm", 0.0),
        ("tpm", float("inf")),
        ("weight", 0),
        ("weight", -2.0),
        ("weight", None),
    ],
)
def test_key_options_are_validated_naming_the_field(field, value):
    kwargs = {"name": "k1", field: value}
    with pytest.raises(SettingError) as info:
        KeyOptions(**kwargs)
    assert info.value.setting == field
    assert field in str(info.value)


def test_key_options_defaults_and_fields_hold_no_secret():
    key = KeyOptions("primary")
    assert (key.max_concurrent, key.rpm, key.tpm, key.weight) == (None, None, None, 1.0)
    assert [f.name for f in fields(KeyOptions)] == [
        "name",
        "max_concurrent",
        "rpm",
        "tpm",
        "weight",
    ]
    with pytest.raises(AttributeError):
        key.rpm = 5  # frozen


@pytest.mark.parametrize(
    "build, setting",
    [
        (lambda: Outcome("exploded"), "kind"),
        (lambda: Outcome.success(tokens_in=-1), "tokens_in"),
        (lambda: Outcome.ignored(tokens_out=2.5), "tokens_out"),
        (lambda: Outcome.rate_limited(retry_after=-1.0), "retry_after"),
        (lambda: KeyPool([], "round-robin", default_cooldown=-1), "default_cooldown"),
        (
            lambda: KeyPool([], "round-robin", breaker_options={"failure_threshold": 1}),
            "breaker_options",
        ),
        (lambda: KeyPool([], object()), "strategy"),
        (lambda: KeyPool([KeyOptions("a"), KeyOptions("a")], "weighted"), "name"),
        (lambda: KeyPool(["a"], "weighted"), "key"),
        (lambda: KeyPool([], "weighted").remove("nope"), "name"),
        (lambda: KeyPool([], "weighted").choose(0.0, -1, random.Random()), "tokens"),
        (lambda: KeyPool([], "weighted").next_ready_at(0.0, 1.5), "tokens"),
        (lambda: strategy_by_name("least-busy"), "strategy"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(build, setting):
    with pytest.raises(SettingError) as info:
        build()
    assert info.value.setting == setting


def test_strategy_by_name_knows_three_and_says_which():
    assert STRATEGY_NAMES == ("least-loaded", "round-robin", "weighted")
    assert [type(strategy_by_name(n)) for n in STRATEGY_NAMES] == [
        LeastLoaded,
        RoundRobin,
        Weighted,
    ]
    assert strategy_by_name("round-robin") is not strategy_by_name(
        "round-robin"
    )  # each pool its own rotation
    with pytest.raises(SettingError, match="'least-loaded', 'round-robin', 'weighted'"):
        strategy_by_name("random")


@pytest.mark.parametrize(
    "error, kind, extra",
    [
        (
            RateLimitError("slow down", status=429, retry_after=3.0),
            "rate_limited",
            {"retry_after": 3.0},
        ),
        (RateLimitError("slow down", status=429), "rate_limited", {"retry_after": None}),
        (
            AuthenticationError("Incorrect API key provided: sk-abc123", status=401),
            "auth_failure",
            {"reason": "AuthenticationError (HTTP 401)"},
        ),
        (
            PermissionDeniedError("no", status=403),
            "auth_failure",
            {"reason": "PermissionDeniedError (HTTP 403)"},
        ),
        (ServerError("boom", status=503), "server_failure", {}),
        (NetworkError("reset"), "server_failure", {}),
        (InvalidRequestError("bad", status=400), "ignored", {}),
        (CancelledRequestError("gone"), "ignored", {}),
    ],
)
def test_outcome_from_error(error, kind, extra):
    outcome = Outcome.from_error(error)
    assert outcome.kind == kind
    for name, value in extra.items():
        assert getattr(outcome, name) == value


def test_outcome_usage_sums_what_was_reported():
    assert Outcome.success().usage is None
    assert Outcome.success(tokens_in=30).usage == 30
    assert Outcome.success(30, 12).usage == 42


# ---------------------------------------------------------------- strategies


def test_round_robin_rotates_exactly():
    pool, clock, rng = make("a", "b", "c")
    assert picks(pool, clock, rng, 9) == list("abcabcabc")


def test_round_robin_stays_fair_as_candidates_change():
    pool, clock, rng = make("a", "b", "c")
    assert picks(pool, clock, rng, 1) == ["a"]
    assert picks(pool, clock, rng, 1, exclude=frozenset({"b"})) == [
        "c"
    ]  # b skipped, keeps its place
    assert picks(pool, clock, rng, 3) == ["a", "b", "c"]
    pool.remove("b")
    pool.add(KeyOptions("d"))
    assert picks(pool, clock, rng, 4) == ["d", "a", "c", "d"]  # d joins after c


def test_round_robin_skips_a_busy_key_without_losing_the_rotation():
    pool, clock, rng = make(KeyOptions("a", max_concurrent=1), "b", "c")
    held = pool.choose(clock.now(), 0, rng)
    assert held.name == "a"
    assert picks(pool, clock, rng, 4) == ["b", "c", "b", "c"]
    pool.release(held, clock.now(), SUCCESS)
    assert picks(pool, clock, rng, 3) == ["a", "b", "c"]


def test_weighted_picks_in_proportion_to_weight():
    weights = {"a": 1.0, "b": 2.0, "c": 7.0}
    pool, clock, rng = make(
        *(KeyOptions(n, weight=w) for n, w in weights.items()), strategy="weighted"
    )
    counts = Counter(picks(pool, clock, rng, 10_000))
    for name, weight in weights.items():
        assert counts[name] / 10_000 == pytest.approx(weight / 10.0, abs=0.015)


def test_least_loaded_takes_the_idle_key_of_two():
    pool, clock, rng = make("a", "b", strategy="least-loaded")
    held = [pool.choose(clock.now(), 0, rng, exclude=frozenset({"b"})) for _ in range(3)]
    assert {lease.name for lease in held} == {"a"}
    assert set(picks(pool, clock, rng, 200)) == {"b"}  # both always sampled: never the busier


def test_least_loaded_never_picks_the_busier_of_the_two_sampled():
    pool, clock, rng = make("idle", "one", "two", strategy="least-loaded")
    held = [pool.choose(clock.now(), 0, rng, exclude=frozenset({"idle", "two"}))]
    held += [pool.choose(clock.now(), 0, rng, exclude=frozenset({"idle", "one"})) for _ in range(2)]
    counts = Counter(picks(pool, clock, rng, 3_000))
    assert counts["two"] == 0  # the busiest loses every pair it is in
    # idle wins both pairs it is in (2 of 3 pairs), one wins the pair (one, two)
    assert counts["idle"] / 3_000 == pytest.approx(2 / 3, abs=0.03)
    assert counts["one"] / 3_000 == pytest.approx(1 / 3, abs=0.03)


def test_least_loaded_breaks_ties_at_random():
    pool, clock, rng = make("a", "b", strategy="least-loaded")
    counts = Counter(picks(pool, clock, rng, 4_000))
    assert counts["a"] / 4_000 == pytest.approx(0.5, abs=0.03)


def test_least_loaded_weighs_keys_by_remaining_quota():
    pool, clock, rng = make("low", "high", strategy="least-loaded")
    pool.update_hints(
        "low",
        {"requests_remaining": 10, "requests_limit": 100, "requests_reset": 30.0},
        clock.now(),
    )
    pool.update_hints(
        "high",
        {"requests_remaining": 90, "requests_limit": 100, "requests_reset": 30.0},
        clock.now(),
    )
    held = pool.choose(
        clock.now(), 0, rng, exclude=frozenset({"low"})
    )  # high: 1 in flight, 90% left
    assert set(picks(pool, clock, rng, 100)) == {"high"}  # 2 / 0.9 < 1 / 0.1
    pool.release(held, clock.now(), SUCCESS)
    clock.advance(30.0)  # both hints reset: quota presumed back, loads equal again
    assert set(picks(pool, clock, rng, 100)) == {"low", "high"}


def test_quota_limit_is_estimated_from_the_most_seen_remaining():
    pool, clock, rng = make("a", "b", strategy="least-loaded")
    pool.update_hints("a", {"requests_remaining": 100}, clock.now())
    pool.update_hints("a", {"requests_remaining": 25}, clock.now())
    assert pool.snapshot(clock.now())["a"]["quota_fraction"] == 0.25
    pool.update_hints("b", {"tokens_remaining": 500, "tokens_limit": 1000}, clock.now())
    assert pool.snapshot(clock.now())["b"]["quota_fraction"] == 0.5
    assert Counter(picks(pool, clock, rng, 50)) == {"b": 50}


def test_a_custom_strategy_is_an_object_with_pick():
    class Last:
        name = "last"

        def pick(self, candidates, rng):
            return candidates[-1]

    pool, clock, rng = make("a", "b", "c", strategy=Last())
    assert picks(pool, clock, rng, 2) == ["c", "c"]
    pool.strategy = "round-robin"
    assert picks(pool, clock, rng, 2) == ["a", "b"]


def test_a_strategy_that_picks_a_stranger_is_a_bug():
    class Stranger:
        def pick(self, candidates, rng):
            return object()

    pool, clock, rng = make("a", "b", strategy=Stranger())
    with pytest.raises(LeaseError):
        pool.choose(clock.now(), 0, rng)
    assert [row["in_flight"] for row in pool.snapshot(clock.now()).values()] == [0, 0]


# ---------------------------------------------------------------- rate limits


def test_rpm_bucket_bursts_then_one_per_second():
    pool, clock, rng = make(KeyOptions("a", rpm=60))
    start = clock.now()
    assert len(take_all(pool, clock, rng)) == 60
    assert pool.next_ready_at(clock.now(), 0) == start + 1.0
    clock.advance(0.999)
    assert pool.choose(clock.now(), 0, rng) is None
    clock.advance(0.001)
    assert len(take_all(pool, clock, rng)) == 1
    for second in range(2, 6):  # steady state: exactly one a second, on the second
        ready = pool.next_ready_at(clock.now(), 0)
        assert ready == pytest.approx(start + second, abs=1e-9)
        clock.advance(ready - clock.now())
        assert len(take_all(pool, clock, rng)) == 1


def test_rpm_refills_continuously_not_per_minute_window():
    pool, clock, rng = make(KeyOptions("a", rpm=60))
    take_all(pool, clock, rng)
    clock.advance(2.5)
    assert len(take_all(pool, clock, rng)) == 2  # 2.5 refilled, 0.5 left over
    assert pool.next_ready_at(clock.now(), 0) == pytest.approx(clock.now() + 0.5)
    clock.advance(120.0)
    assert len(take_all(pool, clock, rng)) == 60  # never more than a minute's worth


def test_rpm_below_one_is_one_request_per_interval():
    pool, clock, rng = make(KeyOptions("a", rpm=0.5))
    assert len(take_all(pool, clock, rng)) == 1
    assert pool.next_ready_at(clock.now(), 0) == pytest.approx(clock.now() + 120.0)


def test_tpm_bucket_holds_a_request_until_its_tokens_fit():
    pool, clock, rng = make(KeyOptions("a", tpm=600))  # 10 tokens a second
    first = pool.choose(clock.now(), 500, rng)
    assert first is not None
    assert pool.choose(clock.now(), 200, rng) is None
    assert pool.choose(clock.now(), 100, rng) is not None  # the smaller one fits
    assert pool.next_ready_at(clock.now(), 200) == pytest.approx(clock.now() + 20.0)
    clock.advance(20.0)
    assert pool.choose(clock.now(), 200, rng) is not None


def test_an_estimate_above_tpm_waits_for_a_full_bucket_not_forever():
    pool, clock, rng = make(KeyOptions("a", tpm=600))
    assert pool.choose(clock.now(), 300, rng) is not None
    assert pool.next_ready_at(clock.now(), 5_000) == pytest.approx(clock.now() + 30.0)
    clock.advance(30.0)
    assert pool.choose(clock.now(), 5_000, rng) is not None
    assert pool.snapshot(clock.now())["a"]["tokens_available"] == 0.0


@pytest.mark.parametrize(
    "reserved, usage, level_after, wait_for_100",
    [
        (500, 100, 500.0, 0.0),  # 400 refunded
        (500, 500, 100.0, 0.0),  # estimate was right
        (500, 900, -300.0, 40.0),  # 400 charged: a debt of 300, paid back at 10/s
        (100, 0, 600.0, 0.0),  # refund capped at capacity
    ],
)
def test_tpm_estimate_is_corrected_by_the_reported_usage(
    reserved, usage, level_after, wait_for_100
):
    pool, clock, rng = make(KeyOptions("a", tpm=600))
    lease = pool.choose(clock.now(), reserved, rng)
    pool.release(
        lease, clock.now(), Outcome.success(tokens_in=usage // 2, tokens_out=usage - usage // 2)
    )
    snap = pool.snapshot(clock.now())["a"]
    assert snap["tokens_available"] == level_after
    assert (snap["tokens_in"], snap["tokens_out"]) == (usage // 2, usage - usage // 2)
    assert pool.next_ready_at(clock.now(), 100) == pytest.approx(clock.now() + wait_for_100)


def test_outcomes_without_usage_keep_the_reservation():
    pool, clock, rng = make(KeyOptions("a", tpm=600))
    for outcome in [Outcome.success(), Outcome.server_failure(), Outcome.ignored()]:
        pool.release(pool.choose(clock.now(), 100, rng), clock.now(), outcome)
    assert pool.snapshot(clock.now())["a"]["tokens_available"] == 300.0
    pool.release(pool.choose(clock.now(), 100, rng), clock.now(), Outcome.ignored(tokens_in=40))
    assert (
        pool.snapshot(clock.now())["a"]["tokens_available"] == 260.0
    )  # a stream cut short still used 40


# ---------------------------------------------------------------- health


def test_retry_after_cools_the_key_down_for_exactly_that_long():
    pool, clock, rng = make("a", "b")
    lease = pool.choose(clock.now(), 0, rng)
    clock.advance(1.0)
    pool.release(lease, clock.now(), Outcome.rate_limited(retry_after=2.5))
    until = clock.now() + 2.5
    assert picks(pool, clock, rng, 3) == ["b", "b", "b"]  # the request moves on to another key
    snap = pool.snapshot(clock.now())["a"]
    assert (snap["rate_limited"], snap["cooldowns"], snap["cooling_until"]) == (1, 1, 2.5)
    assert pool.next_ready_at(clock.now(), 0, exclude=frozenset({"b"})) == until
    clock.advance(2.5)
    assert pool.snapshot(clock.now())["a"]["cooling_until"] == 0.0
    assert "a" in picks(pool, clock, rng, 2)


def test_a_429_without_retry_after_cools_for_the_default():
    pool, clock, rng = make("a")
    pool.release(pool.choose(clock.now(), 0, rng), clock.now(), Outcome.rate_limited())
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + DEFAULT_COOLDOWN
    pool.default_cooldown = 4.0
    pool.release(pool.choose(clock.now() + 1.0, 0, rng), clock.now() + 1.0, Outcome.rate_limited())
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 5.0


def test_a_rest_over_max_cooldown_is_not_believed_and_is_reported():
    pool, clock, rng = make("a", "b")  # max_cooldown defaults to 60 s
    pool.release(
        pool.choose(clock.now(), 0, rng, exclude=frozenset({"b"})),
        clock.now(),
        Outcome.rate_limited(1e9, cooldown=0.5),
    )
    snap = pool.snapshot(clock.now())["a"]
    assert (
        snap["cooling_until"],
        snap["retry_after_over_cap"],
        snap["longest_retry_after_asked"],
    ) == (0.5, 1, 1e9)
    clock.advance(0.5)
    assert (
        pool.choose(clock.now(), 0, rng, exclude=frozenset({"b"})) is not None
    )  # back after the backoff
    assert pool.snapshot(clock.now())["b"]["longest_retry_after_asked"] is None


def test_max_cooldown_bounds_every_rest():
    pool, clock, rng = make(
        KeyOptions("a", max_concurrent=5), max_cooldown=10.0, default_cooldown=2.0
    )
    leases = [pool.choose(clock.now(), 0, rng) for _ in range(4)]
    pool.release(leases[0], clock.now(), Outcome.rate_limited(10.0))  # the cap itself: believed
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 10.0
    pool.release(
        leases[1], clock.now(), Outcome.rate_limited(86400.0)
    )  # over it, no cooldown given: the default
    pool.release(
        leases[2], clock.now(), Outcome.rate_limited(20.0, cooldown=30.0)
    )  # not believed: our own backoff
    assert (
        pool.next_ready_at(clock.now(), 0) == clock.now() + 30.0
    )  # the cap bounds what the server is believed, not us
    snap = pool.snapshot(clock.now())["a"]
    assert (snap["retry_after_over_cap"], snap["longest_retry_after_asked"]) == (2, 86400.0)
    pool.update_hints(
        "a", {"requests_remaining": 0, "requests_reset": 1e12}, clock.now()
    )  # a reset, too: not believed
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 30.0
    assert pool.snapshot(clock.now())["a"]["longest_retry_after_asked"] == 1e12
    pool.max_cooldown = 1e6
    with pytest.raises(SettingError, match="max_cooldown"):
        pool.max_cooldown = -1.0
    pool.release(leases[3], clock.now(), Outcome.rate_limited(86400.0))
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 86400.0


def test_a_cap_of_zero_believes_no_retry_after_and_still_cools_a_rate_limited_key():
    pool, clock, rng = make(KeyOptions("a"), max_cooldown=0.0, default_cooldown=2.0)
    pool.release(
        pool.choose(clock.now(), 0, rng), clock.now(), Outcome.rate_limited(None, cooldown=20.0)
    )
    assert (
        pool.next_ready_at(clock.now(), 0) == clock.now() + 20.0
    )  # our backoff, not cut to the cap
    pool.release(
        pool.choose(clock.now() + 20.0, 0, rng), clock.now() + 20.0, Outcome.rate_limited(5.0)
    )
    assert (
        pool.next_ready_at(clock.now() + 20.0, 0) == clock.now() + 22.0
    )  # 5 s asked, not believed: the default


def test_outcome_from_an_error_keeps_what_the_server_asked_and_our_fallback():
    error = RateLimitError("x", status=429, retry_after=1e9)
    assert Outcome.from_error(error, 0.75) == Outcome.rate_limited(1e9, cooldown=0.75)
    assert Outcome.from_error(RateLimitError("x", status=429), 0.75) == Outcome.rate_limited(
        None, cooldown=0.75
    )
    for odd in (float("nan"), float("inf")):
        assert (
            Outcome.from_error(RateLimitError("x", status=429, retry_after=odd), 0.75).retry_after
            is None
        )


def test_leases_that_will_never_come_back_can_be_forgotten():
    pool, clock, rng = make(KeyOptions("a", max_concurrent=2))
    leases = take_all(pool, clock, rng)
    assert len(leases) == 2 and pool.choose(clock.now(), 0, rng) is None
    pool.forget_in_flight()  # a forked child: the parent's attempts are not ours
    assert pool.snapshot(clock.now())["a"]["in_flight"] == 0
    assert pool.choose(clock.now(), 0, rng) is not None


def test_cooldowns_only_lengthen_and_count_once_per_rest():
    pool, clock, rng = make(KeyOptions("a", max_concurrent=3))
    leases = [pool.choose(clock.now(), 0, rng) for _ in range(3)]
    pool.release(leases[0], clock.now(), Outcome.rate_limited(10.0))
    pool.release(leases[1], clock.now(), Outcome.rate_limited(4.0))  # sooner: the later end stands
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 10.0
    pool.release(leases[2], clock.now() + 1.0, Outcome.rate_limited(12.0))
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 13.0
    assert pool.snapshot(clock.now())["a"]["cooldowns"] == 1


def test_every_key_cooling_down_means_wait_for_the_first_to_recover():
    pool, clock, rng = make("a", "b", "c")
    for retry_after in (3.0, 1.5, 6.0):
        pool.release(
            pool.choose(clock.now(), 0, rng), clock.now(), Outcome.rate_limited(retry_after)
        )
    assert pool.choose(clock.now(), 0, rng) is None
    ready = pool.next_ready_at(clock.now(), 0)
    assert ready == clock.now() + 1.5
    clock.advance(1.5)
    assert pool.choose(clock.now(), 0, rng).name == "b"


def test_auth_failure_disables_the_key_with_its_reason():
    pool, clock, rng = make("a", "b")
    lease = pool.choose(clock.now(), 0, rng)
    pool.release(lease, clock.now(), Outcome.from_error(AuthenticationError("bad key", status=401)))
    snap = pool.snapshot(clock.now())
    assert snap["a"]["disabled"] == "AuthenticationError (HTTP 401)"
    assert snap["a"]["auth_failures"] == 1 and snap["b"]["disabled"] is None
    clock.advance(3600.0)
    assert set(picks(pool, clock, rng, 5)) == {"b"}
    pool.disable("b", "revoked by operator")
    assert pool.choose(clock.now(), 0, rng) is None
    assert pool.next_ready_at(clock.now(), 0) is None  # never, by waiting
    pool.enable("a")
    assert picks(pool, clock, rng, 1) == ["a"]


def test_server_failures_open_the_keys_breaker_then_a_half_open_probe():
    pool, clock, rng = make(
        "a", "b", breaker_options=BreakerOptions(failure_threshold=2, reset_timeout=5.0)
    )
    for _ in range(2):
        lease = pool.choose(clock.now(), 0, rng, exclude=frozenset({"b"}))
        pool.release(lease, clock.now(), Outcome.server_failure())
    opened_at = clock.now()
    assert pool.snapshot(clock.now())["a"]["breaker"] == STATE_OPEN
    assert set(picks(pool, clock, rng, 4)) == {"b"}  # skipped while open
    assert pool.next_ready_at(clock.now(), 0, exclude=frozenset({"b"})) == opened_at + 5.0
    clock.advance(5.0)
    probe = pool.choose(clock.now(), 0, rng, exclude=frozenset({"b"}))
    assert probe.name == "a" and pool.snapshot(clock.now())["a"]["breaker"] == STATE_HALF_OPEN
    assert pool.choose(clock.now(), 0, rng, exclude=frozenset({"b"})) is None  # one probe at a time
    assert (
        pool.next_ready_at(clock.now(), 0, exclude=frozenset({"b"})) is None
    )  # freed by the probe's end
    pool.release(probe, clock.now(), SUCCESS)
    assert pool.snapshot(clock.now())["a"]["breaker"] == STATE_CLOSED


def test_a_failed_probe_opens_the_keys_breaker_again():
    pool, clock, rng = make(
        "a", breaker_options=BreakerOptions(failure_threshold=1, reset_timeout=2.0)
    )
    pool.release(pool.choose(clock.now(), 0, rng), clock.now(), Outcome.server_failure())
    clock.advance(2.0)
    pool.release(pool.choose(clock.now(), 0, rng), clock.now(), Outcome.server_failure())
    assert pool.snapshot(clock.now())["a"]["breaker"] == STATE_OPEN
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 2.0


@pytest.mark.parametrize(
    "outcome",
    [Outcome.rate_limited(0.0), Outcome.ignored(), Outcome.auth_failure("x")],
    ids=lambda o: o.kind,
)
def test_rate_limits_and_client_errors_do_not_trip_the_breaker(outcome):
    pool, clock, rng = make("a", breaker_options=BreakerOptions(failure_threshold=1))
    pool.release(pool.choose(clock.now(), 0, rng), clock.now(), outcome)
    assert pool.snapshot(clock.now())["a"]["breaker"] == STATE_CLOSED


def test_max_concurrent_caps_attempts_in_flight_on_a_key():
    pool, clock, rng = make(KeyOptions("a", max_concurrent=2))
    leases = take_all(pool, clock, rng)
    assert len(leases) == 2
    assert pool.next_ready_at(clock.now(), 0) is None  # an attempt finishing frees it
    pool.release(leases[0], clock.now(), SUCCESS)
    assert pool.next_ready_at(clock.now(), 0) == clock.now()
    assert pool.choose(clock.now(), 0, rng) is not None


# ---------------------------------------------------------------- next_ready_at and exclude


def test_next_ready_at_is_the_latest_blocker_of_the_earliest_key():
    pool, clock, rng = make(
        KeyOptions("a", rpm=60), KeyOptions("b", tpm=60), KeyOptions("c", max_concurrent=1)
    )
    now = clock.now()
    assert pool.next_ready_at(now, 0) == now
    assert Counter(lease.name for lease in take_all(pool, clock, rng, tokens=60)) == {
        "a": 60,
        "b": 1,
        "c": 1,
    }
    assert pool.next_ready_at(now, 0) == now  # b fits a 0-token request
    assert pool.next_ready_at(now, 30) == pytest.approx(now + 1.0)  # a's next request, at 1/s
    assert pool.next_ready_at(now, 30, exclude=frozenset({"a"})) == pytest.approx(
        now + 30.0
    )  # b: 1 token/s
    assert (
        pool.next_ready_at(now, 30, exclude=frozenset({"a", "b"})) is None
    )  # c: only by a release


def test_a_cooldown_and_an_empty_bucket_wait_for_the_later_of_the_two():
    pool, clock, rng = make(KeyOptions("a", rpm=60, max_concurrent=100))
    leases = take_all(pool, clock, rng)
    pool.release(leases[0], clock.now(), Outcome.rate_limited(0.25))
    assert pool.next_ready_at(clock.now(), 0) == pytest.approx(
        clock.now() + 1.0
    )  # the bucket is later
    pool.release(leases[1], clock.now(), Outcome.rate_limited(4.0))
    assert pool.next_ready_at(clock.now(), 0) == clock.now() + 4.0  # now the cooldown is


@pytest.mark.parametrize("start", [0.0, 3.7, 1000.0, 123_456.789, 9_876_543.21])
@pytest.mark.parametrize(
    "key, tokens",
    [
        (KeyOptions("a", rpm=7.0), 0),
        (KeyOptions("a", tpm=997.0), 133),
        (KeyOptions("a", rpm=13.0, tpm=71.0), 9),
    ],
)
def test_jumping_to_next_ready_at_always_finds_the_key(start, key, tokens):
    """``next_ready_at`` is exact in floats: at that time (never before) ``choose`` succeeds."""
    pool, rng = KeyPool([key], "round-robin", now=start), random.Random(3)
    now, granted = start, 0
    for _ in range(300):
        while pool.choose(now, tokens, rng) is not None:
            granted += 1
        ready = pool.next_ready_at(now, tokens)
        assert ready > now
        now = ready
        assert pool.choose(now, tokens, rng) is not None, "next_ready_at said it would fit by now"
        granted += 1
    assert granted >= 300


@pytest.mark.parametrize("reset_timeout", [0.1, 0.3, 0.7, 1.1])
@pytest.mark.parametrize("opened_at", [1000.1, 123_456.7, 9_876_543.3])
def test_jumping_to_next_ready_at_finds_an_opened_key_half_open(reset_timeout, opened_at):
    options = BreakerOptions(failure_threshold=1, reset_timeout=reset_timeout)
    pool, rng, now = (
        KeyPool([KeyOptions("a")], "round-robin", breaker_options=options),
        random.Random(3),
        opened_at,
    )
    lease = pool.choose(now, 0, rng)
    for step in range(50):
        pool.release(lease, now, Outcome.server_failure())  # opens it (again: a failed probe)
        now += 0.1 * (step % 3)  # asked a little later, or not
        now = pool.next_ready_at(now, 0)
        lease = pool.choose(now, 0, rng)
        assert lease is not None, "next_ready_at said the probe could go by now"


def test_exclude_is_never_chosen():
    pool, clock, rng = make("a", "b", "c", strategy="weighted")
    assert "b" not in picks(pool, clock, rng, 300, exclude=frozenset({"b"}))
    assert pool.choose(clock.now(), 0, rng, exclude=frozenset({"a", "b", "c"})) is None
    assert pool.next_ready_at(clock.now(), 0, exclude=frozenset({"a", "b", "c"})) is None


def test_an_empty_pool_chooses_nothing():
    pool, clock, rng = make()
    assert pool.choose(clock.now(), 0, rng) is None
    assert pool.next_ready_at(clock.now(), 0) is None
    assert pool.snapshot(clock.now()) == {} and len(pool) == 0


# ---------------------------------------------------------------- leases and keys


def test_a_lease_is_released_exactly_once():
    pool, clock, rng = make("a")
    lease = pool.choose(clock.now(), 0, rng)
    pool.release(lease, clock.now(), SUCCESS)
    before = pool.snapshot(clock.now())
    with pytest.raises(LeaseError, match="exactly once"):
        pool.release(lease, clock.now(), Outcome.server_failure())
    assert pool.snapshot(clock.now()) == before
    assert before["a"]["in_flight"] == 0 and lease.released


def test_a_lease_goes_back_to_the_pool_that_granted_it():
    pool, clock, rng = make("a")
    other, _, _ = make("a")
    lease = pool.choose(clock.now(), 0, rng)
    with pytest.raises(LeaseError):
        other.release(lease, clock.now(), SUCCESS)
    assert other.snapshot(clock.now())["a"]["in_flight"] == 0
    assert pool.snapshot(clock.now())["a"]["in_flight"] == 1


def test_keys_added_and_removed_while_leases_are_out():
    pool, clock, rng = make(KeyOptions("a", max_concurrent=1), "b")
    lease_a = pool.choose(clock.now(), 0, rng)
    assert lease_a.name == "a"
    pool.remove("a")
    assert "a" not in pool and "a" not in pool.snapshot(clock.now())
    assert set(picks(pool, clock, rng, 3)) == {"b"}
    pool.add(KeyOptions("a", max_concurrent=1))  # a new key under the old name starts afresh
    assert pool.snapshot(clock.now())["a"]["in_flight"] == 0
    fresh = pool.choose(clock.now(), 0, rng, exclude=frozenset({"b"}))
    pool.release(lease_a, clock.now(), Outcome.server_failure())  # onto the removed key
    assert pool.snapshot(clock.now())["a"]["in_flight"] == 1
    pool.release(fresh, clock.now(), SUCCESS)
    assert pool.snapshot(clock.now())["a"]["in_flight"] == 0
    assert pool.names() == ["b", "a"]


def test_update_keeps_a_keys_state_under_new_limits():
    pool, clock, rng = make(KeyOptions("a", rpm=60, max_concurrent=10))
    leases = [pool.choose(clock.now(), 0, rng) for _ in range(5)]
    pool.update(KeyOptions("a", rpm=30, max_concurrent=5, tpm=100), clock.now())
    snap = pool.snapshot(clock.now())["a"]
    assert (snap["in_flight"], snap["requests_available"], snap["tokens_available"]) == (
        5,
        30.0,
        100.0,
    )
    assert pool.choose(clock.now(), 0, rng) is None  # at the new cap
    pool.release(leases[0], clock.now(), SUCCESS)
    pool.update(KeyOptions("a"), clock.now())
    assert pool.snapshot(clock.now())["a"]["requests_available"] is None


# ---------------------------------------------------------------- hints and reports


def test_hints_at_zero_remaining_cool_the_key_until_the_reset():
    pool, clock, rng = make("a", "b")
    pool.update_hints(
        "a", {"requests_remaining": 0, "requests_reset": 7.0, "tokens_remaining": 900}, clock.now()
    )
    assert set(picks(pool, clock, rng, 4)) == {"b"}
    assert pool.next_ready_at(clock.now(), 0, exclude=frozenset({"b"})) == clock.now() + 7.0
    snap = pool.snapshot(clock.now())["a"]
    assert snap["hints"] == {
        "requests_remaining": 0.0,
        "requests_reset": 7.0,
        "tokens_remaining": 900.0,
        "tokens_reset": None,
    }
    assert snap["cooldowns"] == 1
    clock.advance(7.0)
    assert (
        pool.snapshot(clock.now())["a"]["hints"]["requests_remaining"] is None
    )  # reset: forgotten
    assert "a" in picks(pool, clock, rng, 2)


def test_unusable_hints_and_unknown_names_are_ignored():
    pool, clock, rng = make("a")
    pool.update_hints("gone", {"requests_remaining": 0}, clock.now())
    pool.update_hints(
        "a",
        {"requests_remaining": "lots", "tokens_remaining": -5, "tokens_reset": float("nan")},
        clock.now(),
    )
    pool.update_hints("a", {}, clock.now())
    snap = pool.snapshot(clock.now())["a"]
    assert snap["hints"] == dict.fromkeys(
        ["requests_remaining", "requests_reset", "tokens_remaining", "tokens_reset"]
    )
    assert snap["cooling_until"] == 0.0


def test_snapshot_counts_every_outcome():
    pool, clock, rng = make(KeyOptions("a", rpm=100, tpm=1000, max_concurrent=9, weight=2.0))
    for outcome in [
        Outcome.success(10, 5),
        Outcome.success(),
        Outcome.server_failure(),
        Outcome.rate_limited(0.0),
        Outcome.ignored(),
    ]:
        pool.release(pool.choose(clock.now(), 20, rng), clock.now(), outcome)
    held = pool.choose(clock.now(), 20, rng)
    snap = pool.snapshot(clock.now())["a"]
    expected = {
        "requests": 6,
        "successes": 2,
        "failures": 1,
        "rate_limited": 1,
        "auth_failures": 0,
        "ignored": 1,
        "cooldowns": 0,
        "tokens_in": 10,
        "tokens_out": 5,
        "in_flight": 1,
        "max_concurrent": 9,
        "rpm": 100.0,
        "tpm": 1000.0,
        "weight": 2.0,
        "cooling_until": 0.0,
        "disabled": None,
        "breaker": STATE_CLOSED,
        "requests_available": 94.0,
        "tokens_available": 1000 - 6 * 20 + 5.0,
        "quota_fraction": 1.0,
    }
    assert {k: snap[k] for k in expected} == expected
    pool.release(held, clock.now(), SUCCESS)


def test_nothing_reported_contains_a_secret():
    secrets = {
        "primary": "sk-live-1111aaaa2222bbbb",
        "backup": "sk-live-3333cccc4444dddd",
    }  # the engine's map
    pool, clock, rng = make(
        *secrets, strategy="least-loaded", breaker_options=BreakerOptions(failure_threshold=1)
    )
    outcomes = [
        Outcome.success(3, 4),
        Outcome.server_failure(),
        Outcome.from_error(
            RateLimitError(f"limit on {secrets['primary']}", status=429, retry_after=1.0)
        ),
        Outcome.from_error(
            AuthenticationError(f"Incorrect API key provided: {secrets['backup']}", status=401)
        ),
    ]
    leases = []
    for outcome in outcomes:
        lease = pool.choose(clock.now(), 5, rng)
        if lease is None:
            clock.advance(1.0)
            lease = pool.choose(clock.now(), 5, rng)
        leases.append(lease)
        pool.release(lease, clock.now(), outcome)
        pool.update_hints(lease.name, {"requests_remaining": 3}, clock.now())
    text = json.dumps(pool.snapshot(clock.now())) + repr(pool) + "".join(map(repr, leases))
    assert set(pool.snapshot(clock.now())) == set(secrets)
    for secret in secrets.values():
        assert secret not in text and secret[-8:] not in text


# ---------------------------------------------------------------- threads


def test_threads_never_exceed_the_cap_and_leave_nothing_in_flight():
    pool, clock, _ = make(
        *(KeyOptions(f"k{i}", max_concurrent=2) for i in range(3)), strategy="least-loaded"
    )
    peaks, errors = [], []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(1_500):
                lease = pool.choose(float(i), 1, rng)
                if lease is None:
                    continue
                peaks.append(pool.snapshot(float(i))[lease.name]["in_flight"])
                pool.release(lease, float(i), Outcome.success() if i % 3 else Outcome.ignored())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and peaks and max(peaks) <= 2
    snap = pool.snapshot(0.0)
    assert all(s["in_flight"] == 0 for s in snap.values())
    assert sum(s["requests"] for s in snap.values()) == len(peaks)


# ---------------------------------------------------------------- random interleavings

OUTCOME_BUILDERS = {
    "success": lambda data: Outcome.success(data.draw(st.none() | st.integers(0, 400)), None),
    "rate_limited": lambda data: Outcome.rate_limited(
        data.draw(st.none() | st.sampled_from([0.0, 0.5, 3.0]))
    ),
    "server_failure": lambda data: Outcome.server_failure(),
    "auth_failure": lambda data: Outcome.auth_failure("HTTP 401"),
    "ignored": lambda data: Outcome.ignored(data.draw(st.none() | st.integers(0, 50))),
}
NAMES = ["k0", "k1", "k2", "k3"]
key_options = st.builds(
    KeyOptions,
    name=st.sampled_from(NAMES),
    max_concurrent=st.sampled_from([None, 1, 2, 3]),
    rpm=st.sampled_from([None, 3.0, 7.0, 60.0]),
    tpm=st.sampled_from([None, 200.0, 997.0]),
    weight=st.sampled_from([0.5, 1.0, 3.0]),
)


class KeyPoolMachine(RuleBasedStateMachine):
    """Random choose / release (every outcome) / add / remove / hints / time; the books must balance.

    The machine keeps its own time as a float so that jumping to ``next_ready_at`` is exact.
    """

    @initialize(
        keys=st.lists(key_options, max_size=3, unique_by=lambda k: k.name),
        strategy=st.sampled_from(STRATEGY_NAMES),
        seed=st.integers(0, 2**16),
    )
    def setup(self, keys, strategy, seed):
        self.now = 123_456.789
        self.rng = random.Random(seed)
        self.pool = KeyPool(
            keys,
            strategy,
            now=self.now,
            breaker_options=BreakerOptions(failure_threshold=2, reset_timeout=0.7),
        )
        self.out: list = []  # leases granted, not released
        self.states = {}  # id(state) -> (state, options) of every key ever held, removed ones included
        self.debt_allowed: dict[
            int, float
        ] = {}  # per state: the most a usage charge could push below 0
        self._track()

    def _track(self):
        for state in self.pool._keys.values():
            self.states.setdefault(id(state), state)
            self.debt_allowed.setdefault(id(state), 0.0)

    @rule(dt=st.sampled_from([0.0, 0.01, 0.1, 0.3, 1.0, 2.0, 30.0]))
    def advance(self, dt):
        self.now += dt

    @rule(
        tokens=st.sampled_from([0, 1, 50, 150, 900, 5000]),
        exclude=st.sets(st.sampled_from(NAMES), max_size=2),
    )
    def choose(self, tokens, exclude):
        exclude = frozenset(exclude)
        ready = self.pool.next_ready_at(self.now, tokens, exclude)
        lease = self.pool.choose(self.now, tokens, self.rng, exclude)
        assert (lease is not None) == (ready is not None and ready <= self.now)
        if lease is not None:
            assert lease.name not in exclude and lease.name in self.pool
            self.out.append(lease)
        elif ready is not None:
            assert ready > self.now

    @rule(tokens=st.sampled_from([0, 1, 150, 5000]))
    def wait_until_ready(self, tokens):
        ready = self.pool.next_ready_at(self.now, tokens)
        if ready is not None and ready - self.now < 1e5:
            self.now = max(self.now, ready)
            lease = self.pool.choose(self.now, tokens, self.rng)
            assert lease is not None, "next_ready_at promised a key by now"
            self.out.append(lease)

    @precondition(lambda self: self.out)
    @rule(data=st.data(), kind=st.sampled_from(sorted(OUTCOME_BUILDERS)))
    def release(self, data, kind):
        lease = self.out.pop(data.draw(st.integers(0, len(self.out) - 1)))
        outcome = OUTCOME_BUILDERS[kind](data)
        state = lease._state
        if outcome.usage is not None:
            self.debt_allowed[id(state)] += max(0.0, outcome.usage - lease._tokens_taken)
        self.pool.release(lease, self.now, outcome)
        assert lease.released
        with pytest.raises(LeaseError):
            self.pool.release(lease, self.now, outcome)

    @rule(key=key_options)
    def add(self, key):
        if key.name in self.pool:
            with pytest.raises(SettingError):
                self.pool.add(key, self.now)
        else:
            self.pool.add(key, self.now)
            self._track()

    @rule(name=st.sampled_from(NAMES))
    def remove(self, name):
        if name in self.pool:
            self.pool.remove(name)
        else:
            with pytest.raises(SettingError):
                self.pool.remove(name)

    @rule(
        name=st.sampled_from(NAMES),
        remaining=st.none() | st.sampled_from([0, 1, 40]),
        reset=st.none() | st.sampled_from([0.5, 5.0]),
    )
    def hints(self, name, remaining, reset):
        self.pool.update_hints(
            name, {"requests_remaining": remaining, "requests_reset": reset}, self.now
        )

    @rule(name=st.sampled_from(NAMES))
    def enable(self, name):
        if name in self.pool:
            self.pool.enable(name)

    @invariant()
    def in_flight_matches_outstanding_leases(self):
        held = Counter(id(lease._state) for lease in self.out)
        for key, state in self.states.items():
            assert state.in_flight == held[key] >= 0
            cap = state.options.max_concurrent
            assert cap is None or state.in_flight <= cap
        snap = self.pool.snapshot(self.now)
        for name, figures in snap.items():
            assert figures["in_flight"] == held[id(self.pool._keys[name])]

    @invariant()
    def buckets_stay_within_bounds(self):
        for key, state in self.states.items():
            if state.requests_bucket is not None:
                assert 0.0 <= state.requests_bucket.level <= state.requests_bucket.capacity
            if state.tokens_bucket is not None:
                bucket = state.tokens_bucket
                assert -self.debt_allowed[key] - 1e-6 <= bucket.level <= bucket.capacity
                if not self.debt_allowed[key]:
                    assert bucket.level >= 0.0

    def teardown(self):
        if not hasattr(self, "pool"):
            return
        for lease in self.out:  # every lease released exactly once, then nothing is in flight
            self.pool.release(lease, self.now, SUCCESS)
        self.out.clear()
        assert all(state.in_flight == 0 for state in self.states.values())


TestKeyPoolMachine = KeyPoolMachine.TestCase
TestKeyPoolMachine.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)


def test_new_breaker_options_reach_every_keys_breaker_and_keys_added_later():
    pool = KeyPool(
        [KeyOptions("a")],
        "round-robin",
        breaker_options=BreakerOptions(failure_threshold=1, reset_timeout=60.0),
    )
    lease = pool.choose(0.0, 0, random.Random(1))
    pool.release(lease, 0.0, Outcome.server_failure())
    assert pool.next_ready_at(0.0, 0) == 60.0  # its breaker is OPEN for a minute
    pool.breaker_options = BreakerOptions(failure_threshold=1, reset_timeout=2.0)
    assert pool.next_ready_at(0.0, 0) == 2.0
    pool.add(KeyOptions("b"), 0.0)
    lease = pool.choose(0.0, 0, random.Random(1), exclude=frozenset({"a"}))
    pool.release(lease, 0.0, Outcome.server_failure())
    assert (
        pool.snapshot(1.0)["b"]["breaker"] == "OPEN"
        and pool.snapshot(2.0)["b"]["breaker"] == "HALF_OPEN"
    )


# ---------------------------------------------------------------- one key


def test_one_key_is_chosen_until_it_is_held_cooling_or_excluded():
    pool, clock, rng = make(KeyOptions("only", max_concurrent=2, rpm=60), strategy="least-loaded")
    first = pool.choose(clock.now(), 0, rng)
    second = pool.choose(clock.now(), 0, rng, exclude=frozenset({"another"}))
    assert (first.name, second.name) == ("only", "only")
    assert pool.choose(clock.now(), 0, rng) is None  # at its max_concurrent
    pool.release(first, clock.now(), SUCCESS)
    assert pool.choose(clock.now(), 0, rng, exclude=frozenset({"only"})) is None
    pool.release(
        pool.choose(clock.now(), 0, rng, model="m"),
        clock.now(),
        Outcome.from_error(RateLimitError("slow down", retry_after=5.0)),
    )
    assert pool.choose(clock.now(), 0, rng, model="m") is None  # its model cools
    clock.advance(5.0)
    lease = pool.choose(clock.now(), 0, rng, model="m")
    assert lease is not None and pool.snapshot(clock.now())["only"]["in_flight"] == 2
