"""Retry decisions at their edges: status bounds, what a non-error status means, when the
RNG is drawn, the types and texts a caller sees."""

from __future__ import annotations

import dataclasses
import random

import pytest

from ipfs_accelerate_py.resilience.errors import (
    InvalidRequestError,
    MalformedResponseError,
    SettingError,
)
from ipfs_accelerate_py.resilience.retry import (
    REASON_NOT_RETRYABLE,
    REASON_RETRIES_EXHAUSTED,
    RetryDecision,
    RetryOptions,
    backoff_delay,
    believed_retry_after,
    decide,
    is_retryable,
    seconds_text,
)


@pytest.mark.parametrize("code", [100, 599])
def test_retryable_statuses_take_every_http_code(code):
    assert RetryOptions(retryable_statuses={code}).retryable_statuses == frozenset({code})


@pytest.mark.parametrize("code", [99, 600])
def test_retryable_statuses_refuse_what_is_no_http_code(code):
    with pytest.raises(SettingError) as info:
        RetryOptions(retryable_statuses={code})
    assert info.value.setting == "retryable_statuses"
    assert info.value.expected == "a collection of HTTP status codes (integers 100-599)"


def test_a_400_is_judged_by_the_status_list_and_a_lower_status_by_its_class():
    options = RetryOptions(retryable_statuses={400})
    assert is_retryable(InvalidRequestError("bad", status=400), options) is True
    # below 400 the status says nothing of failure: a malformed 2xx/3xx is retried by class
    assert is_retryable(MalformedResponseError("odd", status=399), options) is True
    assert is_retryable(InvalidRequestError("bad", status=399), options) is False


def test_decisions_are_immutable():
    decision = RetryDecision(True, 1.0, "backoff")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.delay = 2.0  # type: ignore[misc]


def test_backoff_names_a_bad_retry_number():
    with pytest.raises(ValueError, match="retry_number starts at 1, got 0"):
        backoff_delay(0, RetryOptions(), random.Random(1))


@pytest.mark.parametrize(("initial", "cap"), [(0.0, 10.0), (1.0, 0.0)])
def test_no_backoff_draws_nothing_from_the_rng(initial, cap):
    rng = random.Random(5)
    before = rng.getstate()
    assert backoff_delay(3, RetryOptions(initial_delay=initial, max_delay=cap), rng) == 0.0
    assert rng.getstate() == before


def test_a_believed_wait_is_always_a_float():
    assert type(believed_retry_after(5, None)) is float
    assert type(believed_retry_after(5, 10.0)) is float


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0s"),
        (0.25, "0.25s"),
        (0.999, "1.00s"),
        (1.0, "1.0s"),
        (1.5, "1.5s"),
        (30.0, "30.0s"),
    ],
)
def test_seconds_text(seconds, text):
    assert seconds_text(seconds) == text


def test_a_refusal_to_retry_waits_for_nothing():
    options, rng = RetryOptions(max_retries=1), random.Random(0)
    refused = decide(InvalidRequestError("bad", status=400), 0, options, rng, 0.0, None)
    assert refused == RetryDecision(False, 0.0, REASON_NOT_RETRYABLE) and not refused
    spent = decide(MalformedResponseError("odd"), 1, options, rng, 0.0, None)
    assert spent == RetryDecision(False, 0.0, REASON_RETRIES_EXHAUSTED)
