"""Rate windows on their own: the token bucket's refill, fit, take, refund and debt, its
resize; what a provider's quota hints say and for how long."""

from __future__ import annotations

import math

import pytest

from ipfs_accelerate_py.resilience.keys import (
    MIN_QUOTA_FRACTION,
    SECONDS_PER_MINUTE,
    _available,
    _hint_number,
    _QuotaHint,
    _request_bucket,
    _resized,
    _TokenBucket,
    _tokens_bucket,
)


def test_a_bucket_starts_full_and_refills_at_its_rate_up_to_capacity():
    bucket = _TokenBucket(10.0, 2.0, now=100.0)
    assert (bucket.capacity, bucket.rate, bucket.level, bucket.updated) == (10.0, 2.0, 10.0, 100.0)
    assert bucket.take(7) == 7 and bucket.level == 3.0
    bucket.refill(101.5)
    assert (bucket.level, bucket.updated) == (6.0, 101.5)
    bucket.refill(101.0)  # a now from the past adds nothing and moves nothing
    assert (bucket.level, bucket.updated) == (6.0, 101.5)
    bucket.refill(200.0)
    assert bucket.level == 10.0


def test_ready_at_is_now_when_it_fits_else_when_the_refill_makes_it_fit():
    bucket = _TokenBucket(10.0, 2.0, now=0.0)
    assert bucket.ready_at(10, 0.0) == 0.0  # exactly the level: fits
    bucket.take(10)
    assert bucket.ready_at(4, 0.0) == 2.0
    assert bucket.ready_at(4, 1.0) == 2.0
    assert bucket.ready_at(50, 1.0) == 5.0  # more than capacity waits for a full bucket only
    assert bucket.need(50) == 10.0 and bucket.need(3) == 3


def test_a_level_short_by_float_dust_still_fits():
    bucket = _TokenBucket(1000.0, 1.0, now=0.0)
    bucket.level = 1000.0 - 1e-7  # short by less than the slack, 1e-9 of the capacity (1e-6)
    assert bucket.ready_at(1000, 0.0) == 0.0
    bucket.level = 1000.0 - 2e-6  # short by more than the slack (1e-6 here)
    assert bucket.ready_at(1000, 0.0) == pytest.approx(2e-6)
    small = _TokenBucket(0.5, 1.0, now=0.0)
    small.level = 0.5 - 5e-10  # slack is 1e-9 for any capacity up to 1
    assert small.ready_at(1, 0.0) == 0.0


def test_take_never_leaves_a_fitted_bucket_below_zero():
    bucket = _TokenBucket(5.0, 1.0, now=0.0)
    bucket.level = 5.0 - 1e-12
    assert bucket.take(5) == 5.0
    assert bucket.level == 0.0


def test_correct_refunds_up_to_capacity_and_charges_into_debt():
    bucket = _TokenBucket(10.0, 1.0, now=0.0)
    bucket.take(6)
    bucket.correct(2.5)
    assert bucket.level == 6.5
    bucket.correct(100.0)
    assert bucket.level == 10.0
    bucket.correct(-15.0)
    assert bucket.level == -5.0
    assert bucket.ready_at(1, 0.0) == 6.0  # the debt is paid back first


def test_resize_keeps_the_level_within_the_new_capacity():
    bucket = _TokenBucket(10.0, 1.0, now=0.0)
    bucket.take(4)
    bucket.resize(20.0, 4.0, now=1.0)  # refilled at the old rate first
    assert (bucket.capacity, bucket.rate, bucket.level) == (20.0, 4.0, 7.0)
    bucket.resize(5.0, 1.0, now=1.0)
    assert bucket.level == 5.0


def test_request_and_token_buckets_from_per_minute_limits():
    assert _request_bucket(None, 0.0) is None and _tokens_bucket(None, 0.0) is None
    requests = _request_bucket(120.0, 3.0)
    assert (requests.capacity, requests.rate, requests.updated) == (120.0, 2.0, 3.0)
    slow = _request_bucket(0.5, 0.0)  # one request every two minutes: a burst of one
    assert (slow.capacity, slow.rate) == (1.0, 0.5 / SECONDS_PER_MINUTE)
    tokens = _tokens_bucket(6000.0, 0.0)
    assert (tokens.capacity, tokens.rate) == (6000.0, 100.0)


def test_resized_keeps_the_old_bucket_or_takes_the_fresh_one():
    old = _TokenBucket(10.0, 1.0, now=0.0)
    old.take(10)
    fresh = _TokenBucket(20.0, 2.0, now=0.0)
    assert _resized(old, fresh, 0.0) is old and (old.capacity, old.level) == (20.0, 0.0)
    assert _resized(None, fresh, 0.0) is fresh
    assert _resized(old, None, 0.0) is None


def test_available_refills_first():
    assert _available(None, 0.0) is None
    bucket = _TokenBucket(10.0, 1.0, now=0.0)
    bucket.take(10)
    assert _available(bucket, 4.0) == 4.0


@pytest.mark.parametrize(
    ("value", "figure"),
    [(5, 5.0), ("7", None), (-1, None), (math.nan, None), (math.inf, None), (None, None), (0, 0.0)],
)
def test_hint_numbers_are_finite_and_not_negative(value, figure):
    assert _hint_number(value) == figure


def test_a_hint_holds_until_its_reset_and_estimates_the_limit():
    hint = _QuotaHint()
    assert (hint.current(0.0), hint.fraction(0.0)) == (None, 1.0)
    hint.update(remaining=80.0, reset=10.0, limit=None, now=5.0)
    assert (hint.remaining, hint.reset_at, hint.limit) == (80.0, 15.0, 80.0)
    assert hint.current(14.9) == 80.0 and hint.fraction(14.9) == 1.0
    assert hint.current(15.0) is None and hint.fraction(15.0) == 1.0  # reset: presumed back
    hint.update(remaining=20.0, reset=None, limit=None, now=20.0)
    assert (hint.limit, hint.reset_at, hint.current(1e9)) == (80.0, None, 20.0)  # the most seen
    assert hint.fraction(20.0) == 0.25


def test_a_known_limit_is_kept_and_the_fraction_is_bounded():
    hint = _QuotaHint()
    hint.update(remaining=None, reset=None, limit=200.0, now=0.0)
    assert (hint.limit, hint.current(0.0)) == (200.0, None)
    hint.update(remaining=300.0, reset=None, limit=0.0, now=0.0)  # a limit of 0: ignored
    assert hint.limit == 200.0 and hint.fraction(0.0) == 1.0  # never above 1
    hint.update(remaining=0.0, reset=None, limit=200.0, now=0.0)
    assert hint.fraction(0.0) == MIN_QUOTA_FRACTION  # never 0: a key is never infinitely loaded
    hint.update(remaining=50.0, reset=None, limit=200.0, now=0.0)
    assert hint.fraction(0.0) == 0.25


def test_the_slack_of_a_small_bucket_is_a_billionth_of_one():
    bucket = _TokenBucket(0.5, 1.0, now=0.0)
    bucket.level = 0.5 - 1.5e-9  # over the slack (1e-9, not 1e-9 * 2 nor 1e-9 * 0.5)
    assert bucket.ready_at(1, 0.0) == pytest.approx(1.5e-9)
    bucket.level = 0.5 - 0.7e-9  # within it
    assert bucket.ready_at(1, 0.0) == 0.0


def test_a_limit_of_one_is_a_limit_and_a_small_remaining_estimates_it():
    hint = _QuotaHint()
    hint.update(remaining=None, reset=None, limit=1.0, now=0.0)
    assert hint.limit == 1.0
    estimated = _QuotaHint()
    estimated.update(remaining=0.5, reset=None, limit=None, now=0.0)
    assert estimated.limit == 0.5 and estimated.fraction(0.0) == 1.0
