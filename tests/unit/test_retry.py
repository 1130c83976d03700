"""Retry decisions: pure functions, seeded randomness, explicit times."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipfs_accelerate_py.resilience import retry as retry_module
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    AuthenticationError,
    CancelledRequestError,
    CircuitOpenError,
    DeadlineExceededError,
    InvalidInputError,
    MalformedResponseError,
    NetworkError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SettingError,
    ShutdownError,
    classify_status,
)
from ipfs_accelerate_py.resilience.retry import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_JITTER,
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_RETRIES,
    RETRYABLE_STATUSES,
    RetryDecision,
    RetryOptions,
    backoff_delay,
    deadline_error,
    decide,
    is_retryable,
)

from ..helpers import absolute_imports

NO_JITTER = RetryOptions(jitter=0.0)
NOW = 100.0
WALL_2026 = 1_780_000_000.0  # epoch seconds, June 2026


def http_error(status: int, headers: dict | None = None) -> ApiError:
    return classify_status(status, headers or {}, None, wall_now=0.0, provider="openai")


def test_defaults():
    assert frozenset({408, 409, 429, 500, 502, 503, 504, 529}) == RETRYABLE_STATUSES
    opts = RetryOptions()
    assert (
        (opts.max_retries, opts.backoff_factor, opts.initial_delay, opts.max_delay, opts.jitter)
        == (
            DEFAULT_MAX_RETRIES,
            DEFAULT_BACKOFF_FACTOR,
            DEFAULT_INITIAL_DELAY,
            DEFAULT_MAX_DELAY,
            DEFAULT_JITTER,
        )
        == (3, 2.0, 0.5, 30.0, 0.25)
    )
    assert opts.retryable_statuses == RETRYABLE_STATUSES


# ---------------------------------------------------------------- whether


@pytest.mark.parametrize(
    "status, retried",
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (413, False),
        (422, False),
        (429, True),
        (500, True),
        (501, False),  # a server error, but "not implemented" will not change on retry
        (502, True),
        (503, True),
        (504, True),
        (529, True),
    ],
)
def test_status_table(status, retried):
    assert is_retryable(http_error(status), RetryOptions()) is retried
    decision = decide(http_error(status), 0, NO_JITTER, random.Random(0), NOW, None)
    assert decision.retry is retried
    assert decision.reason == ("backoff" if retried else "not_retryable")


@pytest.mark.parametrize(
    "status, header, retried",
    [
        (400, "true", True),
        (401, "True", True),
        (503, "false", False),
        (429, "false", False),
        (503, "maybe", True),  # unreadable header: the status decides
    ],
)
def test_x_should_retry_overrides_status(status, header, retried):
    error = http_error(status, {"x-should-retry": header})
    assert is_retryable(error, RetryOptions()) is retried


@pytest.mark.parametrize(
    "error, retried",
    [
        (NetworkError("connection reset"), True),
        (RequestTimeoutError("attempt timed out"), True),
        (MalformedResponseError("bad json"), True),
        (ServerError("no status"), True),
        (AuthenticationError("no key"), False),
        (ApiError("unknown"), False),
        (NetworkError("reset", should_retry=False), False),
    ],
)
def test_errors_without_status(error, retried):
    assert error.status is None
    assert is_retryable(error, RetryOptions()) is retried


@pytest.mark.parametrize(
    "cls",
    [
        CircuitOpenError,
        QueueFullError,
        ShutdownError,
        CancelledRequestError,
        DeadlineExceededError,
        InvalidInputError,
    ],
)
def test_own_errors_never_retried_even_if_a_header_says_so(cls):
    error = cls("refused", status=503, should_retry=True)
    assert is_retryable(error, RetryOptions()) is False
    assert decide(error, 0, RetryOptions(), random.Random(0), NOW, None).reason == "not_retryable"


def test_custom_retryable_statuses():
    opts = RetryOptions(retryable_statuses={429})
    assert isinstance(opts.retryable_statuses, frozenset)
    assert is_retryable(http_error(429), opts) is True
    assert is_retryable(http_error(503), opts) is False
    hash(opts)  # still a frozen, hashable value


# ---------------------------------------------------------------- how long


@pytest.mark.parametrize(
    "retry_number, expected",
    [
        (1, 0.5),
        (2, 1.0),
        (3, 2.0),
        (4, 4.0),
        (5, 8.0),
        (6, 16.0),
        (7, 30.0),
        (8, 30.0),
        (10_000, 30.0),
    ],
)
def test_backoff_growth_and_cap(retry_number, expected):
    assert backoff_delay(retry_number, NO_JITTER, random.Random(0)) == expected


@pytest.mark.parametrize(
    "options, retry_number, expected",
    [
        (RetryOptions(jitter=0, backoff_factor=1.0, initial_delay=1.5), 9, 1.5),
        (RetryOptions(jitter=0, backoff_factor=3.0, initial_delay=0.1, max_delay=1.0), 3, 0.9),
        (RetryOptions(jitter=0, initial_delay=0.0), 50_000, 0.0),
        (RetryOptions(jitter=0.5, max_delay=0.0), 4, 0.0),
        (RetryOptions(jitter=0, initial_delay=5.0, max_delay=2.0), 1, 2.0),
    ],
)
def test_backoff_figures(options, retry_number, expected):
    assert backoff_delay(retry_number, options, random.Random(0)) == pytest.approx(expected)


def test_backoff_retry_number_starts_at_one():
    with pytest.raises(ValueError):
        backoff_delay(0, RetryOptions(), random.Random(0))


def test_jitter_is_exactly_one_minus_jitter_times_u():
    opts = RetryOptions(jitter=0.25)
    expected_u = random.Random(7).random()
    assert backoff_delay(3, opts, random.Random(7)) == pytest.approx(2.0 * (1 - 0.25 * expected_u))


@pytest.mark.parametrize("jitter", [0.1, 0.25, 1.0])
def test_jitter_bounds_with_seeded_rng(jitter):
    opts = RetryOptions(jitter=jitter)
    rng = random.Random(1234)
    delays = [backoff_delay(7, opts, rng) for _ in range(2000)]  # cap 30.0 reached
    assert all((1 - jitter) * 30.0 <= d <= 30.0 for d in delays)
    assert max(delays) - min(delays) > 0.8 * jitter * 30.0  # it does spread
    again = [backoff_delay(7, opts, random.Random(1234)) for _ in range(1)]
    assert again[0] == delays[0]  # seeded: reproducible


def test_retry_after_beats_backoff_without_jitter_or_cap():
    rng = random.Random(5)
    state = rng.getstate()
    error = RateLimitError(
        "slow down", status=429, retry_after=45.0
    )  # over max_delay, within max_retry_after
    decision = decide(error, 0, RetryOptions(max_delay=30.0, jitter=1.0), rng, NOW, None)
    assert decision == RetryDecision(True, 45.0, "retry_after")
    assert rng.getstate() == state  # no randomness drawn


@pytest.mark.parametrize("value, expected", [(0.0, 0.0), (-3.0, 0.0), (0.25, 0.25)])
def test_retry_after_edge_values(value, expected):
    error = RateLimitError("x", status=429, retry_after=value)
    decision = decide(error, 0, RetryOptions(), random.Random(0), NOW, None)
    assert decision.retry and decision.delay == expected and decision.reason == "retry_after"


@pytest.mark.parametrize(
    "value, cap, expected",
    [
        (None, 60.0, None),
        (math.nan, 60.0, None),
        (-3.0, 60.0, 0.0),
        (0.0, 60.0, 0.0),
        (60.0, 60.0, 60.0),  # the cap itself is believed
        (60.001, 60.0, None),
        (1e9, 60.0, None),
        (math.inf, 60.0, None),
        (1e9, None, 1e9),  # no cap
        (math.inf, None, None),  # but never forever
        (5.0, 0.0, None),  # a cap of 0: every wait is backed off from
    ],
)
def test_believed_retry_after(value, cap, expected):
    assert retry_module.believed_retry_after(value, cap) == expected
    assert retry_module.over_cap(value, cap) is (
        expected is None and value is not None and value == value
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "1000000000"},
        {"retry-after": "1e9"},
        {"retry-after-ms": "1e300"},
        {"retry-after": "61"},
        {"retry-after": "Sat, 01 Jan 2039 00:00:00 GMT"},  # years ahead of WALL_2026
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
    ids=["1e9", "1e9-float", "ms-1e300", "61", "ten-years", "year-9999"],
)
def test_retry_after_over_max_retry_after_is_backed_off_from(headers):
    """Like the openai SDK (which honours 0 < retry_after <= 60 only), a wait
    over ``max_retry_after`` is not believed: capped backoff, not a refusal."""
    error = classify_status(429, headers, None, wall_now=WALL_2026, provider="openai")
    assert error.retry_after > 60.0  # parsed as the server said (up to a day)
    opts = RetryOptions(jitter=0.0)
    assert decide(error, 0, opts, random.Random(0), NOW, NOW + 10.0) == RetryDecision(
        True, 0.5, "backoff"
    )
    assert decide(error, 0, opts, random.Random(0), NOW, None) == RetryDecision(
        True, 0.5, "backoff"
    )
    assert (
        decide(error, 6, RetryOptions(max_retries=9, jitter=0.0), random.Random(0), NOW, None).delay
        == 30.0
    )


def test_max_retry_after_is_a_setting_of_its_own():
    error = RateLimitError("x", status=429, retry_after=90.0)
    assert decide(
        error, 0, RetryOptions(max_retry_after=120.0), random.Random(0), NOW, None
    ) == RetryDecision(True, 90.0, "retry_after")
    assert (
        decide(error, 0, RetryOptions(jitter=0.0), random.Random(0), NOW, None).reason == "backoff"
    )
    assert RetryOptions().max_retry_after == retry_module.DEFAULT_MAX_RETRY_AFTER == 60.0


def test_deadline_error_after_a_refused_retry_after_says_backoff():
    error = RateLimitError("x", status=429, retry_after=1e9)
    decision = decide(
        error, 4, RetryOptions(max_retries=9, jitter=0.0), random.Random(0), NOW, NOW + 1.0
    )
    assert decision == RetryDecision(False, 8.0, "deadline")
    assert deadline_error(error, decision, NOW, NOW + 1.0).message.startswith(
        "the next retry would wait 8.0s (backoff)"
    )


def test_each_attempt_reads_its_own_retry_after():
    opts = NO_JITTER
    rng = random.Random(0)
    first = http_error(429, {"retry-after": "2"})
    second = http_error(503, {"retry-after-ms": "9000"})
    third = http_error(503)
    assert decide(first, 0, opts, rng, NOW, None) == RetryDecision(True, 2.0, "retry_after")
    assert decide(second, 1, opts, rng, NOW, None) == RetryDecision(True, 9.0, "retry_after")
    assert decide(third, 2, opts, rng, NOW, None) == RetryDecision(
        True, 2.0, "backoff"
    )  # 0.5 * 2**2
    # stateless: asking again about the first error gives the first answer
    assert decide(first, 0, opts, rng, NOW, None) == RetryDecision(True, 2.0, "retry_after")


# ---------------------------------------------------------------- how many, and the deadline


@pytest.mark.parametrize(
    "max_retries, retries_done, retry",
    [(0, 0, False), (1, 0, True), (1, 1, False), (3, 2, True), (3, 3, False), (3, 7, False)],
)
def test_max_retries(max_retries, retries_done, retry):
    opts = RetryOptions(max_retries=max_retries, jitter=0)
    decision = decide(http_error(503), retries_done, opts, random.Random(0), NOW, None)
    assert decision.retry is retry
    assert bool(decision) is retry
    if not retry:
        assert decision == RetryDecision(False, 0.0, "retries_exhausted")


def test_not_retryable_is_reported_before_exhaustion():
    opts = RetryOptions(max_retries=0)
    assert decide(http_error(400), 0, opts, random.Random(0), NOW, None).reason == "not_retryable"


@pytest.mark.parametrize(
    "retry_after, deadline, retry, reason",
    [
        (12.0, NOW + 3.2, False, "deadline"),
        (3.2, NOW + 3.2, False, "deadline"),  # would start with no time left
        (3.0, NOW + 3.2, True, "retry_after"),
        (12.0, None, True, "retry_after"),
        (0.0, NOW, False, "deadline"),  # already past
    ],
)
def test_deadline_fails_fast_with_the_figure(retry_after, deadline, retry, reason):
    error = RateLimitError("slow down", status=429, retry_after=retry_after)
    decision = decide(error, 0, RetryOptions(), random.Random(0), NOW, deadline)
    assert (decision.retry, decision.reason) == (retry, reason)
    assert decision.delay == retry_after  # the figure that was asked for, even when refused


def test_deadline_applies_to_backoff_too():
    decision = decide(
        http_error(503), 5, RetryOptions(max_retries=10, jitter=0), random.Random(0), NOW, NOW + 10
    )
    assert decision == RetryDecision(False, 16.0, "deadline")


def test_deadline_error_message_and_fields():
    error = classify_status(
        429,
        {"retry-after": "12", "x-request-id": "req_9"},
        None,
        wall_now=0.0,
        provider="groq",
        attempt=2,
    )
    decision = decide(error, 0, RetryOptions(), random.Random(0), NOW, NOW + 3.2)
    err = deadline_error(error, decision, NOW, NOW + 3.2)
    assert isinstance(err, DeadlineExceededError)
    assert err.message == (
        "server asked to wait 12.0s (Retry-After) but the request's deadline is in 3.2s; "
        "raise client.request_deadline or lower the load"
    )
    assert err.retry_after == 12.0
    assert (err.provider, err.status, err.request_id, err.attempt) == ("groq", 429, "req_9", 2)
    assert err.__cause__ is error
    assert "retry after 12s" in str(err)
    assert not is_retryable(err, RetryOptions())


def test_deadline_error_for_backoff_says_backoff():
    error = NetworkError("reset")
    decision = RetryDecision(False, 0.75, "deadline")
    err = deadline_error(error, decision, NOW, NOW + 0.05)
    assert err.message.startswith("the next retry would wait 0.75s (backoff)")
    assert "deadline is in 0.05s" in err.message
    late = deadline_error(error, decision, NOW, NOW - 1.0)
    assert "deadline is in 0.0s" in late.message


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retry_after": -1.0}, "max_retry_after"),
        ({"max_retry_after": math.inf}, "max_retry_after"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"backoff_factor": float("nan")}, "backoff_factor"),
        ({"backoff_factor": "2"}, "backoff_factor"),
        ({"initial_delay": -0.1}, "initial_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"max_delay": float("inf")}, "max_delay"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"retryable_statuses": {429, 99}}, "retryable_statuses"),
        ({"retryable_statuses": {"429"}}, "retryable_statuses"),
        ({"retryable_statuses": 429}, "retryable_statuses"),
        ({"retryable_statuses": "429"}, "retryable_statuses"),
    ],
)
def test_validation_names_the_setting(kwargs, setting):
    with pytest.raises(SettingError) as info:
        RetryOptions(**kwargs)
    assert info.value.setting == setting
    assert repr(setting) in str(info.value)


def test_edge_values_accepted():
    RetryOptions(
        max_retries=0,
        backoff_factor=1.0,
        initial_delay=0,
        max_delay=0,
        jitter=1.0,
        retryable_statuses=(),
    )


def test_module_is_sans_io():
    imported = absolute_imports(retry_module)
    assert not imported & {"time", "asyncio", "socket", "aiohttp", "httpx", "threading"}


# ---------------------------------------------------------------- property


@given(
    max_retries=st.integers(0, 6),
    retries_done=st.integers(0, 8),
    factor=st.floats(1.0, 10.0),
    initial=st.floats(0.0, 100.0),
    max_delay=st.floats(0.0, 120.0),
    jitter=st.floats(0.0, 1.0),
    retry_after=st.none() | st.floats(-10.0, 1e6, allow_nan=False),
    status=st.sampled_from([None, 400, 408, 429, 500, 503, 529]),
    seed=st.integers(0, 2**32),
    deadline_in=st.none() | st.floats(0.0, 1000.0),
)
def test_delay_is_bounded_and_never_negative(
    max_retries,
    retries_done,
    factor,
    initial,
    max_delay,
    jitter,
    retry_after,
    status,
    seed,
    deadline_in,
):
    opts = RetryOptions(
        max_retries=max_retries,
        backoff_factor=factor,
        initial_delay=initial,
        max_delay=max_delay,
        jitter=jitter,
    )
    error = (NetworkError if status is None else ServerError)(
        "x", status=status, retry_after=retry_after
    )
    deadline = None if deadline_in is None else NOW + deadline_in
    decision = decide(error, retries_done, opts, random.Random(seed), NOW, deadline)
    upper = max(max_delay, retry_after or 0.0)
    assert 0.0 <= decision.delay <= upper
    assert not math.isnan(decision.delay)
    if decision.retry:
        assert decision.reason in {"retry_after", "backoff"}
        assert deadline is None or NOW + decision.delay < deadline
        assert retries_done < max_retries
    else:
        assert decision.reason in {"not_retryable", "retries_exhausted", "deadline"}
        assert decision.reason == "deadline" or decision.delay == 0.0
