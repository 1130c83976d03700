"""The key pool at its edges: reprs, refusals and their messages, usage sums, cooldown
scopes through release, next_ready and exclusions, what a fresh key reports.
Fake times, a seeded RNG, no sleeping."""

from __future__ import annotations

import dataclasses
import random

import pytest

from ipfs_accelerate_py.resilience.breaker import BreakerOptions
from ipfs_accelerate_py.resilience.errors import SettingError
from ipfs_accelerate_py.resilience.keys import (
    DEFAULT_COOLDOWN,
    REASON_COOLING,
    REASON_KEY_COOLING,
    REASON_RPM,
    REASON_TPM,
    SCOPE_KEY,
    SCOPE_MODEL,
    KeyOptions,
    KeyPool,
    KeyState,
    LeaseError,
    LeastLoaded,
    Outcome,
    Readiness,
    RoundRobin,
    Weighted,
)

RNG = random.Random(3)


def pool_of(*names: str, **kwargs) -> KeyPool:
    return KeyPool([KeyOptions(n) for n in names], "round-robin", **kwargs)


def test_scopes_and_reasons_are_the_documented_words():
    assert (SCOPE_MODEL, SCOPE_KEY) == ("model", "key")
    assert Outcome.rate_limited(scope="model").scope == SCOPE_MODEL
    assert (REASON_COOLING, REASON_KEY_COOLING, REASON_RPM, REASON_TPM) == (
        "cooling",
        "key cooling",
        "rpm",
        "tpm",
    )


def test_reprs_name_keys_never_secrets():
    pool = KeyPool([KeyOptions("main")], "round-robin")
    lease = pool.choose(0.0, 5, RNG)
    assert repr(lease) == "Lease(name='main', tokens=5, out)"
    state = pool._keys["main"]
    assert repr(state) == "KeyState(name='main', in_flight=1, disabled=False)"
    pool.release(lease, 0.0, Outcome.auth_failure())
    assert repr(lease) == "Lease(name='main', tokens=5, released)"
    assert repr(state) == "KeyState(name='main', in_flight=0, disabled=True)"
    assert repr(pool) == "KeyPool(keys=['main'], strategy=RoundRobin())"
    assert (repr(RoundRobin()), repr(LeastLoaded()), repr(Weighted())) == (
        "RoundRobin()",
        "LeastLoaded()",
        "Weighted()",
    )


def test_a_fresh_key_has_its_whole_quota_and_nothing_in_flight():
    state = KeyState(KeyOptions("k"), 0, BreakerOptions(), 0.0)
    assert (state.quota_fraction, state.in_flight, state.disabled) == (1.0, 0, None)
    assert state.cooldown_until == float("-inf") and state.model_cooldowns == {}


def test_cool_down_says_whether_it_started_or_lengthened_a_rest():
    state = KeyState(KeyOptions("k"), 0, BreakerOptions(), 0.0)
    assert state.cool_down(5.0, 0.0) is True
    assert state.cool_down(4.0, 0.0) is False  # shorter: kept
    assert state.cool_down(6.0, 1.0) is True  # longer: lengthened, not a new rest
    assert state.cool_down(3.0, 3.0, model="m") is False  # ends by now: none
    assert state.cool_down(9.0, 3.0, model="m") is True
    assert state.counts["cooldowns"] == 2
    assert (state.cooldown_until, state.model_cooldowns) == (6.0, {"m": 9.0})


@pytest.mark.parametrize(
    ("tokens_in", "tokens_out", "usage"),
    [(None, None, None), (None, 5, 5), (7, None, 7), (0, 0, 0), (2, 3, 5)],
)
def test_usage_sums_what_was_reported(tokens_in, tokens_out, usage):
    assert Outcome.success(tokens_in, tokens_out).usage == usage


@pytest.mark.parametrize("field", ["tokens_in", "tokens_out"])
def test_an_outcome_refuses_a_negative_or_fractional_count(field):
    with pytest.raises(SettingError, match=field):
        Outcome.success(**{field: -1})
    with pytest.raises(SettingError, match=field):
        Outcome.ignored(**{field: 1.5})


def test_an_outcome_refuses_an_unknown_kind_or_scope_naming_the_choices():
    with pytest.raises(SettingError, match="'scope'.*one of key, model"):
        Outcome.rate_limited(scope="pair")
    with pytest.raises(SettingError, match="'kind'.*one of auth_failure, ignored"):
        Outcome("odd")


def test_choose_refuses_a_token_estimate_that_is_not_a_count():
    pool = pool_of("a")
    for bad in (1.5, -1, True):
        with pytest.raises(SettingError, match="tokens"):
            pool.choose(0.0, bad, RNG)
    assert pool._keys["a"].in_flight == 0


def test_update_and_breaker_options_refuse_other_types():
    pool = pool_of("a")
    with pytest.raises(SettingError, match="'key'.*a KeyOptions"):
        pool.update({"name": "a"}, 0.0)  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="'breaker_options'.*a BreakerOptions"):
        pool.breaker_options = {"failure_threshold": 1}  # type: ignore[assignment]


def test_an_unknown_name_is_refused_naming_the_keys_in_the_pool():
    with pytest.raises(SettingError, match=r"the name of a key in the pool \(a, b\)"):
        pool_of("a", "b").disable("c", "why")
    with pytest.raises(SettingError, match=r"the name of a key in the pool \(none\)"):
        pool_of().enable("c")


def test_disabled_reason_reports_the_reason_until_enabled():
    pool = pool_of("a")
    assert pool.disabled_reason("a") is None
    pool.disable("a", "rotated")
    assert pool.disabled_reason("a") == "rotated"
    pool.enable("a")
    assert pool.disabled_reason("a") is None


def test_a_model_scoped_429_cools_the_pair_and_a_key_scoped_one_the_key():
    pool = pool_of("a")
    lease = pool.choose(0.0, 0, RNG, model="m1")
    pool.release(lease, 0.0, Outcome.rate_limited(10.0, scope=SCOPE_MODEL))
    assert pool.choose(1.0, 0, RNG, model="m1") is None
    other = pool.choose(1.0, 0, RNG, model="m2")
    assert other is not None
    pool.release(other, 1.0, Outcome.rate_limited(10.0, scope=SCOPE_KEY))
    assert pool.choose(2.0, 0, RNG, model="m3") is None
    assert pool.next_ready(2.0, 0, model="m3") == Readiness(11.0, "a", REASON_KEY_COOLING)
    snap = pool.snapshot(2.0)["a"]
    assert (snap["cooling_until"], snap["cooling_models"]) == (9.0, {"m1": 8.0})


def test_next_ready_skips_excluded_keys_and_names_what_holds_the_first():
    pool = KeyPool([KeyOptions("a", rpm=1), KeyOptions("b", rpm=2)], "round-robin")
    pool.release(pool.choose(0.0, 0, RNG, exclude=frozenset({"b"})), 0.0, Outcome.success())
    pool.release(pool.choose(0.0, 0, RNG, exclude=frozenset({"a"})), 0.0, Outcome.success())
    pool.release(pool.choose(0.0, 0, RNG, exclude=frozenset({"a"})), 0.0, Outcome.success())
    assert pool.next_ready(0.0, 0) == Readiness(30.0, "b", REASON_RPM)
    assert pool.next_ready(0.0, 0, exclude=frozenset({"b"})) == Readiness(60.0, "a", REASON_RPM)
    assert pool.next_ready(0.0, 0, exclude=frozenset({"a", "b"})) is None
    assert pool.next_ready_at(0.0, 0, exclude=frozenset({"b"})) == 60.0


def test_an_outcome_checks_every_figure_it_is_given():
    with pytest.raises(SettingError, match="tokens_in"):
        Outcome.success(tokens_in=-1, tokens_out=0)
    with pytest.raises(SettingError, match="'cooldown'"):
        Outcome.rate_limited(cooldown=-1.0)
    with pytest.raises(SettingError, match="'retry_after'"):
        Outcome.rate_limited(retry_after=-1.0)
    full = Outcome("rate_limited", tokens_in=0, tokens_out=0, retry_after=0.0, cooldown=0.0)
    assert (full.tokens_in, full.tokens_out, full.usage) == (0, 0, 0)


def test_outcomes_are_immutable():
    outcome = Outcome.success()
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.kind = "ignored"  # type: ignore[misc]


def test_an_auth_failure_disables_the_key_with_a_reason():
    assert Outcome.auth_failure().reason == "authentication failed"
    pool = pool_of("a")
    pool.release(pool.choose(0.0, 0, RNG), 0.0, Outcome.auth_failure())
    assert pool.disabled_reason("a") == "authentication failed"


def test_a_429_without_retry_after_rests_the_key_one_second_by_default():
    assert DEFAULT_COOLDOWN == 1.0
    pool = pool_of("a")
    pool.release(pool.choose(0.0, 0, RNG), 0.0, Outcome.rate_limited())
    assert pool.choose(0.999, 0, RNG) is None
    assert pool.choose(1.0, 0, RNG) is not None


def test_a_key_without_a_name_is_refused_saying_never_the_secret():
    with pytest.raises(
        SettingError, match="a non-empty string naming the key \\(never the secret\\)"
    ):
        KeyOptions("")


def test_pool_settings_read_back_what_was_set():
    options = BreakerOptions(failure_threshold=2)
    pool = KeyPool([KeyOptions("a")], "weighted", breaker_options=options, default_cooldown=3.0)
    assert type(pool.strategy) is Weighted and pool.breaker_options is options
    assert (pool.default_cooldown, pool.max_cooldown) == (3.0, 60.0)
    pool.strategy = "least-loaded"
    pool.default_cooldown = 4.5
    pool.max_cooldown = 10.0
    assert type(pool.strategy) is LeastLoaded
    assert (pool.default_cooldown, pool.max_cooldown) == (4.5, 10.0)
    with pytest.raises(SettingError, match="'default_cooldown'"):
        pool.default_cooldown = -1.0
    assert pool.default_cooldown == 4.5


def test_buckets_start_full_at_time_zero_by_default():
    made = KeyPool([KeyOptions("a", rpm=60)], "round-robin")  # 60 at once, then 1 a second
    added = KeyPool([], "round-robin")
    added.add(KeyOptions("b", rpm=60))
    for pool in (made, added):
        for _ in range(60):
            pool.release(pool.choose(0.0, 0, RNG), 0.0, Outcome.success())
        assert pool.next_ready_at(0.5, 0) == 1.0  # refilled since 0.0, not since a later start


def test_release_refuses_what_is_not_an_outcome_or_not_its_lease():
    pool, other = pool_of("a"), pool_of("a")
    lease = pool.choose(0.0, 0, RNG)
    with pytest.raises(SettingError, match="'outcome'.*an Outcome"):
        pool.release(lease, 0.0, "success")  # type: ignore[arg-type]
    with pytest.raises(LeaseError, match=r"Lease\(name='a', tokens=0, out\) was not granted"):
        other.release(lease, 0.0, Outcome.success())
    pool.release(lease, 0.0, Outcome.success())  # still out, and released once
    assert pool._keys["a"].in_flight == 0


def test_type_refusals_name_what_is_expected():
    with pytest.raises(SettingError, match="'breaker_options'.*a BreakerOptions"):
        KeyPool([], "round-robin", breaker_options="strict")  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="'key'.*a KeyOptions"):
        pool_of().add("a")  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="tokens"):
        pool_of("a").next_ready(0.0, -1)
    with pytest.raises(SettingError, match="tokens"):
        pool_of("a").next_ready_at(0.0, -1)


def test_a_quick_success_is_not_a_slow_call_for_the_keys_breaker():
    breaker = BreakerOptions(slow_call_duration=0.5, slow_call_rate_threshold=50.0, minimum_calls=1)
    pool = KeyPool([KeyOptions("a")], "round-robin", breaker_options=breaker)
    for t in (0.0, 1.0, 2.0):
        pool.release(pool.choose(t, 0, RNG), t + 0.1, Outcome.success())
    assert pool.snapshot(3.0)["a"]["breaker"] == "CLOSED"


def test_next_ready_prefers_the_first_of_equals_and_skips_a_disabled_key():
    pool = pool_of("a", "b", "c")
    pool.disable("c", "rotated")
    assert pool.next_ready(0.0, 0) == Readiness(0.0, "a", None)
    pool.disable("a", "rotated")
    assert pool.next_ready(0.0, 0) == Readiness(0.0, "b", None)


def test_an_auth_failure_without_a_reason_still_gives_one():
    pool = pool_of("a")
    pool.release(pool.choose(0.0, 0, RNG), 0.0, Outcome("auth_failure"))
    assert pool.disabled_reason("a") == "authentication failed"


def test_a_key_whose_circuit_is_open_is_held_by_the_breaker():
    breaker = BreakerOptions(failure_threshold=1, reset_timeout=5.0)
    pool = KeyPool([KeyOptions("a")], "round-robin", breaker_options=breaker)
    pool.release(pool.choose(0.0, 0, RNG), 1.0, Outcome.server_failure())
    assert pool.next_ready(2.0, 0) == Readiness(6.0, "a", "breaker")
