"""The key pool's hot path: a key with nothing of its own holding it is leased on its
breaker's permit alone, and a success goes back without an Outcome.  Each case checks
that the fast path ends exactly where the general one does.  Fake times, no sleeping."""

from __future__ import annotations

import random

import pytest

from ipfs_accelerate_py.engine.keyring import KeyConfig, KeyRing
from ipfs_accelerate_py.resilience.breaker import BreakerOptions
from ipfs_accelerate_py.resilience.errors import SettingError
from ipfs_accelerate_py.resilience.keys import (
    REASON_KEY_COOLING,
    KeyOptions,
    KeyPool,
    LeaseError,
    Outcome,
    Readiness,
)

RNG = random.Random(5)


def one(key: KeyOptions | None = None, **kwargs) -> KeyPool:
    return KeyPool([key or KeyOptions("a")], "round-robin", **kwargs)


@pytest.mark.parametrize("limits", [{}, {"tpm": 1000}, {"rpm": 600, "max_concurrent": 5}])
@pytest.mark.parametrize("usage", [(0, 0), (0, 5), (5, 0), (2, 1), (70, 90)])
def test_release_success_ends_where_release_of_a_success_does(limits, usage):
    fast, slow = one(KeyOptions("a", **limits)), one(KeyOptions("a", **limits))
    outcome = Outcome.success(*usage) if any(usage) else Outcome.success()
    for t in (0.0, 1.0, 2.5):
        fast.release_success(fast.choose(t, 40, RNG), t + 0.25, *usage)
        slow.release(slow.choose(t, 40, RNG), t + 0.25, outcome)
        assert fast.snapshot(t + 0.5) == slow.snapshot(t + 0.5)
    assert fast.snapshot(3.0)["a"]["successes"] == 3


def test_release_success_refuses_as_release_does_and_changes_nothing():
    pool, other = one(), one()
    lease = pool.choose(0.0, 0, RNG)
    with pytest.raises(LeaseError, match=r"Lease\(name='a', tokens=0, out\) was not granted"):
        other.release_success(lease, 0.0)
    with pytest.raises(LeaseError, match="was not granted"):
        pool.release_success("a lease", 0.0)  # type: ignore[arg-type]
    for usage in ((-1, 5), (5, -1), (-2, 0), (0, -2)):
        with pytest.raises(SettingError, match="'usage'.*two counts >= 0"):
            pool.release_success(lease, 0.0, *usage)
    assert not lease.released and pool.snapshot(0.0)["a"]["in_flight"] == 1
    pool.release_success(lease, 1.0, 3, 4)
    with pytest.raises(LeaseError, match="released already"):
        pool.release_success(lease, 1.0)
    figures = pool.snapshot(1.0)["a"]
    assert (figures["in_flight"], figures["successes"], figures["tokens_in"]) == (0, 1, 3)
    assert figures["tokens_out"] == 4


def test_release_success_times_the_call_for_the_keys_breaker():
    slow_calls = BreakerOptions(
        slow_call_duration=1.0, slow_call_rate_threshold=50.0, minimum_calls=2
    )
    pool = one(breaker_options=slow_calls)
    pool.release_success(pool.choose(5.0, 0, RNG), 4.0)  # a clock behind: no time, not slow
    pool.release_success(pool.choose(5.0, 0, RNG), 5.5)
    assert pool.snapshot(6.0)["a"]["breaker"] == "CLOSED"
    pool.release_success(pool.choose(6.0, 0, RNG), 7.0)  # 1 s: slow, 1 of 3 calls
    pool.release_success(pool.choose(7.0, 0, RNG), 8.0)  # 2 of 4: at the threshold
    assert pool.snapshot(8.0)["a"]["breaker"] == "OPEN"


def test_a_plain_key_goes_as_its_breaker_lets_it():
    pool = one(breaker_options=BreakerOptions(failure_threshold=1, reset_timeout=10.0))
    pool.release(pool.choose(0.0, 0, RNG), 0.0, Outcome.server_failure())
    assert pool.choose(9.0, 0, RNG) is None  # OPEN
    probe = pool.choose(10.0, 0, RNG)  # HALF_OPEN: its one probe
    assert probe is not None and pool.choose(10.0, 0, RNG) is None
    pool.release_success(probe, 10.5)
    assert pool.choose(10.5, 0, RNG) is not None  # CLOSED again
    figures = pool.snapshot(11.0)["a"]
    assert (figures["requests"], figures["successes"], figures["failures"]) == (3, 1, 1)


def test_a_key_with_limits_waits_for_its_breaker_in_full():
    """Not a plain key (it has a limit of its own): its breaker's verdict still holds it."""
    pool = one(
        KeyOptions("a", rpm=600),
        breaker_options=BreakerOptions(failure_threshold=1, reset_timeout=10.0),
    )
    pool.release(pool.choose(0.0, 0, RNG), 0.0, Outcome.server_failure())
    assert pool.choose(9.0, 0, RNG) is None  # OPEN
    probe = pool.choose(10.0, 0, RNG)  # HALF_OPEN: its one probe
    assert probe is not None
    assert pool.choose(10.0, 0, RNG) is None  # the probe is out: no time frees the key
    assert pool.next_ready_at(10.0, 0) is None
    pool.release_success(probe, 10.5)
    assert pool.choose(10.5, 0, RNG) is not None  # CLOSED again


def test_a_quick_failure_is_timed_from_its_lease_and_not_slow():
    options = BreakerOptions(
        failure_threshold=100,
        failure_rate_threshold=None,
        slow_call_duration=1.0,
        slow_call_rate_threshold=50.0,
        minimum_calls=2,
    )
    pool = one(breaker_options=options)
    for t in (5.0, 6.0):
        pool.release(pool.choose(t, 0, RNG), t + 0.1, Outcome.server_failure())  # 0.1 s each
    assert pool.choose(7.0, 0, RNG) is not None  # no slow call: the circuit stays closed


def test_a_plain_key_rests_for_the_model_that_was_limited_and_is_free_when_it_ends():
    pool = one()
    pool.release(pool.choose(0.0, 0, RNG, model="m"), 0.0, Outcome.rate_limited(2.0))
    assert pool.choose(1.0, 0, RNG, model="m") is None
    other = pool.choose(1.0, 0, RNG, model="n")  # another model, and no model, still go
    anything = pool.choose(1.0, 0, RNG)
    assert other is not None and anything is not None
    assert pool.choose(2.0, 0, RNG, model="m") is not None  # the rest ends at 2.0
    pool.release(pool.choose(2.0, 0, RNG), 2.0, Outcome.rate_limited(3.0, scope="key"))
    assert pool.choose(4.5, 0, RNG, model="n") is None and pool.choose(4.5, 0, RNG) is None
    assert pool.choose(5.0, 0, RNG) is not None


def test_a_plain_key_disabled_updated_or_joined_is_checked_in_full():
    pool = one()
    pool.disable("a", "revoked")
    assert pool.choose(0.0, 0, RNG) is None
    pool.enable("a")
    assert pool.choose(0.0, 0, RNG) is not None
    pool.update(KeyOptions("a", max_concurrent=2), 0.0)
    assert pool.choose(0.0, 0, RNG) is not None and pool.choose(0.0, 0, RNG) is None
    pool.update(KeyOptions("a"), 0.0)  # limits lifted: as many as the breaker allows
    assert all(pool.choose(0.0, 0, RNG) is not None for _ in range(5))
    pool.add(KeyOptions("b", max_concurrent=1), 0.0)
    pool.remove("a")
    assert pool.choose(0.0, 0, RNG).name == "b" and pool.choose(0.0, 0, RNG) is None


def test_successes_follow_from_requests_even_after_leases_are_forgotten():
    pool = one()
    leases = [pool.choose(0.0, 0, RNG) for _ in range(4)]
    pool.release_success(leases[0], 0.0)
    pool.forget_in_flight()  # a forked child: the three left will not come back here...
    pool.release(leases[1], 0.0, Outcome.server_failure())  # ...but if they do, they count
    pool.release_success(leases[2], 0.0)
    figures = pool.snapshot(0.0)["a"]
    assert (figures["requests"], figures["in_flight"]) == (4, -2)
    assert (figures["successes"], figures["failures"], figures["ignored"]) == (2, 1, 0)


def test_the_key_ring_knows_when_it_has_several_keys_and_a_secret():
    ring = KeyRing("round-robin", BreakerOptions(), 0.0)
    ring.set_default(None, 0.0)
    assert (ring.several, ring.has_secret(), ring.secret("default")) == (False, False, None)
    ring.add(KeyConfig(KeyOptions("one"), "sk-1", "http://one"), 0.0)  # the keyless slot goes
    assert (ring.several, ring.has_secret(), ring.names()) == (False, True, ["one"])
    ring.add(KeyConfig(KeyOptions("two")), 0.0)
    assert (ring.several, ring.secret("one"), ring.base_url("one")) == (True, "sk-1", "http://one")
    ring.remove("one")
    assert (ring.several, ring.has_secret(), ring.secret("one")) == (False, False, None)


def test_a_plain_lease_reserved_no_tokens_when_limits_arrive_before_it_returns():
    pool = one()
    lease = pool.choose(0.0, 30, RNG)
    pool.update(KeyOptions("a", tpm=100), 0.0)
    pool.release_success(lease, 0.0, 10, 10)  # charged in full: nothing was reserved
    assert pool.snapshot(0.0)["a"]["tokens_available"] == 80.0


def test_a_hint_of_one_left_does_not_cool_the_key():
    pool = KeyPool([KeyOptions("a"), KeyOptions("b")], "round-robin")
    pool.update_hints("a", {"requests_remaining": 1, "requests_reset": 30.0}, 0.0)
    assert pool.snapshot(0.0)["a"]["cooling_until"] == 0.0
    pool.update_hints("a", {"requests_remaining": 0.5, "requests_reset": 30.0}, 0.0)
    assert pool.snapshot(0.0)["a"]["cooling_until"] == 30.0


def test_a_rest_of_the_key_and_of_the_model_ending_together_name_the_key():
    pool = one()
    pool.release(pool.choose(0.0, 0, RNG, model="m"), 0.0, Outcome.rate_limited(5.0))
    pool.release(pool.choose(0.0, 0, RNG, model="n"), 0.0, Outcome.rate_limited(5.0, "key"))
    assert pool.next_ready(1.0, 0, model="m") == Readiness(5.0, "a", REASON_KEY_COOLING)


def test_pool_settings_are_refused_naming_the_setting():
    with pytest.raises(SettingError, match="max_cooldown"):
        KeyPool([], "round-robin", max_cooldown=-1.0)
    with pytest.raises(SettingError, match="default_cooldown"):
        KeyPool([], "round-robin", default_cooldown=-1.0)


class Refusing:
    """A strategy that must not be asked."""

    name = "refusing"

    def pick(self, candidates, rng):
        raise AssertionError("a lone key was weighed")

    def __repr__(self) -> str:
        return "Refusing()"


class Stranger(Refusing):
    def pick(self, candidates, rng):
        return object()


def test_a_lone_key_is_never_weighed_by_the_strategy_and_a_stranger_is_named():
    pool = KeyPool([KeyOptions("a", max_concurrent=3)], Refusing())
    assert pool.choose(0.0, 0, RNG).name == "a"
    assert pool.choose(0.0, 0, RNG, exclude=frozenset({"z"})).name == "a"
    pool = KeyPool([KeyOptions("a"), KeyOptions("b")], Stranger())
    with pytest.raises(LeaseError, match=r"strategy Refusing\(\) picked <object .*candidates"):
        pool.choose(0.0, 0, RNG)


@pytest.mark.parametrize("outcome", [Outcome.rate_limited(0.0), Outcome.ignored()])
def test_a_probe_that_says_nothing_of_the_key_gives_its_permit_back(outcome):
    pool = one(breaker_options=BreakerOptions(failure_threshold=1, reset_timeout=10.0))
    pool.release(pool.choose(0.0, 0, RNG), 0.0, Outcome.server_failure())
    probe = pool.choose(10.0, 0, RNG)
    assert pool.choose(10.0, 0, RNG) is None  # its one probe is out
    pool.release(probe, 10.0, outcome)
    assert pool.choose(10.0, 0, RNG) is not None


def test_a_name_in_use_is_refused_saying_so():
    with pytest.raises(SettingError, match="a key name not already in the pool"):
        one().add(KeyOptions("a"))
