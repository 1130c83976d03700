"""The circuit breaker under runs of successes while CLOSED (the common case, which it
takes a short way): each still counts exactly as one alone would, in its bucket, slow or
not, and the rules still fire when options, the window or a failure change what one
more success means.  Fake times, no sleeping."""

from __future__ import annotations

import math
from dataclasses import replace

from ipfs_accelerate_py.resilience.breaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    WINDOW_BUCKETS,
    BreakerOptions,
    CircuitBreaker,
)


def successes(breaker: CircuitBreaker, now: float, count: int, duration: float = 0.0) -> None:
    for _ in range(count):
        breaker.on_success(now, duration, permit=breaker.acquire(now))


def window(breaker: CircuitBreaker, now: float) -> tuple[int, int, int]:
    counts = breaker.snapshot(now)["window"]
    return counts["calls"], counts["failures"], counts["slow"]


def test_every_success_of_a_run_is_counted_with_or_without_a_permit():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=3))
    successes(breaker, 1.0, 50)
    for _ in range(10):
        breaker.on_success(1.0)
    breaker.on_ignored(1.0)
    assert window(breaker, 1.0) == (60, 0, 0)
    successes(breaker, 1.5, 5)  # after a snapshot, the run goes on from 60
    assert window(breaker, 1.5) == (65, 0, 0)


def test_a_run_of_successes_leaves_the_window_with_its_bucket():
    breaker = CircuitBreaker(BreakerOptions(window_seconds=60.0))
    successes(breaker, 0.5, 4)
    successes(breaker, 1.5, 3)
    assert window(breaker, 60.5) == (3, 0, 0)  # the bucket of 0.5 left at 60.0
    assert window(breaker, 61.5) == (0, 0, 0)


def test_successes_either_side_of_a_bucket_edge_go_to_their_own_buckets():
    # a width of 1 s: the bucket of [k, k + 1) leaves the window at k + 60
    for k in (0, 1, 2, 7, 59, 1000, 123456):
        breaker = CircuitBreaker(BreakerOptions(window_seconds=60.0))
        successes(breaker, k + 0.5, 2)
        breaker.on_success(math.nextafter(k + 1.0, -math.inf))  # the last instant of k's
        successes(breaker, k + 1.0, 1)  # the first of the next bucket
        assert window(breaker, k + 60.5) == (1, 0, 0), k


def first_of_bucket(width: float, index: int) -> float:
    """The least time whose bucket (floor(now / width)) is ``index``."""
    at = index * width
    while math.floor(at / width) >= index:
        at = math.nextafter(at, -math.inf)
    while math.floor(at / width) < index:
        at = math.nextafter(at, math.inf)
    return at


def test_successes_either_side_of_an_inexact_bucket_edge_go_to_their_own_buckets():
    for window_seconds in (6.0, 600.0, 1.8, 0.07):
        width = window_seconds / 60
        for k in (0, 2, 9, 29, 1001, 77777):
            edge = first_of_bucket(width, k + 1)
            breaker = CircuitBreaker(BreakerOptions(window_seconds=window_seconds))
            successes(breaker, k * width + width / 2, 2)
            breaker.on_success(math.nextafter(edge, -math.inf))
            successes(breaker, edge, 1)
            later = first_of_bucket(width, k + 60)  # k's bucket has left, the next has not
            assert window(breaker, later) == (1, 0, 0), (window_seconds, k)


def test_successes_before_time_zero_go_to_their_own_buckets():
    breaker = CircuitBreaker(BreakerOptions(window_seconds=60.0))
    successes(breaker, -1.5, 3)
    successes(breaker, -1.0, 2)
    successes(breaker, -0.5, 1)
    assert window(breaker, -0.5) == (6, 0, 0)
    assert window(breaker, 58.0) == (3, 0, 0)  # only the bucket of -2 has left


def test_a_call_as_long_as_slow_call_duration_is_slow_amid_quick_ones():
    options = BreakerOptions(
        failure_threshold=100,
        slow_call_duration=0.5,
        slow_call_rate_threshold=100.0,
        minimum_calls=1,
    )
    breaker = CircuitBreaker(options)
    successes(breaker, 0.0, 3)
    successes(breaker, 0.0, 1, duration=math.nextafter(0.5, 0.0))
    successes(breaker, 0.0, 1, duration=0.5)
    successes(breaker, 0.0, 2)
    successes(breaker, 0.0, 1, duration=7.0)
    assert window(breaker, 0.0) == (8, 0, 2)


def test_with_half_the_slow_call_rule_set_no_success_of_a_run_is_slow():
    for only_one in ({"slow_call_duration": 0.5}, {"slow_call_rate_threshold": 10.0}):
        breaker = CircuitBreaker(BreakerOptions(minimum_calls=1, **only_one))
        successes(breaker, 0.0, 3, duration=2.0)
        assert window(breaker, 0.0) == (3, 0, 0)
        assert breaker.state(0.0) == STATE_CLOSED


def test_turning_the_slow_call_rule_on_counts_the_next_slow_success():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=100, minimum_calls=50))
    successes(breaker, 0.0, 3, duration=2.0)
    breaker.options = replace(
        breaker.options, slow_call_duration=1.0, slow_call_rate_threshold=90.0
    )
    successes(breaker, 0.0, 2)
    successes(breaker, 0.0, 1, duration=2.0)
    assert window(breaker, 0.0) == (6, 0, 1)


def test_a_failure_amid_successes_restarts_the_consecutive_count():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=3))
    successes(breaker, 0.0, 3)
    breaker.on_failure(0.0)
    successes(breaker, 0.0, 2)
    breaker.on_failure(0.0)
    breaker.on_failure(0.0)
    assert breaker.state(0.0) == STATE_CLOSED
    breaker.on_failure(0.0)
    assert breaker.state(0.0) == STATE_OPEN


def test_a_lowered_failure_rate_threshold_trips_on_the_next_success():
    breaker = CircuitBreaker(
        BreakerOptions(failure_threshold=100, failure_rate_threshold=60.0, minimum_calls=4)
    )
    breaker.on_failure(0.0)
    breaker.on_failure(0.0)
    successes(breaker, 0.0, 4)  # 2 of 6 failed: 33%
    assert breaker.state(0.0) == STATE_CLOSED
    breaker.options = replace(breaker.options, failure_rate_threshold=25.0)
    successes(breaker, 0.0, 1)  # 2 of 7: 28.6% >= 25%
    assert breaker.state(0.0) == STATE_OPEN


def test_the_success_that_reaches_minimum_calls_trips_the_failure_rate():
    breaker = CircuitBreaker(
        BreakerOptions(failure_threshold=100, failure_rate_threshold=50.0, minimum_calls=4)
    )
    breaker.on_failure(0.0)
    breaker.on_failure(0.0)
    successes(breaker, 0.0, 1)
    assert breaker.state(0.0) == STATE_CLOSED
    successes(breaker, 0.0, 1)  # 4 calls, 2 failed: 50%
    assert breaker.state(0.0) == STATE_OPEN


def test_the_success_that_reaches_minimum_calls_trips_the_slow_rate():
    breaker = CircuitBreaker(
        BreakerOptions(
            failure_threshold=100,
            slow_call_duration=1.0,
            slow_call_rate_threshold=50.0,
            minimum_calls=3,
        )
    )
    successes(breaker, 0.0, 2, duration=2.0)
    assert breaker.state(0.0) == STATE_CLOSED
    successes(breaker, 0.0, 1)  # 3 calls, 2 slow: 67%
    assert breaker.state(0.0) == STATE_OPEN


def test_a_late_success_after_a_snapshot_dropped_old_buckets_sees_what_is_left():
    # threads racing: a snapshot at 60.5 drops the bucket of 0, then a success stamped 59.6
    breaker = CircuitBreaker(
        BreakerOptions(failure_threshold=100, failure_rate_threshold=30.0, minimum_calls=2)
    )
    successes(breaker, 0.0, 4)
    breaker.on_failure(59.5)
    successes(breaker, 59.5, 1)  # 1 of 6 failed: 17%
    assert window(breaker, 60.5) == (2, 1, 0)
    breaker.on_success(59.6)  # 1 of the 3 left: 33% >= 30%
    assert breaker.state(59.6) == STATE_OPEN


def test_a_late_success_after_a_snapshot_emptied_the_window_starts_a_bucket():
    breaker = CircuitBreaker(BreakerOptions(window_seconds=60.0))
    successes(breaker, 0.0, 3)
    assert window(breaker, 100.0) == (0, 0, 0)
    breaker.on_success(5.0)
    successes(breaker, 5.0, 1)
    assert window(breaker, 5.0) == (2, 0, 0)
    assert window(breaker, 64.5) == (2, 0, 0)  # the bucket of 5 is still in at 64.5
    assert window(breaker, 65.0) == (0, 0, 0)


def test_a_stale_permit_amid_a_run_is_ignored():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=1))
    old = breaker.acquire(0.0)
    breaker.reset(0.0)  # a transition: permits issued before it are stale
    successes(breaker, 0.0, 2)
    breaker.on_success(0.0, permit=old)
    snap = breaker.snapshot(0.0)
    assert (snap["stale_results"], snap["window"]["calls"]) == (1, 2)


def test_a_new_window_drops_a_run_counted_in_the_old_one():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=3))
    successes(breaker, 0.0, 3)
    breaker.options = replace(breaker.options, window_seconds=10.0)
    successes(breaker, 0.0, 2)
    assert window(breaker, 0.0) == (2, 0, 0)
    breaker.options = replace(breaker.options, failure_threshold=4)  # the same window kept
    successes(breaker, 0.0, 1)
    assert window(breaker, 0.0) == (3, 0, 0)
    breaker.force_open(0.0)
    breaker.reset(0.0)
    successes(breaker, 0.0, 1)
    assert window(breaker, 0.0) == (1, 0, 0)


def test_the_first_permit_is_fresh():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=1))
    breaker.on_failure(0.0, permit=breaker.acquire(0.0))
    assert breaker.state(0.0) == STATE_OPEN


def test_failures_amid_runs_keep_the_window_to_its_buckets():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=10**9, window_seconds=60.0))
    for tick in range(120 * 50):  # 120 s at 50 calls/s, one in five a failure
        now = tick / 50
        if tick % 5:
            breaker.on_success(now)
        else:
            breaker.on_failure(now)
    assert breaker._window.bucket_count() <= WINDOW_BUCKETS + 1  # noqa: SLF001
    assert window(breaker, 119.99) == (60 * 50, 60 * 10, 0)


def test_half_open_needs_no_wait_even_when_reset_timeout_grows():
    breaker = CircuitBreaker(BreakerOptions(failure_threshold=1, reset_timeout=1.0))
    breaker.on_failure(0.0)
    assert breaker.state(1.0) == STATE_HALF_OPEN
    breaker.options = replace(breaker.options, reset_timeout=10.0)
    assert breaker.retry_in(2.0) == 0.0


def test_the_window_reports_its_rates_as_shares_of_its_calls():
    breaker = CircuitBreaker(
        BreakerOptions(
            failure_threshold=100,
            slow_call_duration=1.0,
            slow_call_rate_threshold=90.0,
            minimum_calls=100,
        )
    )
    successes(breaker, 0.0, 2)
    successes(breaker, 0.0, 1, duration=2.0)
    breaker.on_failure(0.0, permit=breaker.acquire(0.0))
    rates = breaker.snapshot(0.0)["window"]
    assert (rates["failure_rate"], rates["slow_rate"]) == (25.0, 25.0)
