"""Typed errors at their edges: the full message, redaction through the cause chain,
copies, the quota rule, Retry-After's bounds and transport exceptions."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.resilience.errors import (
    MAX_RETRY_AFTER,
    ApiError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    RateLimitDeadlineError,
    RateLimitError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ServerError,
    SettingError,
    StreamStalledError,
    classify_exception,
    classify_status,
    copied,
    get_header,
    parse_retry_after,
    quota_exhausted,
    too_large,
)

SECRET = "sk-live-abcdefghijklmnop"


def test_str_names_model_key_host_and_attempts():
    err = ServerError("boom", provider="vllm", status=503)
    err.model, err.key_name, err.host, err.attempts = "m1", "main", "gpu-1:8000", 3
    err.client_request_id = "c-1"
    assert (
        str(err)
        == "[vllm HTTP 503] boom (model m1, key main, gpu-1:8000, 3 attempts, client request c-1)"
    )
    err.attempts = 1
    assert str(err).endswith("(model m1, key main, gpu-1:8000, 1 attempt, client request c-1)")


def test_str_rounds_long_waits_to_whole_seconds():
    assert str(RateLimitError("slow", retry_after=150.4)) == "slow (retry after 150s)"
    assert str(RateLimitError("slow", retry_after=99.94)) == "slow (retry after 99.9s)"


def test_base_kind_and_defaults():
    err = ApiError("x")
    assert (err.kind, err.retryable, err.breaker_failure, err.key_wide) == (
        "error",
        False,
        False,
        False,
    )


def test_redact_masks_message_body_request_id_and_returns_the_error():
    err = ServerError(f"bad key {SECRET}", body={"detail": SECRET}, request_id=f"id-{SECRET}")
    assert err.redact([SECRET]) is err
    for text in (err.message, str(err.args), json.dumps(err.body), err.request_id, str(err)):
        assert SECRET not in text
        assert "***" in text


def test_redact_reaches_every_exception_in_the_cause_chain():
    try:
        try:
            try:
                json.loads(f"not json {SECRET}")
            except ValueError as inner:
                raise OSError(f"read failed near {SECRET}") from inner
        except OSError as middle:
            raise NetworkError("reset") from middle
    except NetworkError as caught:
        err = caught
    middle, inner = err.__cause__, err.__cause__.__cause__
    err.redact([SECRET])
    assert SECRET not in str(middle.args) and "***" in str(middle.args)
    assert SECRET not in str(inner.args)
    assert SECRET not in inner.doc  # a field of the cause, not only its args
    assert inner.doc.startswith("not json ***")


def test_redact_follows_an_implicit_context_too():
    try:
        try:
            raise KeyError(SECRET)
        except KeyError:
            raise MalformedResponseError("unreadable") from None
    except MalformedResponseError as caught:
        err = caught
    err.__suppress_context__ = False
    err.redact([SECRET])
    assert SECRET not in str(err.__context__.args)


def test_redact_stops_on_a_cycle_in_the_chain():
    err = ServerError(f"x {SECRET}")
    other = ValueError(SECRET)
    other.__cause__ = err  # a cycle: err -> other -> err
    err.__cause__ = other
    err.redact([SECRET])  # returns: each exception is visited once
    assert SECRET not in str(other.args)


def test_copied_keeps_class_fields_and_cause_but_is_another_object():
    cause = ConnectionResetError("peer reset")
    err = ServerError("boom", provider="p", status=502, attempt=2)
    err.__cause__ = cause
    err.model = "m"
    copy = copied(err)
    assert copy is not err and type(copy) is ServerError
    assert (copy.message, copy.provider, copy.status, copy.attempt, copy.model) == (
        "boom",
        "p",
        502,
        2,
        "m",
    )
    assert copy.__cause__ is cause
    copy.attempt = 3
    assert err.attempt == 2


def test_get_header_returns_a_header_that_is_present_even_if_empty():
    assert get_header({"x-request-id": ""}, "x-request-id") == ""
    assert get_header({"X-Request-Id": "r1"}, "x-request-id") == "r1"


def test_retry_after_is_bounded_by_a_day():
    assert MAX_RETRY_AFTER == 86400.0
    assert parse_retry_after({"retry-after": "86401"}, 0.0) == 86400.0
    assert parse_retry_after({"retry-after": "86400"}, 0.0) == 86400.0


def test_retry_after_seconds_with_spaces_and_zero():
    assert parse_retry_after({"retry-after": "  7 "}, 0.0) == 7.0
    assert parse_retry_after({"retry-after": "0"}, 0.0) == 0.0
    assert parse_retry_after({"retry-after": "-1"}, 0.0) is None


def test_retry_after_ms_zero_is_believed():
    assert parse_retry_after({"retry-after-ms": "0", "retry-after": "9"}, 0.0) == 0.0


def test_setting_error_keeps_what_was_expected():
    err = SettingError("timeout", -1, "a number >= 0")
    assert (err.setting, err.value, err.expected) == ("timeout", -1, "a number >= 0")


@pytest.mark.parametrize("status", [400, 413, 418, 422, 499])
def test_a_4xx_without_a_class_of_its_own_is_an_invalid_request(status):
    assert type(classify_status(status, None, None, wall_now=0.0)) is InvalidRequestError


def test_only_a_429_is_key_wide_for_a_spent_quota():
    body = {"error": {"code": "insufficient_quota"}}
    assert classify_status(429, None, body, wall_now=0.0).key_wide is True
    assert classify_status(428, None, body, wall_now=0.0).key_wide is False
    assert (
        classify_status(
            429, None, {"error": {"code": "rate_limit_exceeded"}}, wall_now=0.0
        ).key_wide
        is False
    )


@pytest.mark.parametrize(
    ("body", "spent"),
    [
        ('{"error": {"type": "insufficient_quota"}}', True),
        (b'{"error": {"code": "quota_exceeded"}}', True),
        ("not json", False),
        ({"error": "insufficient_quota"}, False),
        ({"error": {"code": 5}}, False),
        ({"error": {"code": "x", "details": "nope"}}, False),
        ({"error": {"details": []}}, False),
        (
            {
                "error": {
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [{"quotaId": "GenerateRequestsPerDayPerProject"}],
                        }
                    ]
                }
            },
            True,
        ),
        (
            {
                "error": {
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [
                                {"quotaId": "GenerateRequestsPerDayPerProject"},
                                {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"},
                            ],
                        }
                    ]
                }
            },
            False,
        ),
    ],
)
def test_quota_exhausted(body, spent):
    assert quota_exhausted(body) is spent


@pytest.mark.parametrize(
    ("exc", "cls", "message"),
    [
        (TimeoutError("t"), RequestTimeoutError, "attempt timed out: TimeoutError"),
        (ConnectionResetError("r"), NetworkError, "ConnectionResetError: r"),
        (EOFError("e"), NetworkError, "EOFError: e"),
        (KeyError("k"), MalformedResponseError, "could not read the response: KeyError: 'k'"),
        (RuntimeError("odd"), NetworkError, "RuntimeError: odd"),
    ],
)
def test_classify_exception_message_and_fields(exc, cls, message):
    err = classify_exception(exc, provider="p", request_id="r", attempt=4)
    assert type(err) is cls
    assert (err.message, err.provider, err.request_id, err.attempt) == (message, "p", "r", 4)


def test_classify_exception_knows_a_timeout_error_by_its_name():
    class TimeoutError(Exception):  # noqa: A001 - another library's class of that name
        pass

    assert type(classify_exception(TimeoutError())) is RequestTimeoutError


def test_redact_follows_an_implicit_context_behind_an_explicit_cause():
    try:
        try:
            try:
                raise KeyError(SECRET)
            except KeyError:
                raise OSError("read failed") from None  # suppressed, but still the context
        except OSError as middle:
            raise NetworkError("reset") from middle
    except NetworkError as caught:
        err = caught
    inner = err.__cause__.__context__
    assert err.__cause__.__cause__ is None and isinstance(inner, KeyError)
    err.redact([SECRET])
    assert SECRET not in str(inner.args)


def test_too_large_says_what_where_and_which_setting_to_raise():
    err = too_large("response body", 1024, 1100, "max_response_bytes", where="api.example")
    assert isinstance(err, ResponseTooLargeError)
    assert (err.limit, err.received) == (1024, 1100)
    assert err.message == (
        "response body larger than max_response_bytes (1024 bytes) from api.example; "
        "reading stopped after 1100 bytes; raise client.max_response_bytes if such answers "
        "are expected"
    )
    assert too_large("line", 8, 9, "max_stream_line_bytes").message.startswith(
        "line larger than max_stream_line_bytes (8 bytes); reading stopped after 9 bytes"
    )


def test_a_response_too_large_is_not_retried_nor_a_breaker_failure():
    assert (ResponseTooLargeError.retryable, ResponseTooLargeError.breaker_failure) == (
        False,
        False,
    )
    assert (MalformedResponseError.retryable, MalformedResponseError.breaker_failure) == (
        True,
        True,
    )


def test_a_stalled_stream_is_a_timeout_of_its_own_kind():
    assert StreamStalledError.kind == "stream_stalled"
    assert issubclass(StreamStalledError, RequestTimeoutError)


@pytest.mark.parametrize(
    "code", ["insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"]
)
def test_every_quota_code_means_a_spent_quota(code):
    assert quota_exhausted({"error": {"code": code}}) is True


def test_a_rate_limit_is_of_kind_rate_limit():
    assert RateLimitError.kind == "rate_limit"
    assert classify_status(429, None, None, wall_now=0.0).kind == "rate_limit"


def test_a_rate_limit_past_the_deadline_is_a_rate_limit_that_is_not_retried():
    assert RateLimitDeadlineError.kind == "rate_limit"
    assert RateLimitDeadlineError.retryable is False
    assert issubclass(RateLimitDeadlineError, RateLimitError)
