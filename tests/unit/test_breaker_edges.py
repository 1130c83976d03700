"""The circuit breaker at its edges: what each transition resets, the window's slow count
leaving it, the snapshot's fields, defaults, refusals.  Fake times, no sleeping."""

from __future__ import annotations

import dataclasses

import pytest

from ipfs_accelerate_py.resilience.breaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    BreakerOptions,
    CircuitBreaker,
)
from ipfs_accelerate_py.resilience.errors import SettingError


def listened(options: BreakerOptions) -> tuple[CircuitBreaker, list[tuple[str, str, float]]]:
    breaker = CircuitBreaker(options)
    events: list[tuple[str, str, float]] = []
    breaker.add_listener(lambda old, new, now: events.append((old, new, now)))
    return breaker, events


def test_options_are_immutable():
    options = BreakerOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.failure_threshold = 9  # type: ignore[misc]


def test_a_breaker_refuses_options_of_another_type_naming_them():
    with pytest.raises(SettingError, match="'options'"):
        CircuitBreaker({"failure_threshold": 3})  # type: ignore[arg-type]


def test_slow_calls_leave_the_window_with_their_bucket():
    options = BreakerOptions(
        failure_threshold=100,
        slow_call_duration=1.0,
        slow_call_rate_threshold=90.0,
        window_seconds=10.0,
        minimum_calls=100,
    )
    breaker = CircuitBreaker(options)
    breaker.on_success(0.0, duration=2.0)
    breaker.on_success(0.5, duration=2.0)
    assert breaker.snapshot(0.5)["window"]["slow"] == 2
    breaker.on_success(20.0, duration=0.1)  # the first bucket has left the window
    window = breaker.snapshot(20.0)["window"]
    assert (window["calls"], window["slow"], window["slow_rate"]) == (1, 0, 0.0)


def test_a_call_without_a_duration_is_not_slow():
    options = BreakerOptions(
        failure_threshold=10, slow_call_duration=0.5, slow_call_rate_threshold=50.0, minimum_calls=1
    )
    breaker = CircuitBreaker(options)
    breaker.on_success(0.0)
    breaker.on_failure(0.0)
    breaker.record(0.0, True)
    breaker.record(0.0, False)
    assert breaker.state(0.0) == STATE_CLOSED
    window = breaker.snapshot(0.0)["window"]
    assert (window["calls"], window["failures"], window["slow"]) == (4, 2, 0)


def test_reset_clears_the_window_of_a_closed_breaker():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=10))
    breaker.on_failure(0.0)
    breaker.on_success(0.0)
    breaker.reset(1.0)
    snap = breaker.snapshot(1.0)
    assert (snap["window"]["calls"], snap["consecutive_failures"]) == (0, 0)


def test_reset_without_now_after_force_open_reports_the_forced_time():
    breaker, events = listened(BreakerOptions())
    breaker.state(7.0)
    breaker.force_open(8.0)
    breaker.reset()
    assert events == [(STATE_CLOSED, STATE_OPEN, 8.0), (STATE_OPEN, STATE_CLOSED, 8.0)]


def test_opening_starts_a_fresh_window_and_half_open_keeps_the_opening_time():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=2, reset_timeout=5.0))
    breaker.on_success(0.0)
    breaker.on_failure(1.0)
    breaker.on_failure(2.0)
    snap = breaker.snapshot(2.0)
    assert (snap["state"], snap["opened_at"], snap["window"]["calls"]) == (STATE_OPEN, 2.0, 0)
    snap = breaker.snapshot(7.0)
    assert (snap["state"], snap["opened_at"], snap["consecutive_failures"]) == (
        STATE_HALF_OPEN,
        2.0,
        2,
    )


def test_closing_clears_the_failures_and_the_opening_time():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=2, reset_timeout=5.0))
    breaker.on_failure(0.0)
    breaker.on_failure(0.0)
    permit = breaker.acquire(5.0)
    breaker.on_success(5.0, permit=permit)
    snap = breaker.snapshot(5.0)
    assert (snap["state"], snap["opened_at"], snap["consecutive_failures"]) == (
        STATE_CLOSED,
        None,
        0,
    )
    breaker.on_failure(6.0)  # one failure after closing does not trip a threshold of two
    assert breaker.state(6.0) == STATE_CLOSED


def test_each_half_open_spell_needs_all_its_probes_to_pass_afresh():
    options = BreakerOptions(failure_threshold=1, reset_timeout=1.0, half_open_max_requests=2)
    breaker = CircuitBreaker(options)
    breaker.on_failure(0.0)
    first, second = breaker.acquire(1.0), breaker.acquire(1.0)
    breaker.on_success(1.0, permit=first)  # one of two probes passed
    breaker.on_failure(1.0, permit=second)  # the other failed: open again
    assert breaker.state(1.0) == STATE_OPEN
    probe = breaker.acquire(2.0)
    breaker.on_success(2.0, permit=probe)  # one pass in this spell is not enough
    assert breaker.state(2.0) == STATE_HALF_OPEN
    breaker.on_success(2.0, permit=breaker.acquire(2.0))
    assert breaker.state(2.0) == STATE_CLOSED


def test_snapshot_has_every_field():
    breaker = CircuitBreaker(BreakerOptions(half_open_max_requests=3))
    snap = breaker.snapshot(0.0)
    assert snap == {
        "state": STATE_CLOSED,
        "consecutive_failures": 0,
        "failure_threshold": 5,
        "reset_timeout": 30.0,
        "opened_at": None,
        "retry_in": 0.0,
        "times_opened": 0,
        "half_open_in_flight": 0,
        "half_open_max_requests": 3,
        "stale_results": 0,
        "window": {"calls": 0, "failures": 0, "slow": 0, "failure_rate": 0.0, "slow_rate": 0.0},
    }


def test_reset_without_now_reports_the_last_time_seen():
    breaker, events = listened(BreakerOptions(failure_threshold=1))
    breaker.on_failure(3.0)
    breaker.state(4.5)
    breaker.reset()
    assert events == [(STATE_CLOSED, STATE_OPEN, 3.0), (STATE_OPEN, STATE_CLOSED, 4.5)]


def test_an_illegal_transition_raises_and_changes_nothing():
    breaker = CircuitBreaker(BreakerOptions())
    with pytest.raises(RuntimeError, match="no transition from CLOSED on 'bogus'"):
        breaker._locked(breaker._transition, "bogus", 1.0)
    assert breaker.state(1.0) == STATE_CLOSED


def test_options_of_another_type_are_refused_saying_what_is_expected():
    with pytest.raises(SettingError, match="expected a BreakerOptions"):
        CircuitBreaker("fast")  # type: ignore[arg-type]
    breaker = CircuitBreaker()
    with pytest.raises(SettingError, match="expected a BreakerOptions"):
        breaker.options = "fast"  # type: ignore[assignment]
